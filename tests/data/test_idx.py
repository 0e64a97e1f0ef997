import gzip
import struct

import pytest
import torch

from cnnlab.data.idx import parse_idx, read_idx
from cnnlab.errors import DataError


def idx_bytes(array: torch.Tensor) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.numpy().tobytes()


def test_roundtrip_plain_and_gzip(tmp_path):
    a = torch.randint(0, 256, (5, 3, 4), dtype=torch.uint8)
    (tmp_path / "a.idx").write_bytes(idx_bytes(a))
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(idx_bytes(a)))
    assert torch.equal(read_idx(tmp_path / "a.idx"), a)
    assert torch.equal(read_idx(tmp_path / "a.idx.gz"), a)


def test_truncated_data_is_reported():
    a = torch.zeros(10, 2, 2, dtype=torch.uint8)
    with pytest.raises(DataError, match=r"truncated: shape \(10, 2, 2\) needs 40 bytes of data, found 39"):
        parse_idx(idx_bytes(a)[:-1], name="x")


def test_truncated_gzip_is_reported(tmp_path):
    data = gzip.compress(idx_bytes(torch.zeros(100, 28, 28, dtype=torch.uint8)))
    (tmp_path / "t.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="corrupt or truncated"):
        read_idx(tmp_path / "t.gz")


def test_not_idx():
    with pytest.raises(DataError, match="not an unsigned-byte IDX file"):
        parse_idx(b"\x89PNG\r\n\x1a\n....", name="x")
    with pytest.raises(DataError, match="only 2 bytes"):
        parse_idx(b"\x00\x00", name="x")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "none.gz")
