"""vidinv.io.video: probe, streaming/seeking reader, atomic writer with audio passthrough."""

from __future__ import annotations

import csv
import hashlib
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from media_utils import clip_pts, make_clip, pattern_frame  # noqa: E402
from vidinv.errors import InputError  # noqa: E402
from vidinv.io.video import FrameChunk, VideoReader, VideoWriter, probe  # noqa: E402

VFR_CLIP = "retalking_face1.mp4"
MPEG4_CLIP = "sadtalker_WDA_KatieHill_000.mp4"


# ---------------------------------------------------------------- helpers


def _manifest(media_dir: Path) -> dict[str, dict]:
    path = media_dir / "MANIFEST.tsv"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    with open(path, newline="") as f:
        rows = csv.DictReader(f, delimiter="\t")
        return {Path(r["file"]).name: r for r in rows if r["file"].startswith("videos/")}


def _decode_all(path) -> FrameChunk:
    chunks = list(VideoReader(path).chunks(16))
    return FrameChunk(0, np.concatenate([c.frames for c in chunks]), np.concatenate([c.pts for c in chunks]),
                      chunks[0].time_base)


def _audio_packets(path) -> list[list[tuple[bytes, int, int]]]:
    with av.open(str(path)) as c:
        out = []
        for s in c.streams.audio:
            out.append([(bytes(p), p.pts, p.dts) for p in c.demux(s) if p.size])
            c.seek(0)
        return out


def _seconds(pts, tb) -> list[Fraction]:
    return [Fraction(int(p)) * Fraction(tb) for p in pts]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def vfr_clip(videos_dir) -> Path:
    p = videos_dir / VFR_CLIP
    if not p.exists():
        pytest.skip(f"{p} is absent")
    return p


@pytest.fixture(scope="module")
def vfr_decoded(vfr_clip) -> FrameChunk:
    return _decode_all(vfr_clip)


# ---------------------------------------------------------------- shared clips


def test_probe_matches_manifest(media_dir, videos_dir):
    rows = _manifest(media_dir)
    assert rows, "MANIFEST.tsv lists no videos"
    for name, row in rows.items():
        info = probe(videos_dir / name)
        w, h = map(int, row["resolution"].split("x"))
        assert (info.display_width, info.display_height) == (w, h), name
        assert info.rotation == 0
        n = int(re.search(r"(\d+) frames", row["notes"]).group(1))
        assert info.n_frames == n, name
        fps = float(re.match(r"[\d.]+", row["fps"]).group(0))
        assert info.fps == pytest.approx(fps, abs=0.01), name
        dur = float(row["duration"].rstrip("s"))
        assert abs(info.duration - dur) < 0.1, (name, info.duration, dur)
        assert info.has_audio == (row["audio"] == "yes") and info.n_audio_streams == 1
        assert info.codec == ("mpeg4" if "mpeg4 Part 2" in row["notes"] else "h264"), name
        assert info.end_pts > info.start_pts and isinstance(info.time_base, Fraction)


def test_decode_count_and_chunks(videos_dir):
    for path in sorted(videos_dir.glob("*.mp4")):
        info = probe(path)
        reader = VideoReader(path)
        n, last, prev_pts = 0, None, None
        m = info.n_frames // 2 + 1  # a window in the middle, to check read_range on every clip
        window = []
        for chunk in reader.chunks(50):
            pairs = enumerate(zip(chunk.frames, chunk.pts), chunk.start)
            window += [(f, p) for i, (f, p) in pairs if m <= i < m + 4]
            assert chunk.start == n and chunk.frames.dtype == np.uint8 and chunk.pts.dtype == np.int64
            assert chunk.frames.shape[1:] == (info.display_height, info.display_width, 3)
            assert 1 <= len(chunk) <= 50 and chunk.stop == n + len(chunk)
            pts = chunk.pts if prev_pts is None else np.concatenate([[prev_pts], chunk.pts])
            assert np.all(np.diff(pts) > 0), path.name
            prev_pts, n, last = chunk.pts[-1], chunk.stop, chunk
        assert n == info.n_frames, path.name
        assert last.pts[0] < info.end_pts
        got = reader.read_range(m, m + 4)
        assert np.array_equal(got.frames, np.stack([f for f, _ in window])), path.name
        assert np.array_equal(got.pts, np.array([p for _, p in window])), path.name


