"""The driver's chunk cache: per-chunk results on disk so that an interrupted run resumes where it stopped.

- :class:`ChunkCache`: pickles of plain dicts of numpy arrays, one file per ``(pass, chunk start)``, in a
  folder named by :func:`run_key` (every input and setting that changes a chunk's contents); written
  atomically, and a file that cannot be read is recomputed. ``stats`` counts reused/computed chunks.
- :func:`cached_map`: one pass over a clip's chunks, taking finished chunks from the cache.
- :class:`CodeStore`: per-frame codes in ``.npy`` memory maps (RAM does not grow with the clip).
- :class:`Progress`, :func:`timed`: the driver's progress bars and step timings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from vidinv.atomic import atomic_path

log = logging.getLogger(__name__)


def chunk_ranges(n: int, size: int) -> list[tuple[int, int]]:
    """Half-open frame ranges ``[(0, size), (size, 2 size), ...]`` covering ``n`` frames."""
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def run_key(path: Path, cfg, edits: Any) -> str:
    """The cache folder name of a run: the input file (path, size, mtime), the config and the edits.

    Execution settings do not change results and are left out, except ``chunk_size`` (chunk files are
    keyed by their start frame, so another chunk size needs other files); output (encoder) settings too.
    """
    st = Path(path).stat()
    d = cfg.to_dict()
    chunk_size = d.pop("execution", {}).get("chunk_size")
    d.pop("output", None)
    d["chunk_size"] = chunk_size
    blob = json.dumps([str(Path(path).resolve()), st.st_size, st.st_mtime_ns, d, edits], sort_keys=True,
                      default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


class ChunkCache:
    """Per-chunk results on disk (pickle of plain dicts of numpy arrays), keyed by the run's inputs.

    ``root=None`` keeps nothing (every chunk is computed). ``stats`` counts, per pass, the chunks taken
    from the cache (``reused``) and those computed in this run (``computed``).
    """

    def __init__(self, root: Path | None, key: str) -> None:
        self.root = None if root is None else Path(root) / key
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            for p in self.root.glob(".tmp-*"):  # part files of older versions' killed runs
                p.unlink(missing_ok=True)
        self.stats: dict[str, dict[str, int]] = {}

    def _path(self, kind: str, start: int) -> Path:
        assert self.root is not None
        return self.root / f"{kind}_{start:08d}.pkl"

    def count(self, kind: str, what: str) -> None:
        """Add one chunk of pass ``kind`` to ``stats[kind][what]`` (``'reused'`` or ``'computed'``)."""
        s = self.stats.setdefault(kind, {"reused": 0, "computed": 0})
        s[what] += 1

    def get(self, kind: str, start: int) -> Any | None:
        """The cached result, or None when absent or unreadable (a torn or vanished file: recompute)."""
        if self.root is None:
            return None
        try:
            with open(self._path(kind, start), "rb") as fh:
                return pickle.load(fh)
        except Exception:
            return None

    def put(self, kind: str, start: int, value: Any) -> None:
        """Write atomically: the file appears whole or not at all (a killed run's part file is removed
        by the next write of the same chunk)."""
        if self.root is None:
            return
        with atomic_path(self._path(kind, start)) as tmp:
            with open(tmp, "wb") as fh:
                pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)

    def has(self, kind: str, start: int) -> bool:
        return self.root is not None and self._path(kind, start).is_file()


def log_chunk_stats(stats: dict[str, dict[str, int]]) -> None:
    """The INFO line at the end of a run: per pass, how many chunks were reused from the cache and how many
    were computed (on resume, what the interrupted run had already done)."""
    if stats:
        reused = sum(v["reused"] for v in stats.values())
        computed = sum(v["computed"] for v in stats.values())
        log.info("chunks: %d reused, %d computed (%s)", reused, computed,
                 ", ".join(f"{k} {v['reused']} reused/{v['computed']} computed" for k, v in stats.items()))


def cached_map(executor, stage_cls, kwargs, ranges: list[tuple[int, int]],
               make_item: Callable[[int, int], dict], cache: ChunkCache, kind: str, gpu: bool,
               progress: Callable[[int], None] | None = None) -> Iterator[Any]:
    """Yield each chunk's result in order, taking finished chunks from the cache and computing the rest.

    Work items are built lazily (``make_item(start, stop)``) as the executor asks for them, so only the
    chunks in flight are in memory, whatever the clip's length. Counts go to ``cache.stats[kind]``.
    """
    cached = {a for a, _ in ranges if cache.has(kind, a)}
    todo = (make_item(a, b) for a, b in ranges if a not in cached)
    computed = executor.map(stage_cls, kwargs, todo, gpu=gpu) if len(cached) < len(ranges) else iter(())
    for a, b in ranges:
        res = cache.get(kind, a) if a in cached else None
        if res is None:  # not cached, or a cached file that cannot be read (then the chunk is redone)
            res = next(computed) if a not in cached else stage_cls(**kwargs)(make_item(a, b))
            cache.put(kind, a, res)
            cache.count(kind, "computed")
        else:
            cache.count(kind, "reused")
        if progress:
            progress(b - a)
        yield res


class CodeStore:
    """Per-frame codes of a clip in ``.npy`` memory maps, so that RAM does not grow with the clip's length."""

    def __init__(self, root: Path | None) -> None:
        self._tmp = None
        if root is None:
            self._tmp = tempfile.mkdtemp(prefix="vidinv-codes-")
            root = Path(self._tmp)
        self.root = Path(root) / "codes"
        self.root.mkdir(parents=True, exist_ok=True)

    def array(self, name: str, shape: tuple, dtype=np.float32) -> np.ndarray:
        return np.lib.format.open_memmap(self.root / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


class Progress:
    """A frame-count progress bar (silent with ``quiet``); called with the frames of each finished chunk."""

    def __init__(self, total: int, desc: str, quiet: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="frame", disable=quiet, leave=False)

    def __call__(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


@contextmanager
def timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Add the wall time of the ``with`` block to ``timings[key]`` (seconds)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0
