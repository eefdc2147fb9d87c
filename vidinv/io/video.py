"""Video I/O on PyAV: ``probe``, a streaming/seeking ``VideoReader`` and an atomic ``VideoWriter``.

Frames travel as uint8 ``[T, H, W, 3]`` RGB numpy arrays, *upright* (the stream's display
matrix / rotate tag is applied on decode), together with their presentation timestamps
(``pts`` int64, in the input stream's ``time_base``). The writer takes the same frames and pts
back and produces an H.264 file with the same frame count, timestamps and duration as the
input (variable frame rate kept), the input's audio packets copied unchanged, and no display
matrix (the frames are already upright, so the output plays the way the input does).

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
import uuid
from contextlib import closing
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from vidinv.errors import InputError

__all__ = ["VideoInfo", "FrameChunk", "VideoReader", "VideoWriter", "probe", "quality_to_crf", "QUALITY_CRF"]

#: ``--quality`` presets mapped to libx264 CRF values (lower is better; 18 is visually lossless).
QUALITY_CRF = {"lossless": 0, "high": 14, "good": 18, "medium": 23, "low": 28}


def quality_to_crf(quality: str | int) -> int:
    """Map a ``--quality`` value (a name in ``QUALITY_CRF`` or a CRF number 0-51) to a CRF."""
    if isinstance(quality, str) and quality.strip().lower() in QUALITY_CRF:
        return QUALITY_CRF[quality.strip().lower()]
    try:
        crf = int(quality)
    except (TypeError, ValueError):
        raise InputError(f"unknown quality {quality!r}: use one of {', '.join(QUALITY_CRF)} or a CRF 0-51") from None
    if not 0 <= crf <= 51:
        raise InputError(f"quality CRF {crf} is out of range: use 0 (lossless) to 51 (worst)")
    return crf


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
        pix_fmt: the decoder's pixel format.
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
        try:
            for frame in container.decode(v):
                rotation, width, height = _rotation_of(frame), frame.width, frame.height
                pix_fmt = frame.format.name
                break
            else:
                raise InputError(f"{path}: no frame of the video stream could be decoded")
        except InputError:
            raise
        except Exception as e:
            raise InputError(f"{path}: the video stream cannot be decoded ({_reason(e)})") from None
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
                         end_pts=idx.end_pts, pix_fmt=pix_fmt)
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
        backend: ``'pyav'`` (default) or ``'decord'`` for ``read_range`` random access. decord is used
            only where it is safe (no rotation, same frame count and timestamps as PyAV's index); any
            other case, or decord missing, falls back to PyAV.

    Example:
        >>> for chunk in VideoReader("clip.mp4").chunks(32):  # doctest: +SKIP
        ...     process(chunk.frames, chunk.pts)
    """

    def __init__(self, path: str | os.PathLike, rotate: bool = True, threads: int = 0, backend: str = "pyav") -> None:
        if backend not in ("pyav", "decord"):
            raise ValueError(f"backend must be 'pyav' or 'decord', got {backend!r}")
        self.path = Path(path)
        self.info = probe(self.path)
        self.rotate = bool(rotate)
        self.threads = int(threads)
        self.backend = backend
        self._decord: Any = None

    def __len__(self) -> int:
        return self.info.n_frames

    @property
    def time_base(self) -> Fraction:
        return self.info.time_base

    def _rgb(self, frame: Any) -> np.ndarray:
        """An ``av.VideoFrame`` as upright (when ``rotate``) RGB uint8 ``[H, W, 3]``."""
        return _upright(frame.to_ndarray(format="rgb24"), self.info.rotation if self.rotate else 0)

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

    def _decord_ok(self, idx: _Index) -> bool:
        """Open decord once and check that it sees the same frames and timestamps as our index."""
        if self._decord is False:
            return False
        if self._decord is None:
            self._decord = False
            if self.info.rotation and self.rotate:
                return False
            try:
                import decord

                vr = decord.VideoReader(str(self.path), num_threads=max(self.threads, 1))
                if len(vr) != self.info.n_frames:
                    return False
                t0 = np.asarray([vr.get_frame_timestamp(i)[0] for i in range(len(vr))], np.float64)
            except Exception:
                return False
            ours = (idx.pts - idx.pts[0]).astype(np.float64) * float(self.time_base)
            if np.allclose(t0 - t0[0], ours, atol=0.5 * float(self.time_base) + 1e-3):  # decord drops the start offset
                self._decord = vr
        return self._decord is not False

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
        if self.backend == "decord" and self._decord_ok(idx):
            frames = self._decord.get_batch(list(range(start, stop))).asnumpy()
            return FrameChunk(start, np.ascontiguousarray(frames), want.copy(), self.time_base)
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


# ----------------------------------------------------------------------------------------------
# writing


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


