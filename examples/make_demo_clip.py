"""Make a demo clip from a public-domain photo that a dependency ships (scikit-image's astronaut).

The photo (NASA, public domain) is moved, zoomed and slightly rotated over time to give a
synthetic head motion, and a quiet tone is added as the audio track, so the clip exercises
detection, tracking, stabilisation and audio pass-through.

    python examples/make_demo_clip.py demo.mp4 --seconds 4 --fps 25
    vidinv edit demo.mp4 --attr smile --strength 1.5
"""

from __future__ import annotations

import argparse
import math
from fractions import Fraction

import av
import cv2
import numpy as np


def astronaut_frames(n: int, size: int = 384, fps: float = 25.0):
    from skimage import data

    img = data.astronaut()[:320, 96:416]  # 512x512 RGB, public domain (NASA); the head and shoulders
    h, w = img.shape[:2]
    for i in range(n):
        t = i / fps
        angle = 4.0 * math.sin(2 * math.pi * 0.4 * t)          # degrees of head roll
        scale = 1.0 + 0.06 * math.sin(2 * math.pi * 0.25 * t)  # slow zoom
        dx = 12.0 * math.sin(2 * math.pi * 0.3 * t)
        dy = 6.0 * math.cos(2 * math.pi * 0.2 * t)
        M = cv2.getRotationMatrix2D((w / 2, h / 2.6), angle, scale)
        M[:, 2] += (dx, dy)
        frame = cv2.warpAffine(img, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        yield cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)


def write_clip(path: str, seconds: float = 4.0, fps: int = 25, size: int = 384) -> None:
    n = int(round(seconds * fps))
    with av.open(path, "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width = vs.height = size
        vs.pix_fmt = "yuv420p"
        vs.options = {"crf": "18"}
        au = out.add_stream("aac", rate=44100)
        for frame in astronaut_frames(n, size, fps):
            for pkt in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        sr, hop = 44100, 1024
        total = int(seconds * sr)
        for start in range(0, total, hop):
            t = (np.arange(start, min(start + hop, total)) / sr).astype(np.float32)
            tone = (0.1 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
            af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
            af.sample_rate = sr
            af.pts = start
            af.time_base = Fraction(1, sr)
            for pkt in au.encode(af):
                out.mux(pkt)
        for pkt in au.encode():
            out.mux(pkt)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default="demo.mp4")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--size", type=int, default=384)
    a = ap.parse_args()
    write_clip(a.out, a.seconds, a.fps, a.size)
    print(f"wrote {a.out}")
