"""Video I/O on PyAV: ``probe``, a streaming/seeking ``VideoReader`` and an atomic ``VideoWriter``.

Frames travel as uint8 ``[T, H, W, 3]`` RGB numpy arrays, *upright* (the stream's display
matrix / rotate tag is applied on decode), together with their presentation timestamps
(``pts`` int64, in the input stream's ``time_base``). The writer takes the same frames and pts
back and produces an H.264 file with the same frame count, timestamps and duration as the
input (variable frame rate kept), the input's audio packets copied unchanged, and no display
matrix (the frames are already upright, so the output plays the way the input does).

Colour: the reader converts YUV to RGB with the clip's own matrix and range (``VideoInfo.colour``);
the writer converts back with the same ones, keeps the input's bit depth (8 or 10) and chroma
subsampling, and tags its stream with the input's range, matrix, primaries and transfer, so
untouched pixels come back without a bias (see ``vidinv.io.colour``). 10-bit input is decoded to
the same uint8 RGB (rounded, unbiased) and written back as 10-bit ``yuv420p10le``.

Odd frame sizes: H.264 4:2:0 cannot code an odd width or height (its cropping works in
2-pixel steps), so for an odd display size the writer switches to ``yuv444p`` (High 4:4:4
profile) and keeps the exact size. Pass ``pix_fmt='yuv420p'`` to force 4:2:0 for players that
lack 4:4:4 support: the frames are then padded by edge replication to the next even size.

Frame identity is the pts: ``read_range(a, b)`` returns exactly the frames that sequential
decoding yields at positions ``a..b-1`` (it seeks to the last keyframe at or before frame
``a``, decodes forward and verifies the pts against a packet index of the clip).
"""

from __future__ import annotations

import os
from contextlib import closing
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from vidinv.errors import InputError
from vidinv.io.colour import Colour, colour_of, frame_to_rgb

__all__ = ["VideoInfo", "FrameChunk", "VideoReader", "VideoWriter", "probe", "Colour"]

@dataclass(frozen=True)
class VideoInfo:
    """What ``probe`` found out about a clip's first video stream.

    Attributes:
        path: the file.
        width, height: the frame size as stored (coded, before rotation).
        rotation: clockwise degrees (0, 90, 180, 270) to turn a stored frame upright (the "rotate" tag).
        display_width, display_height: the upright size (what the reader returns, what the writer expects).
        n_frames: exact number of frames (counted from the demuxed packets).
        time_base: the video stream's time base; ``pts * time_base`` is seconds.
        fps: average frame rate (frames per second; the clip may be variable-frame-rate).
        duration: seconds from the first frame's pts to the end of the last frame.
        codec: the video codec name (``h264``, ``mpeg4``, ...).
        has_audio, n_audio_streams: audio streams present (the writer copies them).
        start_pts: pts of the first frame (presentation order).
        end_pts: pts just after the last frame (its pts plus its duration).
        pix_fmt: the decoder's pixel format (``yuv420p``, ``yuvj420p``, ``yuv420p10le``, ...).
        colour: range, YUV matrix, primaries and transfer of the first frame (the reader converts with
            them; the writer converts back with them and tags its output with them).
    """

    path: str
    width: int
    height: int
    rotation: int
    display_width: int
    display_height: int
    n_frames: int
    time_base: Fraction
    fps: float
    duration: float
    codec: str
    has_audio: bool
    n_audio_streams: int
    start_pts: int = 0
    end_pts: int = 0
    pix_fmt: str = ""
    colour: Colour = Colour()

    @property
    def size(self) -> tuple[int, int]:
        """The upright ``(width, height)``."""
        return self.display_width, self.display_height


@dataclass
class FrameChunk:
    """Consecutive decoded frames ``[start, start + T)`` of a clip.

    Shape:
        frames: uint8 ``[T, H, W, 3]`` RGB, upright. pts: int64 ``[T]`` in ``time_base``.
    """

    start: int
    frames: np.ndarray
    pts: np.ndarray
    time_base: Fraction

    @property
    def stop(self) -> int:
        return self.start + len(self.frames)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def times(self) -> np.ndarray:
        """Presentation times in seconds, float64 ``[T]``."""
        return self.pts.astype(np.float64) * float(self.time_base)


