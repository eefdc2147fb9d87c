"""``vidinv directions``: the attribute table, fitting InterFaceGAN boundaries, SeFa, inspecting files."""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from vidinv.errors import InputError, VidinvError

if TYPE_CHECKING:  # numpy is imported where it is used: `vidinv directions list` does not need it
    import numpy as np

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

EXAMPLES = """examples:
  vidinv directions list
  vidinv directions fit --images aligned/ --labels labels.csv --attr Smiling --out smiling_boundary.npy
  vidinv directions fit --codes codes.pt --labels labels.csv --attr age --space w --out age.pt
  vidinv directions sefa --generator stylegan2-ffhq-config-f.pt --layers 0-5 -k 5
  vidinv directions show smiling_boundary.npy
  vidinv edit clip.mp4 --attr smiling_boundary.npy=1.5

labels.csv: a header row, then one row per image; the first column is the image file name (or the row
index of --codes), the label is the column named like --attr (else the second column): 0/1 labels, or
scores (the top and bottom --fraction are used, as InterFaceGAN does).
codes.pt: a tensor [N, L, sd] (W+) or [N, sd] (W), or a dict {'codes': tensor, 'names': [file names]}.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("directions", help="list, fit and inspect editing directions", description=__doc__,
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    dsub = p.add_subparsers(dest="directions_cmd", metavar="ACTION")
    pl = dsub.add_parser("list", help="the attribute table with availability")
    pl.add_argument("--table", help="another attributes.yaml")
    pf = dsub.add_parser("fit", help="fit an InterFaceGAN boundary (linear SVM) on inverted codes")
    src = pf.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder of aligned face crops (FFHQ alignment) to invert")
    src.add_argument("--codes", help="saved codes (.pt) instead of images")
    pf.add_argument("--labels", required=True, help="CSV: file name, label column(s)")
    pf.add_argument("--attr", required=True, help="attribute name (the label column; the direction's name)")
    pf.add_argument("--out", "-o", required=True, help="output direction: .npy (W+, Feature-Style layout) or .pt")
    pf.add_argument("--space", choices=["wplus", "w"], default="wplus",
                    help="fit in W+ (default) or in W (codes averaged over layers)")
    pf.add_argument("--C", type=float, default=1.0, help="SVM regularisation (default 1)")
    pf.add_argument("--fraction", type=float, default=0.02, help="top/bottom share of scores used (default 0.02)")
    pf.add_argument("--split", type=float, default=0.7, help="training share; the rest measures accuracy")
    pf.add_argument("--save-codes", help="also save the inverted codes (.pt) for later fits")
    pf.add_argument("--encoder", help="Feature-Style encoder checkpoint (default: the zoo's)")
    pf.add_argument("--generator", help="generator checkpoint for latent_avg (default: the zoo's)")
    pf.add_argument("--batch-size", type=int, default=4)
    pf.add_argument("--size", type=int, default=1024, help="crops are resized to this before inversion (default 1024)")
    pf.add_argument("--offline", action="store_true", help="never download weights")
    ps = dsub.add_parser("sefa", help="closed-form (SeFa) directions of a generator")
    ps.add_argument("--generator", required=True, help="generator checkpoint, or 'tiny'")
    ps.add_argument("--layers", help="W+ layers A-B (inclusive) to factorise; default all")
    ps.add_argument("-k", type=int, default=5, help="number of directions (default 5)")
    ps.add_argument("--out", help="folder to save sefa_<i>.pt W directions in")
    pw = dsub.add_parser("show", help="describe a direction file")
    pw.add_argument("file")
    pw.add_argument("--component", type=int, help="GANSpace component to show")
    p.set_defaults(func=run, _directions_parser=p)


def run(args: argparse.Namespace) -> int:
    cmd = getattr(args, "directions_cmd", None)
    if cmd == "list":
        return _list(args)
    if cmd == "fit":
        return _fit(args)
    if cmd == "sefa":
        return _sefa(args)
    if cmd == "show":
        return _show(args)
    args._directions_parser.print_help()
    return 1


# --------------------------------------------------------------------------------------------------- list


def format_table(rows: Sequence[dict], cols: Sequence[str]) -> str:
    """Plain aligned text table."""
    cells = [[str(c) for c in cols]] + [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells)


def _list(args) -> int:
    from vidinv.editing.attributes import list_attributes

    rows = list_attributes(table=args.table)
    for r in rows:
        r["aliases"] = ",".join(r["aliases"]) or "-"
        r["component"] = "-" if r["component"] is None else r["component"]
    cols = ["name", "kind", "scale", "layers", "component", "artifact", "status", "aliases", "description"]
    print(format_table(rows, cols))
    print("\nstrength 1 adds scale x the unit direction (wplus: the Feature-Style step of 15; w: e4e's factor 3; "
          "pca: standard deviations). Also: sefa:N, sefa:N:A-B, or a direction file.")
    missing = sorted({r["artifact"] for r in rows if r["status"] == "missing"})
    if missing:
        print(f"missing: `vidinv weights fetch {' '.join(missing)}` (or `vidinv weights import DIR`)")
    return 0


# ---------------------------------------------------------------------------------------------------- fit


def read_labels(path: str | Path, attr: str) -> tuple[list[str], np.ndarray]:
    """``(names, labels [N])`` from a CSV: first column names, the label column named like ``attr``
    (case-insensitive) or else the second column. A first row whose label is not a number is a header."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise InputError(f"labels file not found: {path}")
    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if not rows:
        raise InputError(f"{path}: no rows")
    header = None
    col = 1

    def _num(s: str) -> bool:
        try:
            float(s)
            return True
        except ValueError:
            return False

    if len(rows[0]) > 1 and not all(_num(c.strip()) for c in rows[0][1:]):
        header, rows = [c.strip() for c in rows[0]], rows[1:]
        low = [h.lower() for h in header]
        if attr.lower() in low:
            col = low.index(attr.lower())
    if not rows or any(len(r) <= col for r in rows):
        raise InputError(f"{path}: every row needs a name and a label column (column {col + 1})")
    names = [r[0].strip() for r in rows]
    try:
        labels = np.array([float(r[col]) for r in rows], np.float64)
    except ValueError as exc:
        raise InputError(f"{path}: a label is not a number ({exc})") from None
    return names, labels


