"""The model zoo: names, files, sources and checksums of every weights/direction file vidinv uses.

``configs/zoo.yaml`` lists the artifacts. :class:`Zoo` finds them in the cache (``$VIDINV_HOME``,
default ``~/.cache/vidinv``), fetches them on a connected machine (resumable HTTP with ``Range``
into ``<file>.part``, Google Drive through gdown), imports them from a folder on an air-gapped one,
verifies sha256 checksums and, when something is missing, says in one line what and how to fix it.

Example:
    >>> path = Zoo().require("fs_encoder_143")          # doctest: +SKIP
    >>> path = Zoo().resolve("/data/my_generator.pt")   # a user file wins over the zoo  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from vidinv import paths
from vidinv.errors import InputError, MissingWeightsError, VidinvError

log = logging.getLogger(__name__)

STATUSES = ("missing", "present", "verified", "corrupt")
_CHUNK = 1 << 20
_STAMPS = ".verified.json"


@dataclass(frozen=True)
class Artifact:
    """One zoo entry (a row of ``configs/zoo.yaml``).

    Attributes:
        name: zoo name, e.g. ``fs_encoder_143``.
        file: published file name, e.g. ``143_enc.pth``.
        kind: ``generator``, ``fs_encoder``, ``arcface``, ``bisenet``, ``direction``, ``pca``, ...
        source: ``{'type': 'gdrive'|'http', 'id'|'url': ..., 'page': ...}``.
        cache: path relative to the cache root.
        size: bytes or None.
        sha256: hex digest or None (then the file can be present but never verified).
        license: short license note.
        root: ``vidinv`` ($VIDINV_HOME) or ``torch_hub`` ($TORCH_HOME/hub/checkpoints).
        aliases: other names accepted by :meth:`Zoo.resolve`.
        description: one line.
    """

    name: str
    file: str
    kind: str
    source: Mapping[str, Any]
    cache: str
    size: int | None = None
    sha256: str | None = None
    license: str = ""
    root: str = "vidinv"
    aliases: tuple[str, ...] = ()
    description: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Artifact":
        for key in ("name", "file", "kind", "source"):
            if not d.get(key):
                raise VidinvError(f"zoo entry {d.get('name', d)!r} lacks {key!r}")
        sha = d.get("sha256")
        return cls(
            name=str(d["name"]), file=str(d["file"]), kind=str(d["kind"]), source=dict(d["source"]),
            cache=str(d.get("cache") or d["file"]), size=None if d.get("size") is None else int(d["size"]),
            sha256=sha.lower() if sha else None, license=str(d.get("license") or ""),
            root=str(d.get("root") or "vidinv"), aliases=tuple(d.get("aliases") or ()),
            description=str(d.get("description") or ""),
        )

    def where(self) -> str:
        """Where the file is published, in words (for messages)."""
        s = self.source
        if s.get("type") == "gdrive":
            return f"Google Drive {s['url']}" if s.get("url") else f"Google Drive id {s.get('id')}"
        return str(s.get("url") or s.get("page") or "unknown source")


def sha256_file(path: str | os.PathLike, progress: bool = False) -> str:
    """The sha256 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def torch_hub_checkpoints() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (where torchvision and face-alignment cache files) without importing torch."""
    base = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(base).expanduser() / "hub" / "checkpoints"


def _load_config(config: str | os.PathLike | Mapping | None) -> list[Artifact]:
    if config is None:
        config = paths.config_file("zoo.yaml")
    if not isinstance(config, Mapping):
        import yaml

        p = Path(config)
        if not p.is_file():
            raise VidinvError(f"zoo config {p} not found (set VIDINV_CONFIG_DIR or reinstall vidinv)")
        config = yaml.safe_load(p.read_text()) or {}
    arts = [Artifact.from_dict(d) for d in config.get("artifacts") or []]
    names = [a.name for a in arts]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise VidinvError(f"zoo config names {sorted(dup)} more than once")
    return arts


class Zoo:
    """The weights registry over a cache folder.

    Args:
        home: cache root; default ``vidinv.paths.vidinv_home()`` ($VIDINV_HOME or ~/.cache/vidinv).
        config: a ``zoo.yaml`` path or an already-loaded dict; default ``configs/zoo.yaml``.

    Attributes:
        artifacts: ``{name: Artifact}`` in config order.
    """

    def __init__(self, home: str | os.PathLike | None = None, config: str | os.PathLike | Mapping | None = None):
        self.home = Path(home).expanduser() if home is not None else paths.vidinv_home()
        self.artifacts: dict[str, Artifact] = {a.name: a for a in _load_config(config)}

    # ---- lookup -------------------------------------------------------------------------------------------------
    def get(self, name: str) -> Artifact:
        """The artifact called ``name`` (zoo name, alias or published file name)."""
        if name in self.artifacts:
            return self.artifacts[name]
        for a in self.artifacts.values():
            if name in a.aliases or name == a.file:
                return a
        raise VidinvError(f"unknown zoo artifact {name!r}; known: {', '.join(self.artifacts)} "
                          "(see `vidinv weights list`)")

    def path(self, name: str) -> Path:
        """Where the artifact lives in the cache (whether or not it is there)."""
        a = self.get(name)
        root = torch_hub_checkpoints() if a.root == "torch_hub" else self.home
        return root / a.cache

    # ---- status -------------------------------------------------------------------------------------------------
    def status(self, name: str, check: bool = False) -> str:
        """``'missing'``, ``'present'``, ``'verified'`` or ``'corrupt'``.

        Cheap by default: a size mismatch is ``corrupt``; a checksum computed before (stamp with the same size
        and mtime) is reused; otherwise an existing file is ``present``. ``check=True`` hashes the file now.
        """
        a, p = self.get(name), self.path(name)
        if not p.is_file():
            return "missing"
        st = p.stat()
        if a.size is not None and st.st_size != a.size:
            return "corrupt"
        if a.sha256 is None:
            return "present"
        stamp = self._stamps().get(str(p))
        if not check and stamp and stamp.get("size") == st.st_size and stamp.get("mtime_ns") == st.st_mtime_ns:
            digest = stamp.get("sha256")
        elif check:
            digest = sha256_file(p)
            self._stamp(p, digest)
        else:
            return "present"
        return "verified" if digest == a.sha256 else "corrupt"

    def verify(self, names: Iterable[str] | None = None) -> dict[str, str]:
        """Hash every present artifact (or ``names``) and return ``{name: status}``."""
        names = list(names) if names else list(self.artifacts)
        return {self.get(n).name: self.status(n, check=True) for n in names}

    def _stamps(self) -> dict:
        f = self.home / _STAMPS
        try:
            return json.loads(f.read_text())
        except (OSError, ValueError):
            return {}

    def _stamp(self, p: Path, digest: str) -> None:
        stamps = self._stamps()
        st = p.stat()
        stamps[str(p)] = dict(size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=digest)
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            tmp = self.home / f"{_STAMPS}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(stamps, indent=1))
            os.replace(tmp, self.home / _STAMPS)
        except OSError as exc:  # a read-only cache still works, only slower
            log.debug("could not write checksum stamps: %s", exc)

    # ---- fetch --------------------------------------------------------------------------------------------------
    def fetch(self, names: Iterable[str] | str | None = None, progress: bool = True, force: bool = False,
              retries: int = 3, timeout: float = 60.0) -> dict[str, Path]:
        """Download artifacts into the cache; each ends verified (when a checksum is known) or raises.

        Args:
            names: zoo names (default: all).
            progress: show a tqdm progress bar.
            force: download again even if the file is already present.
            retries: resumptions after a dropped connection (each resumes the ``.part`` with a Range request).
            timeout: seconds of network silence before giving up on one attempt.

        Returns:
            ``{name: path}`` of the final files.

        Raises:
            VidinvError: 404 / HTTP error, checksum mismatch (the partial file is deleted), network failure.
        """
        if isinstance(names, str):
            names = [names]
        out = {}
        for n in (list(names) if names else list(self.artifacts)):
            a = self.get(n)
            dst = self.path(a.name)
            st = self.status(a.name) if dst.exists() else "missing"
            if not force and st in ("present", "verified"):
                if st == "present" and a.sha256 is not None:
                    st = self.status(a.name, check=True)
                if st != "corrupt":
                    out[a.name] = dst
                    continue
            if not force and st == "corrupt":
                log.warning("%s: the cached %s fails its checksum; downloading it again", a.name, dst)
            out[a.name] = self._fetch_one(a, dst, progress=progress, retries=retries, timeout=timeout)
        return out

    def _fetch_one(self, a: Artifact, dst: Path, progress: bool, retries: int, timeout: float) -> Path:
        dst.parent.mkdir(parents=True, exist_ok=True)
        part = dst.with_name(dst.name + ".part")
        kind = a.source.get("type")
        log.info("fetching %s (%s) from %s", a.name, a.file, a.where())
        if kind == "gdrive":
            _download_gdrive(str(a.source["id"]), part, progress=progress)
        elif kind == "http":
            download_http(str(a.source["url"]), part, size=a.size, progress=progress, retries=retries,
                          timeout=timeout, desc=a.file)
        else:
            raise VidinvError(f"{a.name}: source type {kind!r} cannot be fetched; put {a.file} at {dst}")
        self._finish(a, part, dst)
        return dst

    def _finish(self, a: Artifact, part: Path, dst: Path) -> None:
        """Verify ``part`` against the artifact, then rename it to ``dst`` atomically (or delete it and raise)."""
        size = part.stat().st_size
        if a.size is not None and size != a.size:
            part.unlink(missing_ok=True)
            raise VidinvError(f"{a.name}: downloaded {size} bytes, expected {a.size}; the partial file was deleted")
        digest = sha256_file(part)
        if a.sha256 is not None and digest != a.sha256:
            part.unlink(missing_ok=True)
            raise VidinvError(f"{a.name}: sha256 mismatch for {a.file} (got {digest[:12]}..., expected "
                              f"{a.sha256[:12]}...); the download was deleted; try again or get the file from "
                              f"{a.where()}")
        if a.sha256 is None:
            log.warning("%s: no published checksum; accepted %s with sha256 %s", a.name, a.file, digest)
        os.replace(part, dst)
        self._stamp(dst, digest)

    # ---- import -------------------------------------------------------------------------------------------------
    def import_dir(self, folder: str | os.PathLike, link: bool = False, names: Iterable[str] | None = None
                   ) -> dict[str, Path]:
        """Find known files in a folder tree (by file name, or by checksum under any name) and add them to the cache.

        A file matched by name whose checksum is known and wrong is skipped with a warning. Files are copied
        (through a ``.part`` and an atomic rename) or, with ``link=True``, symlinked.

        Returns:
            ``{name: cache path}`` of the artifacts imported (already-verified artifacts are left alone).
        """
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise InputError(f"{root}: not a folder")
        wanted = [self.get(n) for n in names] if names else list(self.artifacts.values())
        wanted = [a for a in wanted if self.status(a.name) != "verified"]
        by_file = {}
        for a in wanted:
            by_file.setdefault(a.file, []).append(a)
        by_size = {}
        for a in wanted:
            if a.sha256 is not None and a.size is not None:
                by_size.setdefault(a.size, []).append(a)
        found: dict[str, Path] = {}
        for dirpath, _, files in os.walk(root):
            for fn in sorted(files):
                src = Path(dirpath) / fn
                if fn.endswith(".part") or not src.is_file():
                    continue
                size = src.stat().st_size
                cands = [a for a in by_file.get(fn, []) if a.name not in found]
                cands += [a for a in by_size.get(size, []) if a.name not in found and a not in cands]
                if not cands:
                    continue
                digest = None
                for a in cands:
                    if a.sha256 is not None:
                        digest = digest or sha256_file(src)
                        if digest != a.sha256:
                            if fn == a.file:
                                log.warning("%s: %s has the wrong checksum; not imported", a.name, src)
                            continue
                    elif a.size is not None and size != a.size:
                        continue
                    found[a.name] = self._install(a, src, link, digest)
                    log.info("imported %s <- %s", a.name, src)
        return found

    def _install(self, a: Artifact, src: Path, link: bool, digest: str | None) -> Path:
        dst = self.path(a.name)
        if dst.exists() and dst.resolve() == src.resolve():  # importing the cache into itself
            return dst
        dst.parent.mkdir(parents=True, exist_ok=True)
        part = dst.with_name(dst.name + ".part")
        part.unlink(missing_ok=True)
        if link:
            part.symlink_to(src.resolve())
        else:
            shutil.copyfile(src, part)
        os.replace(part, dst)
        if digest is not None:
            self._stamp(dst, digest)
        return dst

    # ---- use ----------------------------------------------------------------------------------------------------
    def require(self, name: str, offline: bool | None = None, progress: bool = True) -> Path:
        """The local path of an artifact: present -> path; missing and online -> fetched now; else a clear error.

        Args:
            name: zoo name, alias or published file name.
            offline: forbid the network; default ``vidinv.paths.offline()`` (VIDINV_OFFLINE=1).

        Raises:
            MissingWeightsError: one line naming the file, its source and the exact fix.
        """
        a = self.get(name)
        dst = self.path(a.name)
        st = self.status(a.name)
        if st in ("present", "verified"):
            return dst
        offline = paths.offline() if offline is None else offline
        why = "fails its size/checksum check" if st == "corrupt" else "is missing"
        if offline:
            raise MissingWeightsError(self._fix_message(a, dst, f"{why} and vidinv is offline"))
        try:
            return self.fetch([a.name], progress=progress, force=st == "corrupt")[a.name]
        except VidinvError as exc:
            raise MissingWeightsError(self._fix_message(a, dst, f"{why} and the download failed ({exc})")) from exc
        except Exception as exc:  # network stack errors
            raise MissingWeightsError(self._fix_message(
                a, dst, f"{why} and the download failed ({type(exc).__name__}: {exc})")) from exc

    def _fix_message(self, a: Artifact, dst: Path, why: str) -> str:
        msg = (f"{a.file} ({a.kind} '{a.name}') {why}; it comes from {a.where()}; fix: run "
               f"`vidinv weights fetch {a.name}` on a connected machine, or put the file at {dst}, or "
               f"`vidinv weights import DIR` with a folder holding it")
        return " ".join(msg.split())

    def resolve(self, name_or_path: str | os.PathLike) -> Path:
        """A user path (used as is when it exists) or a zoo name (through :meth:`require`)."""
        s = str(name_or_path)
        p = Path(s).expanduser()
        if p.is_file():
            return p.resolve()
        try:
            self.get(s)
        except VidinvError:
            if os.sep in s or p.suffix:
                raise InputError(f"{s}: no such file (and not a zoo name; see `vidinv weights list`)") from None
            raise
        return self.require(s)

    def rows(self) -> list[dict]:
        """One dict per artifact for tables: name, kind, status, size, license, path."""
        out = []
        for a in self.artifacts.values():
            out.append(dict(name=a.name, kind=a.kind, file=a.file, status=self.status(a.name), size=a.size,
                            license=a.license, path=str(self.path(a.name))))
        return out


# ---- downloaders ----------------------------------------------------------------------------------------------------
def download_http(url: str, part: str | os.PathLike, size: int | None = None, progress: bool = True,
                  retries: int = 3, timeout: float = 60.0, desc: str | None = None) -> Path:
    """Download ``url`` into ``part``, resuming an existing partial file with an HTTP ``Range`` request.

    A dropped connection is resumed up to ``retries`` times. A server that ignores Range (200 instead of
    206) restarts the file; 416 on a partial of the expected size means it is already complete.

    Raises:
        VidinvError: HTTP 404 or another HTTP error, or the connection failing ``retries + 1`` times.
    """
    import requests

    part = Path(part)
    attempt = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if size is not None and have > size:
            part.unlink()
            have = 0
        if size is not None and have == size:
            return part
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with requests.get(url, headers=headers, stream=True, timeout=timeout) as r:
                if r.status_code == 404:
                    raise VidinvError(f"HTTP 404 Not Found: {url} (the file is no longer published there; "
                                      "get it elsewhere and use `vidinv weights import DIR`)")
                if r.status_code == 416 and have:
                    return part  # the partial file is already complete
                if r.status_code >= 400:
                    raise VidinvError(f"HTTP {r.status_code} {r.reason} for {url}")
                if have and r.status_code != 206:
                    log.info("server ignored the Range request; restarting %s", part.name)
                    have = 0
                total = r.headers.get("Content-Length")
                total = have + int(total) if total is not None else size
                _stream(r, part, have, total, progress, desc or part.name)
            if size is None or part.stat().st_size >= size:
                return part
            raise ConnectionError(f"connection closed after {part.stat().st_size} of {size} bytes")
        except VidinvError:
            raise
        except (requests.RequestException, ConnectionError, OSError) as exc:
            attempt += 1
            if attempt > retries:
                raise VidinvError(f"download of {url} failed after {attempt} attempts: {exc}; run the same "
                                  "command again to resume") from exc
            log.warning("download interrupted (%s); resuming (%d/%d)", exc, attempt, retries)
            time.sleep(min(0.2 * 2 ** attempt, 5.0))


def _stream(r, part: Path, have: int, total: int | None, progress: bool, desc: str) -> None:
    from tqdm.auto import tqdm

    got = have
    with open(part, "ab" if have else "wb") as f, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                        unit_divisor=1024, desc=desc, disable=not progress,
                                                        leave=False) as bar:
        for block in r.iter_content(chunk_size=1 << 16):
            if block:
                f.write(block)
                got += len(block)
                bar.update(len(block))
    if total is not None and got < total:
        raise ConnectionError(f"connection closed after {got} of {total} bytes")


def _download_gdrive(file_id: str, part: Path, progress: bool) -> Path:
    """Google Drive through gdown (it handles the confirmation page and resumes its own temp file)."""
    try:
        import gdown
    except ImportError as exc:  # pragma: no cover - gdown is a dependency
        raise VidinvError("gdown is needed for Google Drive downloads: pip install gdown") from exc
    try:
        out = gdown.download(id=file_id, output=str(part), quiet=not progress, resume=True)
    except Exception as exc:
        raise VidinvError(f"Google Drive download of id {file_id} failed: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    if not out or not part.is_file():
        raise VidinvError(f"Google Drive download of id {file_id} failed (quota exceeded or file removed?)")
    return part


def format_size(n: int | None) -> str:
    """``1.2 MB``-style sizes; ``?`` for unknown."""
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return "?"


__all__ = ["Artifact", "Zoo", "STATUSES", "sha256_file", "download_http", "torch_hub_checkpoints", "format_size"]
