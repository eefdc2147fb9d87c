"""Colour handling of the video I/O: one matrix and one range for YUV -> RGB and back.

A clip's colour properties (``Colour``: range, matrix, primaries, transfer, as FFmpeg's ``AVCOL_*``
numbers) are read from its first decoded frame; the reader converts YUV to RGB with exactly that
matrix and range, and the writer converts RGB back with the same matrix and range and tags the
output stream with the same four properties. Untouched pixels then round-trip without a bias.

- Decoding uses swscale with explicit source colorspace/range and ``ACCURATE_RND | FULL_CHR_H_INT``
  (without the full-chroma flags swscale's 4:2:0 -> RGB path darkens luma by about one level).
- Encoding is done here in numpy (float32): swscale's full-range RGB -> YUV conversion puts the
  chroma half a level low (measured with libswscale 9.5), which a round trip would accumulate.

An unspecified matrix is treated as BT.601 and an unspecified range as limited (tv), which is what
FFmpeg assumes for untagged streams; the output keeps the input's (unspecified) tags, so players make
the same guess for both files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Colour", "colour_of", "frame_to_rgb", "rgb_to_frame", "output_pix_fmt"]

# AVColorSpace -> (Kr, Kb) luma coefficients and the swscale colorspace name
_BT601 = (0.299, 0.114, "ITU601")
_MATRICES = {
    1: (0.2126, 0.0722, "ITU709"),  # BT709
    4: (0.30, 0.11, "FCC"),  # FCC
    5: _BT601,  # BT470BG
    6: _BT601,  # SMPTE170M
    7: (0.212, 0.087, "SMPTE240M"),  # SMPTE240M
    9: (0.2627, 0.0593, "BT2020"),  # BT2020_NCL
}
_RANGE_MPEG, _RANGE_JPEG = 1, 2
_SPC_UNSPECIFIED = 2


@dataclass(frozen=True)
class Colour:
    """A stream's colour properties as FFmpeg ``AVCOL_*`` numbers (0/2 mean unspecified)."""

    color_range: int = 0  # 0 unspecified, 1 limited (tv/mpeg), 2 full (pc/jpeg)
    colorspace: int = _SPC_UNSPECIFIED  # the YUV matrix (1 bt709, 5/6 bt601, 9 bt2020nc, ...)
    color_primaries: int = 2
    color_trc: int = 2

    @property
    def full_range(self) -> bool:
        return self.color_range == _RANGE_JPEG

    @property
    def matrix(self) -> tuple[float, float, str]:
        """``(Kr, Kb, swscale name)`` of the YUV matrix used both ways (BT.601 for one we do not know)."""
        return _MATRICES.get(self.colorspace, _BT601)

    def for_output(self) -> Colour:
        """The writer's output tags: the input's, except a matrix it cannot code (RGB, YCgCo)."""
        spc = self.colorspace if self.colorspace in _MATRICES else _SPC_UNSPECIFIED
        return Colour(self.color_range, spc, self.color_primaries, self.color_trc)


def colour_of(obj: Any) -> Colour:
    """The colour properties of an ``av.VideoFrame`` or a video codec context."""
    return Colour(int(obj.color_range), int(obj.colorspace), int(obj.color_primaries), int(obj.color_trc))


def _sws_flags() -> int:
    from av.video.reformatter import Interpolation as I

    return int(I.BICUBIC | I.ACCURATE_RND | I.FULL_CHR_H_INT | I.FULL_CHR_H_INP)


def frame_to_rgb(frame: Any, colour: Colour) -> np.ndarray:
    """A decoded ``av.VideoFrame`` as RGB uint8 ``[H, W, 3]``, converted with ``colour``'s matrix and range.

    Shape:
        returns ``[frame.height, frame.width, 3]``.
    """
    if frame.format.name == "rgb24":
        return frame.to_ndarray()
    cs = colour.matrix[2]
    return frame.to_ndarray(format="rgb24", src_colorspace=cs, dst_colorspace=cs,
                            src_color_range="JPEG" if colour.full_range else "MPEG", dst_color_range="JPEG",
                            interpolation=_sws_flags())


