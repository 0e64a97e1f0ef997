"""Downloading dataset files: atomic, checksummed, with a progress bar.

Works with ``http(s)://`` and ``file://`` URLs (the tests serve files locally). A file is
written to a temporary name beside its destination, its checksum verified, then renamed into
place (``cnnlab.data.files.atomic_writer``), so an interrupted or corrupt download never leaves
a file that looks complete.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn, TimeRemainingColumn

from cnnlab.data.files import atomic_writer
from cnnlab.errors import DataError

CHUNK = 1 << 20


def file_digest(path: Path, algorithm: str = "md5") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: Path, *, md5: str, quiet: bool = False, timeout: float = 30.0) -> Path:
    """Fetch ``url`` to ``dest`` and verify its MD5; raises DataError on failure or mismatch."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_writer(dest) as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                disable=quiet,
                transient=True,
            ) as progress:
                task = progress.add_task(f"downloading {dest.name}", total=total)
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    out.write(chunk)
                    h.update(chunk)
                    progress.update(task, advance=len(chunk))
            if h.hexdigest() != md5:  # raising here discards the temporary file
                raise DataError(f"checksum mismatch for {url}: md5 {h.hexdigest()}, expected {md5}; the file was not kept")
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise DataError(f"could not download {url}: {reason}") from None
    return dest
