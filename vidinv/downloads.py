"""Resumable downloads for the model zoo: HTTP with ``Range`` into a ``.part`` file, Google Drive via gdown.

Split out of :mod:`vidinv.zoo` (which verifies and installs what these functions fetch).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from vidinv.errors import VidinvError

log = logging.getLogger(__name__)

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


def download_gdrive(file_id: str, part: Path, progress: bool) -> Path:
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


__all__ = ["download_http", "download_gdrive"]
