"""Codes bundles: ``vidinv invert clip.mp4 -o clip.codes``, then ``vidinv edit clip.mp4 --codes clip.codes``.

A bundle is a folder holding what passes 1 and 2 produced, so that a re-edit skips detection, tracking and
inversion:

- ``meta.json``: format version, the clip's identity (path, size, frame count, a checksum of its packet
  timestamps), the models' identity (inverter, generator/encoder file names with sizes and mtimes, feature
  layer), the config parts that shaped the geometry, the targets and their code names, and the clip facts
  of :func:`pipelines.report.clip_facts` (faces per frame, pts, tracks, cuts);
- ``geometry.npz``: per target ``valid [n,T]``, ``M [n,T,3,3]``, ``lm_crop [n,T,68,2]``, ``track_ids [n]``,
  ``frames [n,2]`` (first valid frame, one past the last);
- ``t<i>_<name>.npy``: the raw (unsmoothed) codes of target i, ``[T, ...]`` (zero rows on invalid frames).

It is written to a temporary folder beside the destination and renamed into place, so a bundle is whole or
absent. Loading checks the clip, the models and the geometry options; a mismatch is a one-line error.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipelines.geometry import Target
from vidinv.errors import InputError

FORMAT = "vidinv-codes"
VERSION = 1


def pts_checksum(path: str | os.PathLike) -> str:
    """SHA-1 of the sorted packet timestamps of the clip's first video stream (demuxed, not decoded)."""
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        pts = sorted(int(p.pts) for p in c.demux(stream) if p.pts is not None)
    return hashlib.sha1(np.asarray(pts, np.int64).tobytes()).hexdigest()


def clip_identity(src: Path, info) -> dict:
    st = Path(src).stat()
    return {"path": str(Path(src).resolve()), "size": int(st.st_size), "n_frames": int(info.n_frames),
            "pts_sha1": pts_checksum(src)}


