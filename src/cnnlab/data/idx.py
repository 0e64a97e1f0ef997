"""The IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/).

A big-endian header: two zero bytes, a type code (0x08 = unsigned byte), the number of
dimensions, then one 4-byte size per dimension; then the data, row-major. Files may be
gzip-compressed (the canonical distribution is).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from cnnlab.errors import DataError

_UBYTE = 0x08


def parse_idx(raw: bytes, *, name: str = "<bytes>") -> torch.Tensor:
    """Parse IDX bytes into a uint8 tensor; truncated or malformed data raises DataError."""
    if len(raw) < 4:
        raise DataError(f"{name} is not an IDX file: only {len(raw)} bytes")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != _UBYTE or not 1 <= ndim <= 4:
        raise DataError(f"{name} is not an unsigned-byte IDX file (header {raw[:4].hex()})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name} is truncated: header needs {header} bytes, file has {len(raw)}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    have = len(raw) - header
    if have != expected:
        what = "truncated" if have < expected else "longer than its header says"
        raise DataError(f"{name} is {what}: shape {shape} needs {expected:,} bytes of data, found {have:,}")
    array = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
    return torch.from_numpy(array.copy())


def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (plain or ``.gz``) into a uint8 tensor."""
    path = Path(path)
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path} is corrupt or truncated: {e}") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    return parse_idx(data, name=str(path))
