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
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from vidinv import paths
from vidinv.downloads import download_gdrive, download_http
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
        source: ``{'type': 'gdrive'|'http'|'none', 'id'|'url': ..., 'page': ...}`` (``none``: no link).
        cache: path relative to the cache root.
        size: bytes or None.
        sha256: hex digest or None (then the file can be present but never verified).
        license: short license note.
        root: ``vidinv`` ($VIDINV_HOME) or ``torch_hub`` ($TORCH_HOME/hub/checkpoints).
        aliases: other names accepted by :meth:`Zoo.resolve`.
        description: one line.
        note: what a user must know (format, conversion, why there is no link); may be empty.
        path_hint: for a generic published name: import by name only from a path containing this word.
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
    note: str = ""
    path_hint: str = ""

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
            description=str(d.get("description") or ""), note=str(d.get("note") or ""),
            path_hint=str(d.get("path_hint") or "").lower(),
        )

    def origin(self) -> str:
        """The page that publishes the file, short (``github.com/owner/repo``), for tables."""
        page = str(self.source.get("page") or self.source.get("url") or "?").split()[0]
        page = page.removeprefix("https://").removeprefix("http://").rstrip("/")
        return "/".join(page.split("/")[:3]) if page.startswith("github.com/") else page

    def where(self) -> str:
        """Where the file is published, in words (for messages)."""
        s = self.source
        if s.get("type") == "none":
            return f"no published download ({str(s.get('page') or 'see the zoo note').split()[0]})"
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
            download_gdrive(str(a.source["id"]), part, progress=progress)
        elif kind == "http":
            download_http(str(a.source["url"]), part, size=a.size, progress=progress, retries=retries,
                          timeout=timeout, desc=a.file)
        elif kind == "none":
            raise VidinvError(f"{a.name}: {a.file} has no published download; put it at {dst} or use "
                              f"`vidinv weights import DIR` ({a.note or a.where()})")
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
                cands = [a for a in by_file.get(fn, []) if a.name not in found
                         and (not a.path_hint or a.path_hint in str(src.absolute()).lower())]
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
                    log.debug("imported %s <- %s", a.name, src)  # the CLI prints one line per file
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
        return self.require_all([name], offline=offline, progress=progress)[self.get(name).name]

    def require_all(self, names: Iterable[str], offline: bool | None = None, progress: bool = True
                    ) -> dict[str, Path]:
        """Local paths of several artifacts (missing ones fetched when online); ONE error lists all failures.

        Call it with every file a run needs before starting work, so that a user learns about all missing
        files at once instead of one per run.

        Args:
            names: zoo names, aliases or published file names (repeats are fine).
            offline: forbid the network; default ``vidinv.paths.offline()`` (VIDINV_OFFLINE=1).
            progress: show download progress bars.

        Returns:
            ``{zoo name: path}`` in the order given.

        Raises:
            MissingWeightsError: one line naming every file still missing (published and zoo name) and
                the fix: ``vidinv weights fetch NAME ...`` on a connected machine or
                ``vidinv weights import DIR``.
                Network errors are summarised (``HTTP 404``, ``network error``); details are logged at DEBUG.
        """
        wanted = list(dict.fromkeys(self.get(n).name for n in names))
        offline = paths.offline() if offline is None else offline
        out: dict[str, Path] = {}
        failed: list[tuple[Artifact, str]] = []
        for n in wanted:
            a, st = self.artifacts[n], self.status(n)
            if st in ("present", "verified"):
                out[n] = self.path(n)
            elif offline or a.source.get("type") == "none":
                failed.append((a, "fails its size/checksum check" if st == "corrupt" else "is missing"))
            else:
                try:
                    out[n] = self.fetch([n], progress=progress, force=st == "corrupt")[n]
                except Exception as exc:  # VidinvError and network stack errors alike
                    log.debug("fetching %s failed: %s: %s", n, type(exc).__name__, exc)
                    failed.append((a, f"could not be downloaded ({_short_reason(exc)})"))
        if failed:
            raise MissingWeightsError(self._missing_message(failed, offline))
        return out

    def _missing_message(self, failed: list[tuple[Artifact, str]], offline: bool) -> str:
        if len(failed) == 1:
            a, why = failed[0]
            why += " and vidinv is offline" if offline else ""
            return self._fix_message(a, self.path(a.name), why)

        def detail(a: Artifact, why: str) -> str:
            if a.source.get("type") == "none":
                return ": no published download"
            return "" if why == "is missing" else f": {why}"

        files = ", ".join(f"{a.file} ({a.name}{detail(a, why)})" for a, why in failed)
        fetchable = [a.name for a, _ in failed if a.source.get("type") != "none"]
        fix = [f"`vidinv weights fetch {' '.join(fetchable)}` on a connected machine"] if fetchable else []
        fix.append("`vidinv weights import DIR` with a folder holding the files")
        msg = (f"{len(failed)} weight files are missing{' (vidinv is offline)' if offline else ''}: {files}; "
               f"fix: {' or '.join(fix)} (cache: {self.home}; sources: `vidinv weights list --notes`)")
        return " ".join(msg.split())

    def _fix_message(self, a: Artifact, dst: Path, why: str) -> str:
        if a.source.get("type") == "none":
            fix = f"put the file at {dst} or `vidinv weights import DIR` with a folder holding it ({a.note})"
        else:
            fix = (f"run `vidinv weights fetch {a.name}` on a connected machine, or put the file at {dst}, "
                   f"or `vidinv weights import DIR` with a folder holding it")
        msg = f"{a.file} ({a.kind} '{a.name}') {why}; it comes from {a.where()}; fix: {fix}"
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
        """One dict per artifact for tables: name, kind, file (published name), status, size, license, path,
        source (the publishing page, short), link (download link, '' when none is published), note."""
        out = []
        for a in self.artifacts.values():
            out.append(dict(name=a.name, kind=a.kind, file=a.file, status=self.status(a.name), size=a.size,
                            license=a.license, path=str(self.path(a.name)), source=a.origin(),
                            link="" if a.source.get("type") == "none" else a.where(), note=a.note))
        return out


def _short_reason(exc: BaseException) -> str:
    """A few words for a failed download (the full text goes to the debug log)."""
    text = str(exc)
    for pattern, words in ((r"HTTP \d{3}", None), (r"sha256 mismatch", "checksum mismatch"),
                           (r"downloaded \d+ bytes, expected", "size mismatch"),
                           (r"gdown is needed", "gdown missing"),
                           (r"quota|removed", "Google Drive refused it")):
        m = re.search(pattern, text)
        if m:
            return words or m.group(0)
    return "network error" if isinstance(exc, (OSError, ConnectionError)) or "failed after" in text else (
        type(exc).__name__)


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
