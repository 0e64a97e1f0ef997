"""Atomic writes and safe file names."""

from __future__ import annotations

import pytest

from cnnlab.data.files import atomic_write_bytes, atomic_write_text, safe_name


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


@pytest.mark.parametrize(
    "text, name",
    [
        ("features.c3", "features.c3"),
        ("folder:/data/my images", "folder_data_my_images"),
        ("test:0", "test_0"),
        ("layer2.0/conv1", "layer2.0_conv1"),
        ("__x__", "x"),
    ],
)
def test_safe_name(text, name):
    assert safe_name(text) == name


def test_atomic_writer_commits_only_a_finished_block(tmp_path):
    from cnnlab.data.files import atomic_writer

    path = tmp_path / "download.bin"
    with pytest.raises(RuntimeError):
        with atomic_writer(path) as f:
            f.write(b"half of it")
            raise RuntimeError("connection lost")
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary one
    with atomic_writer(path) as f:
        f.write(b"all")
        assert not path.exists()  # not visible before the block ends
    assert path.read_bytes() == b"all"
