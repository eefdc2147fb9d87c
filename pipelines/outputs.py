"""Output names of edited clips: ``clip.mp4`` + ``--attr smile --strength 2`` -> ``clip_smile+2.mp4``."""

from __future__ import annotations

from pathlib import Path


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
