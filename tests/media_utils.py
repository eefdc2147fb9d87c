"""Tiny synthetic test clips written with PyAV (no ffmpeg CLI needed).

Public API (others may import it):

- ``pattern_frame(i, size, pattern='moving') -> uint8 [h, w, 3]``: the upright content of frame ``i``.
- ``clip_pts(n_frames, fps=25, vfr=False) -> (pts int64 [n], time_base)``: the timestamps ``make_clip`` uses.
- ``make_clip(path, n_frames, size=(64, 48), fps=25, vfr=False, rotation=0, audio=True, pattern='moving', ...)``:
  writes the clip and returns its path.

The "moving" pattern is a smooth gradient with a bright square that moves one step per frame and a
red block in the top-left corner (it shows which way is up). Rotation is stored as a display matrix
(the "rotate" tag): a clip made with ``rotation=90`` stores frames turned 90 degrees counter-clockwise
that a player turns 90 degrees clockwise back to the upright pattern.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["pattern_frame", "clip_pts", "make_clip"]


def pattern_frame(i: int, size: tuple[int, int], pattern: str = "moving") -> np.ndarray:
    """The upright RGB content of frame ``i`` of a synthetic clip of display ``size = (w, h)``.

    Shape:
        returns uint8 ``[h, w, 3]``.
    """
    w, h = size
    if pattern == "noise":
        return np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
    if pattern != "moving":
        raise ValueError(f"unknown pattern {pattern!r}: use 'moving' or 'noise'")
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([40 + 120 * x / max(w - 1, 1), 40 + 120 * y / max(h - 1, 1), np.full_like(x, 90)], -1)
    s = max(min(w, h) // 4, 2)
    x0 = (3 * i) % max(w - s, 1)
    y0 = (2 * i) % max(h - s, 1)
    img[y0:y0 + s, x0:x0 + s] = 235
    b = max(min(w, h) // 6, 2)
    img[:b, :b] = (230, 20, 20)
    return img.astype(np.uint8)


def clip_pts(n_frames: int, fps: int = 25, vfr: bool = False) -> tuple[np.ndarray, Fraction]:
    """Timestamps of ``make_clip`` frames: one tick per frame, or for ``vfr`` a gap of two ticks every third frame.

    Shape:
        returns pts int64 ``[n_frames]`` and the time base ``1 / (fps * 512)``.
    """
    tick = 512
    steps = np.where((np.arange(n_frames) % 3 == 2) & vfr, 2, 1)
    pts = np.concatenate([[0], np.cumsum(steps)[:-1]]) * tick if n_frames else np.zeros(0)
    return pts.astype(np.int64), Fraction(1, int(fps) * tick)


def make_clip(path: str | Path, n_frames: int, size: tuple[int, int] = (64, 48), fps: int = 25, vfr: bool = False,
              rotation: int = 0, audio: bool = True, pattern: str = "moving", video: bool = True,
              codec: str = "libx264", crf: int = 12, audio_rate: int = 16000, gop: int = 8) -> Path:
    """Write a tiny synthetic clip with PyAV.

    Args:
        path: output file (``.mp4``; ``.m4a`` for audio only).
        n_frames: number of video frames (0 gives a video stream without frames).
        size: upright display size ``(w, h)``; stored frames are ``(h, w)``-swapped for 90/270.
        fps: nominal frame rate.
        vfr: variable frame rate (see ``clip_pts``).
        rotation: clockwise degrees a player applies (0, 90, 180, 270), written as a display matrix.
        audio: add an AAC sine track (440 Hz) as long as the video (or 0.5 s).
        pattern: ``'moving'`` or ``'noise'`` (see ``pattern_frame``).
        video: ``False`` writes an audio-only file.
        codec, crf, gop: video encoder settings (``gop`` frames between keyframes, so seeks are exercised).

    Returns:
        ``Path(path)``.
    """
    import av

    if rotation % 90 or rotation not in (0, 90, 180, 270):
        raise ValueError(f"rotation must be 0, 90, 180 or 270, got {rotation}")
    path = Path(path)
    pts, tb = clip_pts(n_frames, fps, vfr)
    w, h = size
    sw, sh = (h, w) if rotation in (90, 270) else (w, h)
    out = av.open(str(path), "w")
    try:
        v = None
        if video:
            opts = {"crf": str(crf), "preset": "ultrafast", "g": str(gop), "keyint_min": str(gop)} if "264" in codec else {}
            v = out.add_stream(codec, rate=fps, options=opts)
            v.width, v.height = sw, sh
            v.pix_fmt = "yuv420p" if sw % 2 == 0 and sh % 2 == 0 else "yuv444p"
            v.time_base = tb
            v.codec_context.time_base = tb
            if "264" in codec:
                v.codec_context.gop_size = gop
            if rotation:
                if not hasattr(v, "set_display_rotation"):
                    raise RuntimeError("this PyAV cannot write a display matrix (needs PyAV >= 18)")
                v.set_display_rotation(-rotation)  # PyAV: counter-clockwise degrees
        a = out.add_stream("aac", rate=audio_rate, layout="mono") if audio else None
        for i in range(n_frames if video else 0):
            img = np.rot90(pattern_frame(i, size, pattern), k=rotation // 90)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts, frame.time_base = int(pts[i]), tb
            frame.duration = int(pts[i + 1] - pts[i]) if i + 1 < n_frames else 512
            for p in v.encode(frame):
                out.mux(p)
        if v is not None:
            for p in v.encode(None):
                out.mux(p)
        if a is not None:
            seconds = (int(pts[-1]) + 512) * tb if video and n_frames else Fraction(1, 2)
            n = int(seconds * audio_rate)
            t = np.arange(n) / audio_rate
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            step = 1024
            for k in range(0, n, step):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, k:k + step]), format="flt", layout="mono")
                af.sample_rate, af.pts, af.time_base = audio_rate, k, Fraction(1, audio_rate)
                for p in a.encode(af):
                    out.mux(p)
            for p in a.encode(None):
                out.mux(p)
    finally:
        out.close()
    return path
