"""``VideoWriter``: upright RGB frames -> H.264 with the input's timestamps, colour and audio.

The output appears atomically: it is written under a recognisable part name beside the destination
(``vidinv.atomic.part_path``: ``.<name>.vidinv-part-<pid>-<token><suffix>``) and renamed on a
successful ``close()``; a run killed mid-write leaves that part file, and the next writer of the same
destination removes it (``clean_stale_parts``). The output gets the user's normal file mode.

Encoding is deterministic: the same frames, timestamps and settings give a byte-identical file.
x264 runs with ``cpu-independent=1`` (its macroblock-tree assembly otherwise makes the output vary
between runs on one machine) and a fixed thread count rather than one per CPU core (x264's output
depends on the count), so the file is also the same on another machine with the same FFmpeg/x264.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from vidinv.atomic import clean_stale_parts, default_mode, part_path
from vidinv.errors import InputError
from vidinv.io.colour import output_pix_fmt, rgb_to_frame
from vidinv.io.video import VideoInfo, _reason, probe

__all__ = ["VideoWriter", "ENCODER_THREADS"]

#: encoder threads by default: fixed (not per CPU core) so that the bytes do not depend on the machine
ENCODER_THREADS = 8
_X264 = ("libx264", "libx265", "libx264rgb")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


class VideoWriter:
    """Encode upright RGB frames to H.264 with the input's timestamps, colour and audio.

    Frames are encoded with the pts they came with, in ``info.time_base``, so the output keeps the
    input's frame count, timestamps (variable frame rate included) and duration. RGB is converted to
    YUV with the input's matrix and range (``info.colour``) and the stream is tagged with the input's
    colour properties; the pixel format keeps the input's chroma subsampling and bit depth (8 or 10).
    The file is written under a part name in the destination folder and renamed on a successful
    ``close()``; on an error (or ``abort()``) the part file is removed and nothing appears under ``path``.

    Args:
        path: the output file (its extension picks the container; ``.mp4`` recommended).
        info: the input's ``VideoInfo`` (size, time base, fps, end of the last frame, pix_fmt, colour).
        crf: x264/x265 constant rate factor (0 lossless .. 51 worst).
        preset: x264/x265 speed preset.
        codec: the FFmpeg encoder name.
        audio_from: a file whose audio streams are remuxed (packets copied, not re-encoded).
        pix_fmt: ``None`` follows the input (``yuv420p``, ``yuv420p10le``, ``yuv444p`` ...; ``yuv444p`` for an
            odd size, exact); ``'yuv420p'`` (or ``'yuv420p10le'``) with an odd size pads the frames by edge
            replication to even.
        threads: encoder threads (fixed by default, see ``ENCODER_THREADS``; 0 = one per core, not repeatable
            across machines).

    Example:
        >>> info = probe("in.mp4")  # doctest: +SKIP
        >>> with VideoWriter("out.mp4", info, audio_from="in.mp4") as w:  # doctest: +SKIP
        ...     for c in VideoReader("in.mp4").chunks(32):
        ...         w.write(edit(c.frames), c.pts)
    """

    def __init__(self, path: str | os.PathLike, info: VideoInfo, crf: int = 18, preset: str = "medium",
                 codec: str = "libx264", audio_from: str | os.PathLike | None = None,
                 pix_fmt: str | None = None, threads: int = ENCODER_THREADS) -> None:
        self.path = Path(path)
        if not isinstance(info, VideoInfo):
            raise TypeError(f"info must be a VideoInfo (from probe), got {type(info).__name__}")
        if not isinstance(crf, (int, np.integer)) or not 0 <= int(crf) <= 51:
            raise InputError(f"crf {crf!r} is out of range: use 0 (lossless) to 51 (worst)")
        for src in [info.path] + ([audio_from] if audio_from is not None else []):
            if _same_file(self.path, Path(src)):
                raise InputError(f"the output {self.path} would overwrite the input {src}")
        if not self.path.parent.is_dir():
            raise InputError(f"{self.path.parent}: the output folder does not exist")
        if audio_from is not None and not Path(audio_from).is_file():
            raise InputError(f"{audio_from}: no such file (audio source)")
        self.info, self.colour = info, info.colour
        self.width, self.height = info.display_width, info.display_height
        odd = bool(self.width % 2 or self.height % 2)
        self.pix_fmt = pix_fmt or output_pix_fmt(info.pix_fmt, odd)
        # padding to even where the chroma is subsampled in that direction
        self._pad_w = self.width % 2 if self.pix_fmt.startswith(("yuv420", "yuv422")) else 0
        self._pad_h = self.height % 2 if self.pix_fmt.startswith("yuv420") else 0
        self._pad = bool(self._pad_w or self._pad_h)
        suffix = self.path.suffix or ".mp4"
        clean_stale_parts(self.path)
        self._tmp = part_path(self.path, suffix)
        self._closed = False
        self._audio_in = None
        self._audio_map: dict[int, Any] = {}
        self._last_pts: int | None = None
        self._last_dur = 0
        self._pending: Any = None  # the last frame, held until its duration is known
        self.frames_written = 0
        self._durs: dict[int, int] = {}
        try:
            self._open_video(codec, int(crf), preset, int(threads))
            if audio_from is not None:
                self._open_audio(audio_from, suffix)
        except InputError:
            self._cleanup()
            raise
        except Exception as e:
            self._cleanup()
            raise InputError(f"{self.path}: cannot create the output ({_reason(e)})") from None

    def _open_video(self, codec: str, crf: int, preset: str, threads: int) -> None:
        import av

        self._out = av.open(str(self._tmp), "w")
        tb = Fraction(self.info.time_base)
        rate = Fraction(self.info.fps).limit_denominator(1001) if self.info.fps > 0 else Fraction(25)
        opts = {"crf": str(crf), "preset": preset} if codec in _X264 else {}
        if codec in ("libx264", "libx264rgb"):
            # without it the macroblock-tree asm makes the bytes vary from run to run (measured: 3 variants in
            # 10 runs, also with 1 thread); with it: 60/60 identical, about 4% slower at preset medium
            opts["x264-params"] = "cpu-independent=1"
        self._v = self._out.add_stream(codec, rate=rate, options=opts)
        self._v.width = self.width + self._pad_w
        self._v.height = self.height + self._pad_h
        self._v.pix_fmt = self.pix_fmt
        self._v.time_base = tb
        cc = self._v.codec_context
        cc.time_base = tb
        tags = self.colour.for_output()
        cc.color_range, cc.colorspace = tags.color_range, tags.colorspace
        cc.color_primaries, cc.color_trc = tags.color_primaries, tags.color_trc
        self._v.thread_type = "FRAME"  # x264 frame threads: repeatable for a fixed count
        cc.thread_count = threads
        self._tb = tb

    def _open_audio(self, audio_from: str | os.PathLike, suffix: str) -> None:
        import av

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
        streams = self._audio_in.streams.audio
        self._audio_iter = self._audio_in.demux(*streams) if self._audio_map else iter(())
        self._audio_next: Any = None

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
            img = np.pad(img, ((0, self._pad_h), (0, self._pad_w), (0, 0)), mode="edge")
        frame = rgb_to_frame(img, self.pix_fmt, self.colour)
        frame.pts, frame.time_base = pts, self._tb
        self._pending, self._last_pts = frame, pts

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
            os.chmod(self._tmp, default_mode())
            os.replace(self._tmp, self.path)
            self._closed = True
        except BaseException:
            self.abort()
            raise

    def __del__(self) -> None:  # never leave a temporary file behind when close() was forgotten
        if not getattr(self, "_closed", True):
            self.abort()

    def abort(self) -> None:
        """Stop without producing a file (the part file is removed)."""
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