class VideoWriter:
    """Encode upright RGB frames to H.264 with the input's timestamps and its audio copied unchanged.

    Frames are encoded with the pts they came with, in ``info.time_base``, so the output keeps the
    input's frame count, timestamps (variable frame rate included) and duration. The file is written
    under a temporary name in the destination folder and renamed on a successful ``close()``; on
    an error (or ``abort()``) the temporary file is removed and nothing appears under ``path``.

    Args:
        path: the output file (its extension picks the container; ``.mp4`` recommended).
        info: the input's ``VideoInfo`` (size, time base, fps, end of the last frame).
        crf: x264/x265 constant rate factor (0 lossless .. 51 worst); see ``quality_to_crf``.
        preset: x264/x265 speed preset.
        codec: the FFmpeg encoder name.
        audio_from: a file whose audio streams are remuxed (packets copied, not re-encoded).
        pix_fmt: ``None`` picks ``yuv420p`` for even sizes and ``yuv444p`` for odd ones (exact size);
            ``'yuv420p'`` with an odd size pads the frames by edge replication to even.

    Example:
        >>> info = probe("in.mp4")  # doctest: +SKIP
        >>> with VideoWriter("out.mp4", info, audio_from="in.mp4") as w:  # doctest: +SKIP
        ...     for c in VideoReader("in.mp4").chunks(32):
        ...         w.write(edit(c.frames), c.pts)
    """

    def __init__(self, path: str | os.PathLike, info: VideoInfo, crf: int = 18, preset: str = "medium",
                 codec: str = "libx264", audio_from: str | os.PathLike | None = None,
                 pix_fmt: str | None = None, threads: int = 0) -> None:
        import av

        self.path = Path(path)
        if not isinstance(info, VideoInfo):
            raise TypeError(f"info must be a VideoInfo (from probe), got {type(info).__name__}")
        crf = quality_to_crf(crf)
        for src in [info.path] + ([audio_from] if audio_from is not None else []):
            if _same_file(self.path, Path(src)):
                raise InputError(f"the output {self.path} would overwrite the input {src}")
        if not self.path.parent.is_dir():
            raise InputError(f"{self.path.parent}: the output folder does not exist")
        if audio_from is not None and not Path(audio_from).is_file():
            raise InputError(f"{audio_from}: no such file (audio source)")
        self.info = info
        self.width, self.height = info.display_width, info.display_height
        odd = self.width % 2 or self.height % 2
        self.pix_fmt = pix_fmt or ("yuv444p" if odd else "yuv420p")
        self._pad = (self.pix_fmt == "yuv420p" and odd)
        cw, ch = self.width + self.width % 2 * self._pad, self.height + self.height % 2 * self._pad
        suffix = self.path.suffix or ".mp4"
        self._tmp = self.path.with_name(f".{self.path.stem}.{uuid.uuid4().hex[:8]}.part{suffix}")
        self._closed = False
        self._audio_in = None
        self._last_pts: int | None = None
        self._pending: Any = None  # the last frame, held until its duration is known
        self.frames_written = 0
        self._durs: dict[int, int] = {}
        try:
            self._out = av.open(str(self._tmp), "w")
            tb = Fraction(info.time_base)
            rate = Fraction(info.fps).limit_denominator(1001) if info.fps > 0 else Fraction(25)
            opts = {"crf": str(crf), "preset": preset} if codec in ("libx264", "libx265", "libx264rgb") else {}
            self._v = self._out.add_stream(codec, rate=rate, options=opts)
            self._v.width, self._v.height, self._v.pix_fmt = cw, ch, self.pix_fmt
            self._v.time_base = tb
            self._v.codec_context.time_base = tb
            self._v.thread_type = "AUTO"
            if threads:
                self._v.codec_context.thread_count = int(threads)
            self._tb = tb
            self._audio_map: dict[int, Any] = {}
            if audio_from is not None:
                try:
                    self._audio_in = av.open(str(audio_from), "r")
                except (av.error.FFmpegError, ValueError) as e:
                    raise InputError(f"{audio_from}: cannot read its audio ({_reason(e)})") from None
                supported = getattr(self._out, "supported_codecs", None)
                for s in self._audio_in.streams.audio:
                    name = s.codec_context.name
                    if supported is not None and name not in supported:
                        raise InputError(f"the {name} audio of {audio_from} cannot be stored unchanged in a "
                                         f"{suffix} file: write a .mkv or .mov output instead")
                    self._audio_map[s.index] = self._out.add_stream_from_template(s)
                self._audio_iter = (self._audio_in.demux(*self._audio_in.streams.audio)
                                    if self._audio_map else iter(()))
                self._audio_next: Any = None
        except InputError:
            self._cleanup()
            raise
        except Exception as e:
            self._cleanup()
            raise InputError(f"{self.path}: cannot create the output ({_reason(e)})") from None

    # -- context manager
    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @classmethod
    def from_input(cls, path: str | os.PathLike, src: str | os.PathLike, **kwargs: Any) -> VideoWriter:
        """A writer shaped like ``src`` (probed) that also copies ``src``'s audio."""
        return cls(path, probe(src), audio_from=src, **kwargs)

    # -- writing
    def write(self, frames: Any, pts: Any) -> None:
        """Encode a batch of upright frames at the given timestamps.

        Args:
            frames: uint8 RGB ``[T, H, W, 3]`` (numpy or torch) of the display size.
            pts: int ``[T]`` strictly increasing timestamps in ``info.time_base``, after those written.

        Shape:
            frames ``[T, display_height, display_width, 3]``, pts ``[T]``.
        """
        if self._closed:
            raise RuntimeError("write() on a closed VideoWriter")
        if hasattr(frames, "detach"):
            frames = frames.detach().cpu().numpy()
        frames = np.asarray(frames)
        pts = np.asarray(pts).reshape(-1)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3):
            raise ValueError(f"frames must be uint8 [T, {self.height}, {self.width}, 3], "
                             f"got {frames.dtype} {list(frames.shape)}")
        if len(pts) != len(frames):
            raise ValueError(f"got {len(frames)} frames but {len(pts)} pts")
        if len(pts) and not np.issubdtype(pts.dtype, np.integer):
            raise ValueError(f"pts must be integers in the input's time_base, got {pts.dtype}")
        seq = ([self._last_pts] if self._last_pts is not None else []) + [int(p) for p in pts]
        if any(b <= a for a, b in zip(seq, seq[1:])):
            raise ValueError("pts must increase strictly (and continue after the frames already written)")
        for img, p in zip(frames, pts):
            self._push(img, int(p))

    def _push(self, img: np.ndarray | None, pts: int | None) -> None:
        import av

        if self._pending is not None:  # the held frame's duration is now known
            frame = self._pending
            frame.duration = (pts - frame.pts) if pts is not None else max(self.info.end_pts - frame.pts, 1)
            if pts is None and self.info.end_pts <= frame.pts and self._last_dur:
                frame.duration = self._last_dur
            self._last_dur = frame.duration
            self._durs[frame.pts] = int(frame.duration)
            for packet in self._v.encode(frame):
                self._mux_video(packet)
            self.frames_written += 1
            self._pending = None
        if img is None:
            return
        if self._pad:
            img = np.pad(img, ((0, self.height % 2), (0, self.width % 2), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        frame.pts, frame.time_base = pts, self._tb
        self._pending, self._last_pts = frame, pts

    _last_dur = 0

    def _mux_video(self, packet: Any) -> None:
        """Mux one encoded packet with its frame's duration (the encoder may reorder and lose it)."""
        if packet.pts is not None and packet.pts in self._durs:
            # mp4 ends the presentation at max(pts + duration): this keeps the input's end exactly
            packet.duration = self._durs.pop(packet.pts)
        self._mux_audio_until(packet.dts if packet.dts is not None else packet.pts)
        self._out.mux(packet)

    def _flush_video(self) -> None:
        for packet in self._v.encode(None):
            self._mux_video(packet)

    def _mux_audio_until(self, video_pts: int | None) -> None:
        """Copy audio packets whose decode time is at or before ``video_pts`` (all when None)."""
        if not self._audio_map:
            return
        limit = None if video_pts is None else float(video_pts * self._tb)
        while True:
            if self._audio_next is None:
                self._audio_next = next(self._audio_iter, False)
            pkt = self._audio_next
            if pkt is False:
                return
            if pkt.size == 0 or pkt.dts is None:
                self._audio_next = None
                continue
            if limit is not None and float(pkt.dts * pkt.time_base) > limit:
                return
            pkt.stream = self._audio_map[pkt.stream.index]
            self._out.mux(pkt)
            self._audio_next = None

    def close(self) -> None:
        """Flush the encoder, copy the remaining audio and move the file to its final name."""
        if self._closed:
            return
        try:
            if self.frames_written == 0 and self._pending is None:
                raise InputError(f"{self.path}: no frames were written")
            self._push(None, None)
            self._flush_video()
            self._mux_audio_until(None)
            self._out.close()
            self._close_audio()
            os.replace(self._tmp, self.path)
            self._closed = True
        except BaseException:
            self.abort()
            raise

    def __del__(self) -> None:  # never leave a temporary file behind when close() was forgotten
        if not getattr(self, "_closed", True):
            self.abort()

    def abort(self) -> None:
        """Stop without producing a file (the temporary file is removed)."""
        self._closed = True
        self._cleanup()

    def _close_audio(self) -> None:
        if self._audio_in is not None:
            self._audio_in.close()
            self._audio_in = None

    def _cleanup(self) -> None:
        out = getattr(self, "_out", None)
        if out is not None:
            try:
                out.close()
            except Exception:
                pass
        self._close_audio()
        try:
            self._tmp.unlink()
        except FileNotFoundError:
            pass
