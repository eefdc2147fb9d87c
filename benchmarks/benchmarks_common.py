"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

from pathlib import Path


def trim_clip(src: Path, dst: Path, n: int) -> None:
    """The first n frames of src (re-encoded at high quality, audio dropped) into dst."""
    from vidinv.io.video import VideoReader, VideoWriter, probe

    info = probe(src)
    chunk = VideoReader(src).read_range(0, n)
    with VideoWriter(dst, info, crf=12, audio_from=None) as w:
        w.write(chunk.frames, chunk.pts)
