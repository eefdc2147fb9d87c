"""``vidinv doctor``: check the installation, the device, the weights and the face backends.

Prints one ``OK`` / ``WARN`` / ``FAIL`` / ``--`` line per check and exits 0 when the essentials
(Python, torch, PyAV, numpy, PyYAML and one run of the whole model path with tiny random models)
are fine; missing weights or optional backends are warnings, not failures.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

EXAMPLES = """examples:
  vidinv doctor                 # versions, device, weights, face backends, tiny model run
  vidinv doctor --verify        # also recompute the checksums of the cached weights (slow for big files)
  vidinv doctor --skip-models   # no model run
"""

# (label, import name, distribution name, essential)
PACKAGES = (
    ("torch", "torch", "torch", True),
    ("torchvision", "torchvision", "torchvision", False),
    ("numpy", "numpy", "numpy", True),
    ("av (PyAV)", "av", "av", True),
    ("pyyaml", "yaml", "PyYAML", True),
    ("tqdm", "tqdm", "tqdm", False),
    ("requests", "requests", "requests", False),
    ("gdown", "gdown", "gdown", False),
    ("kornia", "kornia", "kornia", False),
    ("opencv", "cv2", "opencv-python", False),
    ("scipy", "scipy", "scipy", False),
    ("decord", "decord", "decord", False),
    ("ray", "ray", "ray", False),
    ("dlib", "dlib", "dlib-bin", False),
    ("face_alignment", "face_alignment", "face-alignment", False),
    ("insightface", "insightface", "insightface", False),
    ("onnxruntime", "onnxruntime", "onnxruntime", False),
    ("lpips", "lpips", "lpips", False),
    ("scikit-image", "skimage", "scikit-image", False),
)

DLIB_FILES = ("shape_predictor_68_face_landmarks.dat", "mmod_human_face_detector.dat")


@dataclass
class Check:
    """One doctor line: ``status`` is ``OK``, ``WARN``, ``FAIL`` or ``--`` (information)."""

    status: str
    label: str
    detail: str = ""
    essential: bool = False

    def line(self) -> str:
        return f"{self.status:5s} {self.label:24s} {self.detail}".rstrip()


def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="check the installation, device, weights and face backends",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--verify", action="store_true", help="recompute the sha256 of every cached weight file")
    p.add_argument("--skip-models", action="store_true", help="skip the tiny-model run of the model path")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    checks = collect(run_models=not getattr(args, "skip_models", False), verify=getattr(args, "verify", False),
                     printer=print)
    bad = [c for c in checks if c.essential and c.status == "FAIL"]
    print(f"\n{'FAIL' if bad else 'OK'}: " + (f"{len(bad)} essential check(s) failed: {', '.join(c.label for c in bad)}"
                                           if bad else "the essentials work"))
    return 1 if bad else 0


def collect(run_models: bool = True, verify: bool = False, printer=None) -> list[Check]:
    """Run every check; ``printer`` (e.g. ``print``) gets each line as soon as it is known."""
    out: list[Check] = []

    def add(items):
        for c in items if isinstance(items, list) else [items]:
            out.append(c)
            if printer is not None:
                printer(c.line())

    if printer:
        printer("== software")
    add(check_python())
    add(check_packages())
    if printer:
        printer("== device")
    add(check_device())
    if printer:
        printer("== weights")
    add(check_zoo(verify=verify))
    if printer:
        printer("== face backends")
    add(check_face_backends())
    if run_models:
        if printer:
            printer("== model path (tiny random models)")
        add(check_model_path())
    return out


def check_python() -> Check:
    v = sys.version_info
    ok = v >= (3, 10)
    return Check("OK" if ok else "FAIL", "python", f"{platform.python_version()} ({sys.executable})"
                 + ("" if ok else "; vidinv needs Python >= 3.10"), essential=True)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_packages(packages=PACKAGES) -> list[Check]:
    """Versions of the dependencies, found without importing them (heavy ones stay unimported)."""
    out = []
    for label, mod, dist, essential in packages:
        try:
            found = importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            found = False
        ver = _version(dist)
        if found:
            out.append(Check("OK", label, ver or "installed (version unknown)", essential))
        else:
            out.append(Check("FAIL" if essential else "WARN", label, f"not installed (pip install {dist})", essential))
    return out


def check_device() -> list[Check]:
    try:
        import torch
    except Exception as exc:  # reported above as a missing package too
        return [Check("FAIL", "device", f"torch unusable: {type(exc).__name__}: {exc}", True)]
    out = [Check("--", "cpu", f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}")]
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        out.append(Check("OK", "cuda", f"{len(names)} device(s): {', '.join(names)}; CUDA {torch.version.cuda}"))
    else:
        out.append(Check("--", "cuda", "not available: running on the CPU in float32 (slow for full-size models)"))
    return out


def check_zoo(verify: bool = False) -> list[Check]:
    from vidinv.errors import VidinvError

    try:
        from vidinv.zoo import Zoo

        zoo = Zoo()
    except VidinvError as exc:
        return [Check("FAIL", "zoo", str(exc))]
    out = [Check("--", "cache", f"{zoo.home}" + ("  (VIDINV_OFFLINE=1)" if _offline() else ""))]
    status = zoo.verify() if verify else {n: zoo.status(n) for n in zoo.artifacts}
    for name, st in status.items():
        a = zoo.artifacts[name]
        tag = {"verified": "OK", "present": "OK", "corrupt": "FAIL", "missing": "WARN"}[st]
        hint = f"`vidinv weights fetch {name}`" if st in ("missing", "corrupt") else str(zoo.path(name))
        out.append(Check(tag, name, f"{st:8s} {a.file}  {hint}"))
    return out


def _offline() -> bool:
    from vidinv import paths

    return paths.offline()


def dlib_model_dir() -> Path | None:
    """The folder of dlib's .dat files (the one lookup in :mod:`vidinv.faces.weights`, which honours
    ``$VIDINV_DLIB_MODELS``), or None."""
    from vidinv.faces.weights import find_dlib_model

    path = find_dlib_model(DLIB_FILES[0])
    return None if path is None else path.parent


def check_face_backends() -> list[Check]:
    out = []
    d = dlib_model_dir()
    have_dlib = importlib.util.find_spec("dlib") is not None
    if d is not None and all((d / f).is_file() for f in DLIB_FILES):
        out.append(Check("OK" if have_dlib else "WARN", "dlib",
                         f"models in {d}" + ("" if have_dlib else "; dlib itself is not installed")))
    else:
        out.append(Check("WARN", "dlib", f"{' / '.join(DLIB_FILES)} not found (pip install face-recognition-models)"))
    try:
        from vidinv.zoo import Zoo

        zoo = Zoo()
        fan = {n: zoo.status(n) for n in ("fan_2dfan4", "fan_s3fd") if n in zoo.artifacts}
    except Exception:
        fan = {}
    if importlib.util.find_spec("face_alignment") is None:
        out.append(Check("WARN", "face-alignment", "not installed"))
    elif fan and all(s in ("present", "verified") for s in fan.values()):
        out.append(Check("OK", "face-alignment", f"weights cached in {Zoo().path('fan_s3fd').parent}"))
    else:
        out.append(Check("WARN", "face-alignment", "installed; weights not cached (it downloads them on first use, "
                         "or `vidinv weights fetch fan_2dfan4 fan_s3fd`)"))
    from vidinv.faces.weights import insightface_root

    root = insightface_root() / "models"
    packs = sorted(p.name for p in root.glob("*") if p.is_dir() and any(p.glob("*.onnx"))) if root.is_dir() else []
    if importlib.util.find_spec("insightface") is None:
        out.append(Check("WARN", "insightface", "not installed"))
    elif packs:
        out.append(Check("OK", "insightface", f"model packs in {root}: {', '.join(packs)}"))
    else:
        out.append(Check("WARN", "insightface", f"installed; no model pack in {root} (downloads buffalo_l on first use;"
                         " its models are non-commercial)"))
    return out


def check_model_path(seed: int = 0) -> Check:
    """Encode a random 64 px image with the tiny inverter, edit it with a random direction, render, check finite.

    Any exception becomes a ``FAIL`` line (this check never raises).
    """
    label = "tiny invert+edit"
    threads = None
    try:
        import time

        import torch

        from vidinv.editing.feature_edit import feature_edit
        from vidinv.models.tiny import tiny_generator, tiny_inverter

        t0 = time.perf_counter()
        g = torch.Generator().manual_seed(seed)
        # tiny layers gain nothing from threads, and on a busy CPU the thread hand-offs cost seconds
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        with torch.no_grad():
            G = tiny_generator(seed)
            inv = tiny_inverter(seed, generator=G)
            x = torch.rand((1, 3, 64, 64), generator=g) * 2 - 1
            w, F = inv(x)
            d = torch.randn((1, 1, G.style_dim), generator=g)
            w_edit = w + 2.0 * d / d.norm()
            img = feature_edit(G, w, F, w_edit=w_edit)
        expect = (1, 3, G.size, G.size)
        if tuple(img.shape) != expect:
            return Check("FAIL", label, f"output shape {list(img.shape)}, expected {list(expect)}", True)
        if not torch.isfinite(img).all():
            return Check("FAIL", label, "output has NaN/Inf", True)
        return Check("OK", label, f"w {list(w.shape)}, F {list(F.shape)} -> image {list(img.shape)}, finite "
                     f"({time.perf_counter() - t0:.1f} s)", True)
    except Exception as exc:  # reported, never a crash
        msg = str(exc).splitlines()[0] if str(exc) else ""
        return Check("FAIL", label, f"{type(exc).__name__}: {msg}", True)
    finally:
        if threads is not None:
            torch.set_num_threads(threads)