def load_codes(path: str | Path):
    """``(codes tensor [N, ...], names or None)`` from a ``.pt`` file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"codes file not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"cannot read codes {path}: {type(exc).__name__}: {exc}") from None
    names = None
    if isinstance(data, dict):
        if "codes" not in data:
            raise InputError(f"{path}: a dict of codes needs a 'codes' entry (keys: {sorted(data)[:6]})")
        names = [str(n) for n in data.get("names")] if data.get("names") is not None else None
        data = data["codes"]
    if not isinstance(data, torch.Tensor) or data.ndim not in (2, 3):
        raise InputError(f"{path}: codes must be a tensor [N, L, sd] or [N, sd]")
    if names is not None and len(names) != len(data):
        raise InputError(f"{path}: {len(data)} codes but {len(names)} names")
    return data.float(), names


def match_labels(names: list[str] | None, n: int, label_names: list[str],
                 labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pair codes with labels: by file name (or stem) when codes are named, else by row index
    (the CSV's first column must then be 0..N-1, or the CSV has exactly N rows in code order).

    Returns:
        ``(code indices [M], labels [M])``.
    """
    import numpy as np

    if names is not None:
        by_name = {}
        for nm, lab in zip(label_names, labels):
            by_name[nm] = lab
            by_name[Path(nm).stem] = lab
        idx = [i for i, nm in enumerate(names) if nm in by_name or Path(nm).stem in by_name]
        if not idx:
            raise InputError("no code matches a name in the labels file (compare the file names)")
        lab = [by_name.get(names[i], by_name.get(Path(names[i]).stem)) for i in idx]
        return np.array(idx), np.array(lab, np.float64)
    if all(s.isdigit() for s in label_names):
        idx = np.array([int(s) for s in label_names])
        if idx.max() >= n:
            raise InputError(f"labels refer to code {idx.max()} but there are only {n} codes")
        return idx, labels
    if len(labels) != n:
        raise InputError(f"{n} codes but {len(labels)} labels, and the codes carry no names to match them by")
    return np.arange(n), labels


def default_inverter(encoder: str | None = None, generator: str | None = None, offline: bool | None = None) -> Callable:
    """The Feature-Style inverter (zoo ``fs_encoder_143`` + ``psp_ffhq_encode``'s latent_avg, or given paths)."""
    from vidinv.models.fs_encoder import FSInverter, load_fs_encoder
    from vidinv.models.stylegan2 import load_generator
    from vidinv.zoo import Zoo

    zoo = Zoo()
    enc = load_fs_encoder(zoo.resolve(encoder) if encoder else zoo.require("fs_encoder_143", offline=offline))
    gen = zoo.resolve(generator) if generator else zoo.require("psp_ffhq_encode", offline=offline)
    _, latent_avg = load_generator(gen)
    if latent_avg is None:
        raise VidinvError("the generator checkpoint has no latent_avg: use the pSp/rosinality checkpoint")
    return FSInverter(enc, latent_avg).eval()