def test_vfr_clip_timestamps(vfr_clip, vfr_decoded):
    info = probe(vfr_clip)
    gaps = np.diff(vfr_decoded.pts) * float(info.time_base)
    assert set(np.round(gaps, 3)) == {0.033, 0.067}  # the manifest's 33 and 67 ms frame gaps
    assert vfr_decoded.pts[0] == info.start_pts
    # iterating single frames gives the same frames
    for i, frame in enumerate(VideoReader(vfr_clip)):
        if i in (0, 57, 134):
            assert np.array_equal(frame, vfr_decoded.frames[i])


@pytest.mark.parametrize("start,stop", [(0, 7), (37, 61), (64, 70), (100, 135), (134, 135), (5, 5)])
def test_read_range_equals_sequential(vfr_clip, vfr_decoded, start, stop):
    chunk = VideoReader(vfr_clip).read_range(start, stop)
    assert chunk.start == start and len(chunk) == stop - start
    assert np.array_equal(chunk.pts, vfr_decoded.pts[start:stop])
    assert np.array_equal(chunk.frames, vfr_decoded.frames[start:stop])


@pytest.mark.parametrize("name,preset", [(VFR_CLIP, "veryfast"), (MPEG4_CLIP, "ultrafast")])
def test_roundtrip_shared(videos_dir, tmp_path, name, preset):
    src = videos_dir / name
    if not src.exists():
        pytest.skip(f"{src} is absent")
    before = _sha(src)
    info = probe(src)
    out = tmp_path / "out.mp4"
    with VideoWriter(out, info, crf=18, preset=preset, audio_from=src) as writer:
        for chunk in VideoReader(src).chunks(40):
            writer.write(chunk.frames, chunk.pts)
    assert _sha(src) == before  # the input is never modified
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temporary left behind
    got = probe(out)
    assert got.n_frames == info.n_frames and got.rotation == 0
    assert (got.display_width, got.display_height) == (info.display_width, info.display_height)
    assert got.end_pts * got.time_base == info.end_pts * info.time_base
    assert got.duration == pytest.approx(info.duration, abs=1e-9)
    a, b = _decode_all(src), _decode_all(out)
    assert _seconds(b.pts, got.time_base) == _seconds(a.pts, info.time_base)
    assert _psnr(a.frames, b.frames) > 35
    audio_in, audio_out = _audio_packets(src), _audio_packets(out)
    assert len(audio_in) == len(audio_out) == info.n_audio_streams
    assert audio_out == audio_in  # bytes, pts and dts of every packet


# ---------------------------------------------------------------- synthetic clips


