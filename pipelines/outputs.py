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