def invert_images(paths: Sequence[Path], inverter: Callable, size: int = 1024, batch_size: int = 4):
    """Invert aligned face crops: read RGB, resize to ``size``, map to [-1, 1], call ``inverter``.

    Shape:
        returns W+ codes ``[N, L, sd]`` (the inverter's first output).
    """
    import cv2
    import torch

    out = []
    for i in range(0, len(paths), batch_size):
        batch = []
        for p in paths[i:i + batch_size]:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                raise InputError(f"cannot read image {p}")
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            interp = cv2.INTER_AREA if min(img.shape[:2]) > size else cv2.INTER_LINEAR
            img = cv2.resize(img, (size, size), interpolation=interp)
            batch.append(torch.from_numpy(img).permute(2, 0, 1).float() / 127.5 - 1)
        with torch.no_grad():
            res = inverter(torch.stack(batch))
        w = res[0] if isinstance(res, (tuple, list)) else res
        out.append(w.detach().float().cpu())
        log.info("inverted %d/%d images", min(i + batch_size, len(paths)), len(paths))
    return torch.cat(out)


def fit_command(args, inverter: Callable | None = None):
    """The body of ``directions fit`` (``inverter`` replaces the default FS inverter, e.g. in tests).

    Returns:
        the fitted :class:`Direction` (also saved to ``args.out``).
    """
    import torch

    from vidinv.editing.directions import save_direction
    from vidinv.editing.fit import fit_interfacegan

    out = Path(args.out)
    if out.suffix.lower() not in (".npy", ".pt", ".pth"):
        raise VidinvError(f"--out must end in .npy or .pt, got {out.name}")
    label_names, labels = read_labels(args.labels, args.attr)
    if args.codes:
        codes, names = load_codes(args.codes)
    else:
        folder = Path(args.images)
        if not folder.is_dir():
            raise InputError(f"--images {folder}: not a folder")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        wanted = set(label_names) | {Path(n).stem for n in label_names}
        files = [p for p in files if p.name in wanted or p.stem in wanted]
        if not files:
            raise InputError(f"no image in {folder} is named in {args.labels}")
        inv = inverter
        if inv is None:
            inv = default_inverter(args.encoder, args.generator, args.offline or None)  # None: VIDINV_OFFLINE decides
        codes = invert_images(files, inv, size=getattr(args, "size", 1024), batch_size=args.batch_size)
        names = [p.name for p in files]
        if getattr(args, "save_codes", None):
            torch.save({"codes": codes, "names": names}, args.save_codes)
    idx, lab = match_labels(names, len(codes), label_names, labels)
    X = codes[torch.as_tensor(idx)]
    if args.space == "w":
        X = X.mean(1) if X.ndim == 3 else X
    elif X.ndim == 2:
        raise VidinvError("W codes [N, sd] cannot give a W+ direction: use --space w")
    d = fit_interfacegan(X, lab, C=args.C, fraction=args.fraction, split=args.split, name=args.attr)
    save_direction(d, out)
    va = d.meta["val_accuracy"]
    print(f"{args.attr}: {d.kind} direction {tuple(d.vector.shape)} from {d.meta['n_pos']} positives / "
          f"{d.meta['n_neg']} negatives; train accuracy {d.meta['train_accuracy']:.3f}, "
          f"validation accuracy {'n/a' if va is None else f'{va:.3f}'} -> {out}")
    return d


def _fit(args) -> int:
    fit_command(args)
    return 0


# ------------------------------------------------------------------------------------------------ sefa/show


def _sefa(args) -> int:
    from vidinv.editing.attributes import _generator_source
    from vidinv.editing.directions import layer_range, save_direction
    from vidinv.editing.sefa import sefa_directions

    layers = None
    if args.layers:
        try:
            a, b = (int(x) for x in args.layers.split("-"))
        except ValueError:
            raise VidinvError(f"--layers {args.layers}: use A-B, e.g. 0-5") from None
        layers = layer_range(a, b + 1)
    src = _generator_source(args.generator, None)
    dirs = sefa_directions(src, layers=layers, k=args.k)
    for i, d in enumerate(dirs):
        where = "" if layers is None else f":{layers[0]}-{layers[-1]}"
        line = f"sefa:{i}{where}  eigenvalue {d.meta['eigenvalue']:.4f}"
        if args.out:
            path = save_direction(d, Path(args.out) / f"sefa_{i}.pt")
            line += f"  -> {path}"
        print(line)
    return 0


def _show(args) -> int:
    from vidinv.editing.directions import load_direction

    d = load_direction(args.file, component=args.component)
    v = d.vector
    print(f"{args.file}: kind {d.kind}, vector {tuple(v.shape)}, norm {float(v.norm()):.4f}, "
          f"layers {'all' if d.layers is None else list(d.layers)}, strength 1 = x{d.scale:g}")
    if d.kind == "wplus":
        print("per-layer norms: " + " ".join(f"{float(x):.3f}" for x in v.norm(dim=1)))
    return 0