# ----------------------------------------------------------------------------------------------
# opening and indexing


def _open(path: str | os.PathLike):
    import av

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if not p.is_file():
        raise InputError(f"{p}: not a regular file")
    try:
        container = av.open(str(p), "r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{p}: cannot read it as a video ({_reason(e)})") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{p}: no video stream in the file")
    return container


def _reason(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return (msg[0] if msg else type(e).__name__)[:200]


@dataclass(frozen=True)
class _Index:
    """The clip's frames as found by demuxing (no decoding)."""

    pts: np.ndarray | None  # int64 [N] sorted presentation timestamps, None when packets lack pts
    n: int
    key_dts: tuple[int, ...]  # seek targets of the keyframes, decode order
    key_pts: tuple[int, ...]
    end_pts: int
    last_duration: int


def _build_index(path: str) -> _Index:
    container = _open(path)
    try:
        v = container.streams.video[0]
        pts, key_dts, key_pts, ends, n, missing = [], [], [], [], 0, False
        last_dur = 0
        try:
            for p in container.demux(v):
                if p.size == 0 or p.is_discard:
                    continue
                n += 1
                if p.pts is None:
                    missing = True
                    continue
                pts.append(p.pts)
                ends.append(p.pts + (p.duration or 0))
                if p.is_keyframe:
                    key_dts.append(p.dts if p.dts is not None else p.pts)
                    key_pts.append(p.pts)
        except Exception as e:  # a truncated/corrupt file fails here, not at open
            raise InputError(f"{path}: the file is corrupt or truncated ({_reason(e)})") from None
        arr = None if missing or not pts else np.sort(np.asarray(pts, np.int64))
        if arr is not None:
            # the end of the last frame: the stream's own start + duration (mp4: edit list / track
            # duration) when it is consistent, else the packets' pts + duration, else one median gap
            end = max(ends)
            if v.duration and v.start_time is not None and v.start_time + v.duration > arr[-1]:
                end = int(v.start_time + v.duration)
            if end <= arr[-1]:
                end = int(arr[-1]) + (int(np.median(np.diff(arr))) if len(arr) > 1 else 1)
            last_dur = end - int(arr[-1])
        else:
            end = 0
        return _Index(arr, n, tuple(key_dts), tuple(key_pts), int(end), int(last_dur))
    finally:
        container.close()


@lru_cache(maxsize=32)
def _cached_index(path: str, size: int, mtime_ns: int) -> _Index:
    return _build_index(path)


def _index(path: str | os.PathLike) -> _Index:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    st = p.stat()
    return _cached_index(str(p.resolve()), st.st_size, st.st_mtime_ns)


def _rotation_of(frame) -> int:
    """Clockwise degrees that turn this decoded frame upright (from its display matrix)."""
    rot = getattr(frame, "rotation", 0) or 0
    return int(round(-float(rot) / 90.0)) * 90 % 360


def _upright(img: np.ndarray, rotation: int) -> np.ndarray:
    if rotation == 0:
        return img
    return np.ascontiguousarray(np.rot90(img, k=-(rotation // 90)))


def _check_complete(path, container, stream, n_read: int) -> None:
    """An MP4/MOV whose index lists more frames than its data holds was cut short (e.g. a copy interrupted
    with the index at the front): editing it would silently drop the tail, so it is an error."""
    listed = int(stream.frames or 0)
    formats = set((container.format.name or "").split(","))
    if listed > n_read and formats & {"mov", "mp4"}:
        raise InputError(f"{path}: the file is truncated: its index lists {listed} frames but only {n_read} "
                         "are in the file")


def probe(path: str | os.PathLike) -> VideoInfo:
    """Describe a clip's first video stream (size, rotation, exact frame count, timing, audio).

    The frame count comes from demuxing every packet (cheap: no decoding), so it is exact even
    when the header's count is missing or wrong; the rotation comes from the first decoded
    frame's display matrix.

    Args:
        path: a video file.

    Returns:
        A ``VideoInfo``.

    Raises:
        InputError: the file is missing, unreadable or corrupt, has no video stream or no frames.
    """
    idx = _index(path)
    if idx.n == 0:
        raise InputError(f"{path}: the video stream has no frames")
    container = _open(path)
    try:
        v = container.streams.video[0]
        cc = v.codec_context
        rotation, width, height, pix_fmt = 0, cc.width, cc.height, cc.pix_fmt or ""
        colour = colour_of(cc)
        try:
            for frame in container.decode(v):
                rotation, width, height = _rotation_of(frame), frame.width, frame.height
                pix_fmt, colour = frame.format.name, colour_of(frame)
                break
            else:
                raise InputError(f"{path}: no frame of the video stream could be decoded")
        except InputError:
            raise
        except Exception as e:
            raise InputError(f"{path}: the video stream cannot be decoded ({_reason(e)})") from None
        _check_complete(path, container, v, idx.n)
        tb = Fraction(v.time_base) if v.time_base else Fraction(1, 90000)
        start = int(idx.pts[0]) if idx.pts is not None else 0
        duration = float((idx.end_pts - start) * tb) if idx.pts is not None else 0.0
        if duration <= 0:
            duration = float(container.duration or 0) / 1e6
        rate = v.average_rate  # frames / duration describes the file itself; the header rate is a fallback
        fps = idx.n / duration if duration > 0 else (float(rate) if rate else 0.0)
        dw, dh = (height, width) if rotation in (90, 270) else (width, height)
        n_audio = len(container.streams.audio)
        return VideoInfo(path=str(path), width=width, height=height, rotation=rotation, display_width=dw,
                         display_height=dh, n_frames=idx.n, time_base=tb, fps=fps, duration=duration,
                         codec=cc.name, has_audio=n_audio > 0, n_audio_streams=n_audio, start_pts=start,
                         end_pts=idx.end_pts, pix_fmt=pix_fmt, colour=colour)
    finally:
        container.close()


# ----------------------------------------------------------------------------------------------
# reading


class VideoReader:
    """Streaming decoder of a clip's first video stream: frames come out upright, RGB, uint8.

    Nothing is held open between calls: each of ``chunks``, ``__iter__`` and ``read_range`` opens
    the file, so one reader may serve several threads and a worker can read its own range.

    Args:
        path: the video file.
        rotate: apply the display rotation (default); ``False`` returns frames as stored.
        threads: decoder threads (0 = FFmpeg's choice).

    Example:
        >>> for chunk in VideoReader("clip.mp4").chunks(32):  # doctest: +SKIP
        ...     process(chunk.frames, chunk.pts)
    """

    def __init__(self, path: str | os.PathLike, rotate: bool = True, threads: int = 0) -> None:
        self.path = Path(path)
        self.info = probe(self.path)
        self.rotate = bool(rotate)
        self.threads = int(threads)

    def __len__(self) -> int:
        return self.info.n_frames

    @property
    def time_base(self) -> Fraction:
        return self.info.time_base

    def _rgb(self, frame: Any) -> np.ndarray:
        """An ``av.VideoFrame`` as upright RGB uint8 ``[H, W, 3]`` (the clip's matrix and range)."""
        return _upright(frame_to_rgb(frame, self.info.colour), self.info.rotation if self.rotate else 0)

    def _decode(self, seek_dts: int | None = None) -> Iterator[tuple[Any, int | None]]:
        """Decoded (``av.VideoFrame``, pts) pairs from the start, or from the keyframe at ``seek_dts``."""
        container = _open(self.path)
        try:
            v = container.streams.video[0]
            v.thread_type = "AUTO"
            if self.threads:
                v.codec_context.thread_count = self.threads
            if seek_dts is not None:
                container.seek(int(seek_dts), stream=v, backward=True, any_frame=False)
            try:
                for frame in container.decode(v):
                    yield frame, frame.pts
            except Exception as e:
                if isinstance(e, GeneratorExit):
                    raise
                import av

                if isinstance(e, av.error.FFmpegError):
                    raise InputError(f"{self.path}: decoding failed ({_reason(e)})") from None
                raise
        finally:
            container.close()

    def _frames(self) -> Iterator[tuple[int, np.ndarray, int]]:
        idx = _index(self.path)
        with closing(self._decode()) as decoded:
            for i, (frame, pts) in enumerate(decoded):
                if pts is None:
                    pts = int(idx.pts[i]) if idx.pts is not None and i < len(idx.pts) else i
                yield i, self._rgb(frame), int(pts)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Single upright frames uint8 ``[H, W, 3]``, in order."""
        for _, img, _ in self._frames():
            yield img

    def chunks(self, size: int = 32) -> Iterator[FrameChunk]:
        """Consecutive ``FrameChunk``s of ``size`` frames (the last may be shorter), decoded streaming.

        Shape:
            each chunk: frames ``[T<=size, H, W, 3]`` uint8, pts ``[T]`` int64.
        """
        if int(size) < 1:
            raise ValueError(f"chunk size must be >= 1, got {size}")
        buf, pts, start = [], [], 0
        for i, img, p in self._frames():
            buf.append(img)
            pts.append(p)
            if len(buf) == size:
                yield FrameChunk(start, np.stack(buf), np.asarray(pts, np.int64), self.time_base)
                buf, pts, start = [], [], i + 1
        if buf:
            yield FrameChunk(start, np.stack(buf), np.asarray(pts, np.int64), self.time_base)

    def read_range(self, start: int, stop: int) -> FrameChunk:
        """Frames ``[start, stop)``, identical to what sequential decoding yields at those positions.

        Seeks to the last keyframe at or before frame ``start`` and decodes forward; falls back to
        earlier keyframes (and finally to the beginning) if the seek lands too late.

        Shape:
            frames ``[stop - start, H, W, 3]`` uint8, pts ``[stop - start]`` int64.
        """
        n = self.info.n_frames
        if not (0 <= int(start) <= int(stop) <= n):
            raise ValueError(f"frame range [{start}, {stop}) is outside the clip's {n} frames")
        start, stop = int(start), int(stop)
        h, w = self.info.display_height, self.info.display_width
        if not self.rotate:
            h, w = self.info.height, self.info.width
        if start == stop:
            return FrameChunk(start, np.zeros((0, h, w, 3), np.uint8), np.zeros(0, np.int64), self.time_base)
        idx = _index(self.path)
        if idx.pts is None or len(idx.pts) != n:  # no timestamps to seek by: decode from the start
            frames, pts = [], []
            for i, img, p in self._frames():
                if i >= stop:
                    break
                if i >= start:
                    frames.append(img)
                    pts.append(p)
            return FrameChunk(start, np.stack(frames), np.asarray(pts, np.int64), self.time_base)
        want = idx.pts[start:stop]
        target = int(want[0])
        keys = sorted((kp, kd) for kp, kd in zip(idx.key_pts, idx.key_dts) if kp <= target)
        candidates = [kd for _, kd in reversed(keys)][:3] + [None]  # None = from the beginning
        if start == 0:
            candidates = [None]
        for seek in candidates:
            frames, pts = [], []
            ok = True
            with closing(self._decode(seek)) as decoded:
                for frame, p in decoded:
                    if p is None:
                        ok = False
                        break
                    if p < target:
                        continue
                    if not frames and p != target:  # the seek landed after the first wanted frame
                        ok = False
                        break
                    frames.append(self._rgb(frame))
                    pts.append(p)
                    if len(frames) == len(want):
                        break
            if ok and len(frames) == len(want) and np.array_equal(np.asarray(pts, np.int64), want):
                return FrameChunk(start, np.stack(frames), np.asarray(pts, np.int64), self.time_base)
        raise InputError(f"{self.path}: could not decode frames [{start}, {stop}) (damaged stream?)")


# re-exported, so that ``from vidinv.io.video import VideoWriter`` keeps working
from vidinv.io.writer import VideoWriter  # noqa: E402