def _file_id(value) -> dict | str | None:
    if value in (None, "tiny", "zoo") or not Path(str(value)).is_file():
        return value
    st = Path(str(value)).stat()
    return {"name": Path(str(value)).name, "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def model_identity(spec: dict) -> dict:
    """What makes the codes: the inverter, its files (name, size, mtime) and the feature layer."""
    return {"inverter": spec.get("inverter"), "generator": _file_id(spec.get("generator")),
            "encoder": _file_id(spec.get("encoder")), "feature_layer": int(spec.get("feature_layer", 0))}


def geometry_options(cfg) -> dict:
    """The config parts that shaped the targets' geometry (detection, tracking, landmark/quad smoothing)."""
    st = cfg.stabilize
    return {"faces": asdict(cfg.faces), "landmarks": dict(st.landmarks), "quads": dict(st.quads),
            "flow_refine": bool(st.flow_refine)}


def save_bundle(dst: str | os.PathLike, src: Path, info, spec: dict, cfg, targets: list[Target],
                codes: dict, facts: dict) -> Path:
    """Write a bundle atomically (temporary folder + rename; an existing ``dst`` is replaced)."""
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.part-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        names = {}
        for ti, code in codes.items():
            names[str(ti)] = sorted(code)
            for k, v in code.items():
                np.save(tmp / f"t{ti}_{k}.npy", np.asarray(v))
        n, T = len(targets), int(info.n_frames)
        np.savez(tmp / "geometry.npz",
                 valid=np.stack([t.valid for t in targets]) if n else np.zeros((0, T), bool),
                 M=np.stack([t.M for t in targets]) if n else np.zeros((0, T, 3, 3), np.float32),
                 lm_crop=np.stack([t.lm_crop for t in targets]) if n else np.zeros((0, T, 68, 2), np.float32),
                 track_ids=np.asarray([t.track_id for t in targets], np.int64),
                 frames=np.asarray([t.frames for t in targets], np.int64).reshape(n, 2))
        meta = {"format": FORMAT, "version": VERSION, "clip": clip_identity(src, info),
                "models": model_identity(spec), "geometry": geometry_options(cfg), "codes": names,
                "facts": facts}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")
        _swap_into_place(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


def _swap_into_place(tmp: Path, dst: Path) -> None:
    """Rename the finished folder to ``dst``; an old ``dst`` is moved aside first and removed after."""
    old = None
    if dst.exists() or dst.is_symlink():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
    os.replace(tmp, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


def read_meta(path: str | os.PathLike) -> dict:
    p = Path(path)
    try:
        meta = json.loads((p / "meta.json").read_text())
    except (OSError, ValueError):
        raise InputError(f"{p}: not a codes bundle (no readable meta.json; make one with 'vidinv invert')") \
            from None
    if meta.get("format") != FORMAT or int(meta.get("version", -1)) != VERSION:
        raise InputError(f"{p}: unsupported codes bundle format {meta.get('format')!r} "
                         f"version {meta.get('version')!r} (this vidinv reads {FORMAT} {VERSION})")
    return meta


def _first_difference(a, b, where: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _first_difference(a.get(k), b.get(k), f"{where}{k}.")
            if d:
                return d
        return None
    return None if json.dumps(a, default=str) == json.dumps(b, default=str) else f"{where.rstrip('.')}: " \
        f"bundle {a!r}, now {b!r}"


def check_bundle(path: Path, meta: dict, src: Path, info, spec: dict, cfg) -> None:
    """One-line errors when the bundle was made from another clip, other models or other geometry options."""
    for what, saved, now, fix in (
        ("clip", meta["clip"], None, "made from another clip"),
        ("models", meta["models"], model_identity(spec), "made with other models"),
        ("geometry", meta["geometry"], geometry_options(cfg), "made with other face/geometry options"),
    ):
        if what == "clip":
            st = Path(src).stat()
            now = {"path": saved["path"], "size": int(st.st_size), "n_frames": int(info.n_frames),
                   "pts_sha1": saved["pts_sha1"]}
            if now == saved:  # the cheap fields agree: check the timestamps too
                now["pts_sha1"] = pts_checksum(src)
        diff = _first_difference(saved, now)
        if diff:
            raise InputError(f"{path}: codes {fix} ({diff}); run 'vidinv invert' again")


def load_bundle(path: str | os.PathLike, src: Path, info, spec: dict, cfg) -> tuple[list[Target], dict, dict]:
    """``(targets, codes {ti: {name: [T, ...]}}, facts)`` of a bundle made from this clip with these models.

    The codes are copy-on-write memory maps: smoothing them in place never changes the bundle.
    """
    path = Path(path)
    meta = read_meta(path)
    check_bundle(path, meta, src, info, spec, cfg)
    g = np.load(path / "geometry.npz")
    targets = [Target(int(g["track_ids"][i]), g["valid"][i].astype(bool), g["M"][i], g["lm_crop"][i],
                      tuple(int(x) for x in g["frames"][i])) for i in range(len(g["track_ids"]))]
    codes = {int(ti): {k: np.load(path / f"t{ti}_{k}.npy", mmap_mode="c") for k in names}
             for ti, names in meta["codes"].items()}
    return targets, codes, meta["facts"]


def invert_clip(pipe, input_path: str | os.PathLike, out: str | os.PathLike | None = None) -> dict:
    """``vidinv invert``: probe, analyse, plan and invert a clip with ``pipe`` (an
    :class:`~pipelines.edit.EditPipeline`) and save the codes bundle ``out`` (default ``<clip>.codes``).

    Returns ``{'output', 'n_frames', 'targets', 'faces', 'timings', 'chunks'}``.
    """
    from pipelines.cache import ChunkCache, CodeStore, run_key, timed
    from pipelines.outputs import existing_output
    from pipelines.report import clip_facts
    from vidinv.errors import VidinvError

    src, _, info = pipe.probe(input_path)
    out = Path(out) if out else src.with_suffix(".codes")
    if out.resolve() == src.resolve():
        raise InputError(f"the codes bundle {out} would overwrite the input")
    existing_output(out, pipe.cfg.output.overwrite, "codes bundle")
    spec = pipe.model_spec()
    cache_root = pipe.cache_root(out)
    cache = ChunkCache(cache_root, run_key(src, pipe.cfg, "invert"))
    timings: dict[str, float] = {}
    with timed(timings, "analyze_s"):
        analysis = pipe.analyze(src, info, cache)
    with timed(timings, "plan_s"):
        targets, tracks, cuts = pipe.plan(src, info, analysis, spec, cache)
    if not any(t.valid.any() for t in targets):
        raise VidinvError(f"no face found in {src} ({info.n_frames} frames): nothing to invert")
    store = CodeStore(cache.root)
    try:
        with timed(timings, "invert_s"):
            codes = pipe.invert(src, info, targets, spec, cache, store)
        save_bundle(out, src, info, spec, pipe.cfg, targets, codes, clip_facts(analysis, info, tracks, cuts))
    finally:
        store.close()
    pipe._cleanup(cache_root)
    return {"output": str(out), "n_frames": int(info.n_frames), "targets": [t.track_id for t in targets],
            "faces": int(sum(t.valid.sum() for t in targets)), "timings": timings,
            "chunks": dict(cache.stats)}