def output_pix_fmt(input_pix_fmt: str, odd: bool) -> str:
    """The writer's YUV format for an input format: same chroma subsampling and 8 or 10 bits.

    4:4:4 for odd sizes (H.264 cannot code an odd 4:2:0 or 4:2:2 size); RGB inputs are coded as 4:4:4.
    """
    import av

    name = input_pix_fmt or "yuv420p"
    try:
        fmt = av.VideoFormat(name)
        deep = max(c.bits for c in fmt.components) > 8
        rgb = fmt.is_rgb
    except (ValueError, TypeError):
        deep, rgb = False, False
    chroma = "444" if (odd or rgb or "444" in name) else ("422" if "422" in name else "420")
    return f"yuv{chroma}p" + ("10le" if deep else "")


def _subsample(c: np.ndarray, sx: int, sy: int) -> np.ndarray:
    """Average ``sy x sx`` blocks of a full-resolution chroma plane ``[H, W]`` (H, W multiples)."""
    if sx == 1 and sy == 1:
        return c
    h, w = c.shape
    return c.reshape(h // sy, sy, w // sx, sx).mean(axis=(1, 3))


def rgb_to_planes(img: np.ndarray, colour: Colour, bits: int, sx: int, sy: int) -> list[np.ndarray]:
    """RGB uint8 ``[H, W, 3]`` -> Y, Cb, Cr integer planes (Y ``[H, W]``, chroma ``[H/sy, W/sx]``).

    ``colour``'s matrix and range, ``bits`` per sample; full range uses FFmpeg's convention for deep
    samples (scale ``2**bits - 1``, chroma centre ``2**(bits-1)``).
    """
    kr, kb, _ = colour.matrix
    x = img.astype(np.float32) * np.float32(1 / 255)
    y = kr * x[..., 0] + (1 - kr - kb) * x[..., 1] + kb * x[..., 2]
    cb = (x[..., 2] - y) * np.float32(0.5 / (1 - kb))
    cr = (x[..., 0] - y) * np.float32(0.5 / (1 - kr))
    top = (1 << bits) - 1
    mid = float(1 << (bits - 1))
    if colour.full_range:
        yq, cq, yo = float(top), float(top), 0.0
    else:
        s = float(1 << (bits - 8))
        yq, cq, yo = 219.0 * s, 224.0 * s, 16.0 * s
    dt = np.uint16 if bits > 8 else np.uint8
    planes = [yo + yq * y, mid + cq * _subsample(cb, sx, sy), mid + cq * _subsample(cr, sx, sy)]
    return [np.clip(np.rint(p), 0, top).astype(dt) for p in planes]


def rgb_to_frame(img: np.ndarray, pix_fmt: str, colour: Colour) -> Any:
    """An ``av.VideoFrame`` in ``pix_fmt`` (``yuv4{20,22,44}p[10le]``) from RGB uint8 ``[H, W, 3]``, tagged.

    H and W must be multiples of the format's chroma subsampling (the writer pads odd sizes).
    """
    import av

    if not pix_fmt.startswith(("yuv420p", "yuv422p", "yuv444p")) or pix_fmt.endswith("be"):
        raise ValueError(f"cannot convert RGB to {pix_fmt!r}: use yuv420p, yuv422p or yuv444p (8 or 10le)")
    h, w = img.shape[:2]
    sx, sy = {"420": (2, 2), "422": (2, 1), "444": (1, 1)}[pix_fmt[3:6]]
    bits = 10 if pix_fmt.endswith("10le") else 8
    frame = av.VideoFrame(w, h, pix_fmt)
    for plane, data in zip(frame.planes, rgb_to_planes(img, colour, bits, sx, sy)):
        dst = np.frombuffer(plane, data.dtype).reshape(plane.height, -1)
        dst[:, : data.shape[1]] = data
        dst[:, data.shape[1]:] = data[:, -1:]  # define the row padding too (SIMD copies read past the width)
    out = colour.for_output()
    frame.color_range, frame.colorspace = out.color_range, out.colorspace
    frame.color_primaries, frame.color_trc = out.color_primaries, out.color_trc
    return frame