def test_make_clip_and_vfr_roundtrip(tmp_path):
    src = make_clip(tmp_path / "vfr.mp4", 20, vfr=True)
    info = probe(src)
    want, tb = clip_pts(20, vfr=True)
    assert info.n_frames == 20 and info.has_audio and (info.width, info.height) == (64, 48)
    assert info.end_pts * info.time_base == (want[-1] + 512) * tb
    a = _decode_all(src)
    assert _seconds(a.pts, info.time_base) == _seconds(want, tb)
    ref = np.stack([pattern_frame(i, (64, 48)) for i in range(20)])
    assert np.abs(a.frames.astype(int) - ref).mean() < 4
    # read_range across keyframes (gop 8) matches sequential decoding
    r = VideoReader(src).read_range(9, 19)
    assert np.array_equal(r.frames, a.frames[9:19]) and np.array_equal(r.pts, a.pts[9:19])
    out = tmp_path / "vfr_out.mp4"
    with VideoWriter(out, info, crf=10, preset="veryfast", audio_from=src) as w:
        w.write(a.frames[:7], a.pts[:7])
        w.write(a.frames[7:], a.pts[7:])
    got = probe(out)
    b = _decode_all(out)
    assert got.n_frames == 20 and _seconds(b.pts, got.time_base) == _seconds(want, tb)
    assert got.end_pts * got.time_base == info.end_pts * info.time_base
    assert _audio_packets(out) == _audio_packets(src)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation(tmp_path, rotation):
    src = make_clip(tmp_path / f"rot{rotation}.mp4", 10, size=(64, 48), rotation=rotation)
    info = probe(src)
    assert info.rotation == rotation and (info.display_width, info.display_height) == (64, 48)
    assert (info.width, info.height) == ((48, 64) if rotation in (90, 270) else (64, 48))
    ref = np.stack([pattern_frame(i, (64, 48)) for i in range(10)]).astype(int)
    up = _decode_all(src)
    assert up.frames.shape == (10, 48, 64, 3)
    err = np.abs(up.frames.astype(int) - ref).mean()
    wrong = np.abs(np.rot90(up.frames, 2, axes=(1, 2)).astype(int) - ref).mean()
    assert err < 4 < wrong
    assert up.frames[:, :4, :4, 0].mean() > 180 and up.frames[:, :4, :4, 2].mean() < 80  # red corner top-left
    stored = np.stack(list(VideoReader(src, rotate=False)))
    assert stored.shape == (10, info.height, info.width, 3)
    assert np.array_equal(np.rot90(stored, -rotation // 90, axes=(1, 2)), up.frames)
    assert np.array_equal(VideoReader(src).read_range(3, 6).frames, up.frames[3:6])
    # the output is written upright without a display matrix: it plays the way the input does
    out = tmp_path / "out.mp4"
    with VideoWriter.from_input(out, src, crf=10, preset="ultrafast") as w:
        w.write(up.frames, up.pts)
    got = probe(out)
    assert got.rotation == 0 and (got.width, got.height) == (64, 48)
    assert np.abs(_decode_all(out).frames.astype(int) - up.frames).mean() < 3


def test_odd_dimensions(tmp_path):
    src = make_clip(tmp_path / "odd.mp4", 8, size=(65, 47))
    info = probe(src)
    assert (info.display_width, info.display_height) == (65, 47)
    a = _decode_all(src)
    assert a.frames.shape == (8, 47, 65, 3)
    exact = tmp_path / "exact.mp4"
    with VideoWriter(exact, info, crf=10, preset="ultrafast", audio_from=src) as w:
        w.write(a.frames, a.pts)
    got = probe(exact)
    assert (got.width, got.height, got.pix_fmt) == (65, 47, "yuv444p") and got.n_frames == 8
    assert _psnr(_decode_all(exact).frames, a.frames) > 35
    padded = tmp_path / "padded.mp4"
    with VideoWriter(padded, info, crf=10, preset="ultrafast", pix_fmt="yuv420p") as w:
        w.write(a.frames, a.pts)
    got = probe(padded)
    assert (got.width, got.height, got.pix_fmt) == (66, 48, "yuv420p")
    b = _decode_all(padded).frames
    assert _psnr(b[:, :47, :65], a.frames) > 30  # 4:2:0 chroma loss on a 4:4:4 source (measured 33.7 dB)
    assert np.abs(b[:, 47].astype(int) - b[:, 46]).mean() < 6  # edge-replicated row


# ---------------------------------------------------------------- errors


def _one_line_input_error(path, match: str):
    with pytest.raises(InputError, match=match) as e:
        probe(path)
    assert "\n" not in str(e.value) and Path(path).name in str(e.value)


def test_exception_bad_inputs(tmp_path):
    _one_line_input_error(tmp_path / "missing.mp4", "no such file")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    _one_line_input_error(garbage, "cannot read")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    _one_line_input_error(empty, "cannot read")
    good = make_clip(tmp_path / "good.mp4", 10, audio=False)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    _one_line_input_error(truncated, "cannot read|corrupt")
    _one_line_input_error(make_clip(tmp_path / "audio.m4a", 0, video=False), "no video stream")
    _one_line_input_error(make_clip(tmp_path / "zero.mkv", 0), "no frames")
    (tmp_path / "dir.mp4").mkdir()
    _one_line_input_error(tmp_path / "dir.mp4", "not a regular file")
    with pytest.raises(InputError):
        VideoReader(truncated)


def test_exception_reader_arguments(tmp_path):
    reader = VideoReader(make_clip(tmp_path / "c.mp4", 6, audio=False))
    with pytest.raises(ValueError, match="outside"):
        reader.read_range(4, 7)
    with pytest.raises(ValueError, match="outside"):
        reader.read_range(3, 2)
    with pytest.raises(ValueError, match="chunk size"):
        next(reader.chunks(0))


def test_writer_leaves_nothing_on_failure(tmp_path):
    src = make_clip(tmp_path / "in.mp4", 10)
    info = probe(src)
    a = _decode_all(src)
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(out, info, preset="ultrafast", audio_from=src) as w:
            w.write(a.frames[:5], a.pts[:5])
            raise RuntimeError("boom")
    with pytest.raises(ValueError, match="uint8"):
        with VideoWriter(out, info, preset="ultrafast") as w:
            w.write(a.frames[:, :-1], a.pts)
    with pytest.raises(ValueError, match="increase"):
        with VideoWriter(out, info, preset="ultrafast") as w:
            w.write(a.frames[:5], a.pts[:5])
            w.write(a.frames[3:6], a.pts[3:6])  # goes back in time
    with pytest.raises(InputError, match="no frames"):
        with VideoWriter(out, info, preset="ultrafast"):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_writer_refuses_to_overwrite_input(tmp_path):
    src = make_clip(tmp_path / "in.mp4", 4)
    before = _sha(src)
    info = probe(src)
    with pytest.raises(InputError, match="overwrite"):
        VideoWriter(src, info)
    other = make_clip(tmp_path / "other.mp4", 4)
    with pytest.raises(InputError, match="overwrite"):
        VideoWriter(tmp_path / "sub" / ".." / "other.mp4", info, audio_from=other)
    with pytest.raises(InputError, match="does not exist"):
        VideoWriter(tmp_path / "nowhere" / "x.mp4", info)
    assert _sha(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "other.mp4"]


def test_writer_forgotten_close_leaves_nothing(tmp_path):
    src = make_clip(tmp_path / "in.mp4", 24, audio=False)  # enough frames for the encoder to start writing
    a = _decode_all(src)
    w = VideoWriter(tmp_path / "out.mp4", probe(src), preset="ultrafast")
    w.write(a.frames, a.pts)
    assert len(list(tmp_path.glob(".out.mp4.vidinv-part-*.mp4"))) == 1 and not (tmp_path / "out.mp4").exists()
    del w
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


# ---------------------------------------------------------------- colour, determinism, part files


def _yuv_clip(path: Path, kind: str, n: int = 8, w: int = 128, h: int = 96) -> Path:
    """A clip coded from YUV planes (gradients + noise), bt709-tagged: tv range, full range or 10-bit."""
    bits, full = (10 if kind == "10bit" else 8), kind == "full"
    pix = "yuv420p10le" if bits == 10 else "yuv420p"
    lo, hi, clo, chi = (0, 255, 0, 255) if full else (16, 235, 16, 240)
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25, options={"crf": "10", "preset": "ultrafast"})
        v.width, v.height, v.pix_fmt = w, h, pix
        cc = v.codec_context
        cc.color_range, cc.colorspace, cc.color_primaries, cc.color_trc = (2 if full else 1), 1, 1, 1
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        cy, cx = np.mgrid[0:h // 2, 0:w // 2].astype(np.float64)
        for i in range(n):
            rng = np.random.default_rng(i)
            planes = [(lo + (hi - lo) * (0.25 + 0.5 * x / (w - 1)) + rng.normal(0, 6, (h, w)), lo, hi),
                      (128 + 24 * (cy / (h / 2 - 1) - 0.5) + rng.normal(0, 2, cy.shape), clo, chi),
                      (128 - 20 * (cx / (w / 2 - 1) - 0.5) + rng.normal(0, 2, cy.shape), clo, chi)]
            frame = av.VideoFrame(w, h, pix)
            frame.color_range = cc.color_range
            frame.colorspace, frame.color_primaries, frame.color_trc = 1, 1, 1
            for plane, (data, a, b) in zip(frame.planes, planes):
                dt = np.uint16 if bits == 10 else np.uint8
                dst = np.frombuffer(plane, dt).reshape(plane.height, -1)
                k = bits - 8
                dst[:, : data.shape[1]] = np.clip(np.rint(data * 2**k), a << k, b << k)
            frame.pts = i
            for pkt in v.encode(frame):
                out.mux(pkt)
        for pkt in v.encode(None):
            out.mux(pkt)
    return path


def _yuv_planes(path, n: int) -> tuple[list[np.ndarray], tuple]:
    """The first ``n`` frames' Y, U, V planes in 8-bit levels (float), the colour tags and pix_fmt."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        out: list[list[np.ndarray]] = [[], [], []]
        for k, f in enumerate(c.decode(s)):
            if k == n:
                break
            deep = f.format.name.endswith("10le")
            tags = (f.color_range, f.colorspace, f.color_primaries, f.color_trc, f.format.name)
            for i, pl in enumerate(f.planes[:3]):
                a = np.frombuffer(pl, np.uint16 if deep else np.uint8).reshape(pl.height, -1)[:, : pl.width]
                out[i].append(a.astype(np.float64) / (4 if deep else 1))
    return [np.stack(p) for p in out], tags


def _roundtrip_bias(src: Path, dst: Path, n: int) -> tuple[list[float], tuple, tuple]:
    """Read ``src``, write its first ``n`` frames back unchanged, and return the mean Y/U/V difference."""
    with VideoWriter(dst, probe(src), preset="ultrafast") as w:
        chunk = VideoReader(src).read_range(0, n)
        w.write(chunk.frames, chunk.pts)
    (a, tags_in), (b, tags_out) = _yuv_planes(src, n), _yuv_planes(dst, n)
    return [float((q - p).mean()) for p, q in zip(a, b)], tags_in, tags_out


@pytest.mark.parametrize("kind", ["tv", "full", "10bit"])
def test_feature_colour_roundtrip_synthetic(tmp_path, kind):
    # before this fix: Y bias -1.06 (tv), -2.62 and range tag lost (full), -1.57 and 8-bit output (10bit)
    src = _yuv_clip(tmp_path / f"{kind}.mp4", kind)
    bias, tags_in, tags_out = _roundtrip_bias(src, tmp_path / "out.mp4", 8)
    assert tags_out == tags_in  # range, matrix, primaries, transfer and pix_fmt (depth) kept
    assert tags_in[:4] == ((2 if kind == "full" else 1), 1, 1, 1)
    assert all(abs(d) < 0.25 for d in bias), bias


def test_feature_colour_roundtrip_shared(vfr_clip, tmp_path):
    bias, tags_in, tags_out = _roundtrip_bias(vfr_clip, tmp_path / "out.mp4", 10)
    assert tags_out == tags_in
    assert all(abs(d) < 0.25 for d in bias), bias  # was Y -1.01 before the fix


def test_writer_deterministic(tmp_path, vfr_clip):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:256, 0:256]
    base = np.stack([x, y, (x + y) // 2], -1)
    frames = np.stack([np.clip(base + rng.integers(-20, 20, (256, 256, 3)), 0, 255) for _ in range(12)])
    frames = frames.astype(np.uint8)
    info = probe(make_clip(tmp_path / "in.mp4", 12, size=(256, 256), audio=False))
    digests = []  # before cpu-independent=1: 3 different files in 10 runs of one clip
    for k in range(3):
        with VideoWriter(tmp_path / f"o{k}.mp4", info, preset="veryfast") as w:
            w.write(frames, np.arange(12) * 512)
        digests.append(_sha(tmp_path / f"o{k}.mp4"))
    assert len(set(digests)) == 1
    chunk = VideoReader(vfr_clip).read_range(0, 12)  # 590x590 with audio
    info = probe(vfr_clip)
    for k in range(4):
        with VideoWriter(tmp_path / f"s{k}.mp4", info, preset="veryfast", audio_from=vfr_clip) as w:
            w.write(chunk.frames, chunk.pts)
    assert len({_sha(tmp_path / f"s{k}.mp4") for k in range(4)}) == 1


_KILLED_WRITER = """
import os, signal, sys
import numpy as np
from media_utils import make_clip
from vidinv.io.video import VideoReader, VideoWriter, probe
src, out = sys.argv[1], sys.argv[2]
chunk = VideoReader(src).read_range(0, probe(src).n_frames)
w = VideoWriter(out, probe(src), preset="ultrafast", audio_from=src)
w.write(chunk.frames[:-5], chunk.pts[:-5])
os.kill(os.getpid(), signal.SIGKILL)  # killed late in the render, before close()
"""


def test_writer_killed_part_cleaned_by_next_run(tmp_path):
    import os
    import subprocess
    import sys

    src = make_clip(tmp_path / "in.mp4", 40)
    out = tmp_path / "out.mp4"
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(root / "tests")]))
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(src), str(out)], env=env, timeout=120)
    assert proc.returncode == -9
    parts = list(tmp_path.glob(".out.mp4.vidinv-part-*.mp4"))
    assert len(parts) == 1 and parts[0].stat().st_size > 0 and not out.exists()
    a = _decode_all(src)
    with VideoWriter(out, probe(src), preset="ultrafast", audio_from=src) as w:
        w.write(a.frames, a.pts)
    # the killed run's part file is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4"]
    assert probe(out).n_frames == 40 and _audio_packets(out) == _audio_packets(src)
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_exception_truncated_with_index_in_front(tmp_path):
    """A copy cut short whose MP4 index sits at the front: an error, not a silently shorter edit."""
    import av

    from vidinv.errors import InputError
    from vidinv.io.video import probe

    path = tmp_path / "faststart.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        s = out.add_stream("libx264", rate=25)
        s.width = s.height = 128
        s.pix_fmt = "yuv420p"
        for _ in range(40):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8), format="rgb24")
            for pkt in s.encode(frame):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    assert probe(path).n_frames == 40
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated: its index lists 40 frames"):
        probe(cut)
