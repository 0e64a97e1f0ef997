"""Files written so that a crash never leaves half of one, and names safe to put in a path.

An atomic write goes to a temporary name in the same folder, is flushed to disk (fsync), then
renamed over the old file: a reader sees either the old file or the new one, never a mix.
Checkpoints, run folders and the image-folder cache all write this way.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import BinaryIO, Iterator


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """``with atomic_writer(path) as f: f.write(...)``: the file appears at ``path`` only when
    the block ends without an exception (temporary file, fsync, rename, fsync of the folder);
    otherwise the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    # Make the rename itself durable.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(text: str) -> str:
    """``text`` as a file name: each run of characters other than letters, digits, ``_.-``
    becomes one ``_``, and leading or trailing ``_`` are dropped (``features.c3`` stays,
    ``folder:/data/x`` becomes ``folder_data_x``)."""
    return _UNSAFE.sub("_", text).strip("_")
