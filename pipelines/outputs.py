"""Output names of edited clips: ``clip.mp4`` + ``--attr smile --strength 2`` -> ``clip_smile+2.mp4``."""

from __future__ import annotations

from pathlib import Path

from vidinv.errors import InputError


def edit_tag(edits) -> str:
    """The file-name tag of a list of ``(attribute spec, strength)`` (``inversion`` without edits)."""
    if not edits:
        return "inversion"
    parts = []
    for name, s in edits:
        base = Path(str(name)).stem if ("/" in str(name) or "." in str(name)) else str(name)
        parts.append(base.replace(":", "") + ("" if float(s) == 1 else f"{float(s):+g}"))
    return "_".join(parts)


def default_output(src: Path, edits) -> Path:
    """Beside the input: ``<stem>_<edit tag>.mp4``."""
    return src.with_name(f"{src.stem}_{edit_tag(edits)}.mp4")


def _first_existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_writable(folder: Path, what: str) -> None:
    """A real write probe (``os.access`` ignores read-only mounts, and says yes to root everywhere)."""
    import os
    import secrets

    probe = folder / f".vidinv-write-probe-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise InputError(f"{what}: cannot write in the folder {folder} ({exc.strerror or exc})") from None


def check_folder(folder: Path, what: str, create: bool = False) -> None:
    """``folder`` must be an existing, writable folder; with ``create`` a missing one is made, but only
    its last level (its parent must exist: a mistyped path never grows a tree of folders)."""
    folder = Path(folder).absolute()
    if folder.is_dir():
        _check_writable(folder, what)
        return
    if folder.exists():
        raise InputError(f"{what}: {folder} is a file, not a folder")
    found = _first_existing(folder)
    if not found.is_dir():
        raise InputError(f"{what}: {found} is a file, not a folder")
    if not create or found != folder.parent:
        missing = folder if not create else folder.parent
        raise InputError(f"{what}: the folder {missing} does not exist (create it first)")
    _check_writable(found, what)
    try:
        folder.mkdir()
    except OSError as exc:
        raise InputError(f"{what}: cannot create the folder {folder} ({exc.strerror or exc})") from None


def check_output_path(out: Path, cache_dir: str | Path | None = None) -> None:
    """Every problem of an output path and of its cache folder, before any work, as one plain line.

    The output's folder must exist and be writable, and the output must not be a folder. ``cache_dir``
    (``--cache-dir``; default: a hidden folder beside the output) may be missing at its last level only.

    Raises:
        InputError: naming the path and the problem.
    """
    out = Path(out)
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder; give a file name such as {out / 'edited.mp4'}")
    check_folder(out.parent, f"--out {out}")
    if cache_dir:
        check_folder(Path(cache_dir), f"--cache-dir {cache_dir}", create=True)


def existing_output(out: str | Path, overwrite: bool, what: str = "output") -> None:
    """An existing ``out`` is an error unless ``overwrite`` (then the writer replaces it atomically).

    Called before any work, so that a run never computes for minutes and then refuses to write.
    """
    from vidinv.errors import InputError

    p = Path(out)
    if p.exists() and not overwrite:
        raise InputError(f"{p}: the {what} exists; pass --overwrite to replace it")


def mirrored_outputs(inputs: list[Path], out_dir: Path, edits, root: Path | None = None) -> list[Path]:
    """Folder mode: each input's folder relative to ``root`` (default: the inputs' common folder) mirrored
    under ``out_dir``, so that ``a/take.mp4`` and ``b/take.mp4`` become ``OUT/a/take_smile.mp4`` and
    ``OUT/b/take_smile.mp4`` and names never collide."""
    import os

    inputs = [Path(p) for p in inputs]
    if root is None:
        parents = [str(p.resolve().parent) for p in inputs]
        root = Path(os.path.commonpath(parents)) if parents else Path(".")
    tag = edit_tag(edits)
    outs = []
    for p in inputs:
        rel = p.resolve().parent.relative_to(Path(root).resolve())
        outs.append(Path(out_dir) / rel / f"{p.stem}_{tag}.mp4")
    return outs
