"""Clips with a real face for pipeline tests: scikit-image's astronaut photo (public domain) moving over time."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


def face_frames(n: int, size: tuple[int, int] = (192, 192), fps: float = 25.0, seed: int = 0) -> np.ndarray:
    """uint8 [n,H,W,3]: the astronaut's head with a slow synthetic head motion."""
    from skimage import data

    img = data.astronaut()[:320, 96:416]
    h, w = img.shape[:2]
    out = []
    for i in range(n):
        t = i / fps
        M = cv2.getRotationMatrix2D((w / 2, h / 2.6), 3.0 * math.sin(2 * math.pi * 0.5 * t),
                                    1.0 + 0.04 * math.sin(2 * math.pi * 0.3 * t))
        M[:, 2] += (8.0 * math.sin(2 * math.pi * 0.4 * t), 4.0 * math.cos(2 * math.pi * 0.3 * t))
        f = cv2.warpAffine(img, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        out.append(cv2.resize(f, size, interpolation=cv2.INTER_AREA))
    return np.stack(out)


def write_clip(path: Path, frames: np.ndarray, pts: list[int] | None = None, time_base: Fraction = Fraction(1, 25),
               audio: bool = True, pix_fmt: str | None = None, rotation: int = 0) -> Path:
    """Encode upright frames (uint8 [T,H,W,3]) with explicit pts (VFR when uneven) and an AAC tone.

    ``rotation`` (clockwise degrees a player applies) stores the frames turned the other way and writes
    the display matrix, as phones do, so that the clip plays upright.
    """
    if rotation:
        frames = np.stack([np.rot90(f, k=rotation // 90) for f in frames])
    n, h, w = frames.shape[:3]
    pts = list(range(n)) if pts is None else list(pts)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=int(round(1 / time_base)) if time_base.numerator == 1 else 25)
        vs.width, vs.height = w, h
        vs.pix_fmt = pix_fmt or ("yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p")
        vs.time_base = time_base
        vs.codec_context.time_base = time_base
        vs.options = {"crf": "16"}
        if rotation:
            vs.set_display_rotation(-rotation)  # PyAV takes counter-clockwise degrees
        au = out.add_stream("aac", rate=44100) if audio else None
        for img, p in zip(frames, pts):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            vf.pts = int(p)
            vf.time_base = time_base
            for pkt in vs.encode(vf):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        if au is not None:
            dur = float((pts[-1] + 1) * time_base)
            sr, hop = 44100, 1024
            total = int(dur * sr)
            for s in range(0, total, hop):
                t = np.arange(s, min(s + hop, total)) / sr
                tone = (0.1 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
                af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
                af.sample_rate, af.pts, af.time_base = sr, s, Fraction(1, sr)
                for pkt in au.encode(af):
                    out.mux(pkt)
            for pkt in au.encode():
                out.mux(pkt)
    return path


def side_by_side(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = min(len(a), len(b))
    h = min(a.shape[1], b.shape[1])
    return np.concatenate([a[:n, :h], b[:n, :h]], axis=2)


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]
