"""CIFAR-10/100 readers (python and binary versions) and the restricted unpickler."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data import load_dataset
from cnnlab.data import cifar
from cnnlab.data.cifar import CIFAR100_CLASSES, read_binary_batch, read_python_batch, safe_unpickle
from cnnlab.errors import DataError


def fake_batch(n: int, seed: int, num_classes: int = 10) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, num_classes, n).tolist()


def write_cifar10_python(root: Path, n: int = 6) -> dict[str, tuple[np.ndarray, list[int]]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data, labels = fake_batch(n, i)
        batches[name] = (data, labels)
        # Protocol 2, as the original (Python 2) files are.
        (folder / name).write_bytes(pickle.dumps({"batch_label": name, "data": data, "labels": labels}, protocol=2))
    return batches


def write_cifar10_binary(root: Path, batches) -> None:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name, (data, labels) in batches.items():
        records = np.concatenate([np.array(labels, np.uint8)[:, None], data], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())


def test_python_version_layout_and_splits(tmp_path):
    batches = write_cifar10_python(tmp_path)
    train = load_dataset("cifar10", "trainval", tmp_path, download=False)
    test = load_dataset("cifar10", "test", tmp_path, download=False)
    assert train.images.shape == (30, 3, 32, 32) and test.images.shape == (6, 3, 32, 32)
    data, labels = batches["data_batch_2"]
    # Each row is 1024 red, then 1024 green, then 1024 blue values, row-major.
    assert torch.equal(train.images[6], torch.from_numpy(data[0].reshape(3, 32, 32)))
    assert train.images[6, 1, 0, 0] == data[0, 1024] and train.images[6, 2, 31, 31] == data[0, 3071]
    assert train.labels[6:12].tolist() == labels
    assert train.classes[0] == "airplane" and train.classes[-1] == "truck"


def test_binary_version_matches_python_version(tmp_path):
    batches = write_cifar10_python(tmp_path / "py")
    write_cifar10_binary(tmp_path / "bin", batches)
    a = load_dataset("cifar10", "trainval", tmp_path / "py", download=False)
    b = load_dataset("cifar10", "trainval", tmp_path / "bin", download=False)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


def test_cifar100_binary_uses_fine_labels(tmp_path):
    data, fine = fake_batch(4, 0, 100)
    coarse = [f % 20 for f in fine]
    records = np.concatenate([np.array(coarse, np.uint8)[:, None], np.array(fine, np.uint8)[:, None], data], axis=1)
    path = tmp_path / "train.bin"
    path.write_bytes(records.tobytes())
    images, labels = read_binary_batch(path, 2)
    assert labels.tolist() == fine and torch.equal(images[3].reshape(-1), torch.from_numpy(data[3]))
    assert len(CIFAR100_CLASSES) == 100 and list(CIFAR100_CLASSES) == sorted(CIFAR100_CLASSES)


def test_truncated_binary_file_is_a_data_error(tmp_path):
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(b"\x00" * 3000)
    with pytest.raises(DataError, match="3,000 bytes is not a whole number of 3073-byte"):
        read_binary_batch(path, 1)


class _Exploit:
    """Unpickling this calls os.system: what a malicious CIFAR file could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code_execution(tmp_path):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"data": _Exploit(marker), "labels": [0]}, protocol=2)
    assert b"system" in evil
    with pytest.raises(DataError, match=r"refusing to load (posix|nt|os)\.system"):
        safe_unpickle(evil, name="data_batch_1")
    assert not marker.exists()
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(eval, protocol=2))  # a builtin is refused too
    with pytest.raises(DataError, match=r"refusing to load __builtin__\.eval"):
        read_python_batch(path, "labels")


def test_restricted_unpickler_reads_plain_data_and_reports_truncation(tmp_path):
    data, labels = fake_batch(3, 7)
    blob = pickle.dumps({"data": data, "labels": labels, "name": b"x"}, protocol=2)
    back = safe_unpickle(blob)
    assert np.array_equal(back["data"], data) and back["labels"] == labels
    with pytest.raises(DataError, match="corrupt or truncated"):
        safe_unpickle(blob[: len(blob) // 2])


def test_missing_files_are_downloaded_checked_and_unpacked(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_cifar10_python(src)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    fetched = []

    def fake_download(url, dest, *, md5, **kwargs):
        fetched.append((url, md5))
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        Path(dest).write_bytes(archive.getvalue())
        return dest

    monkeypatch.setattr(cifar, "download", fake_download)
    root = tmp_path / "root"
    test = load_dataset("cifar10", "test", root)
    assert len(test) == 6 and (root / "cifar-10-batches-py" / "test_batch").is_file()
    assert fetched == [("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")]
    with pytest.raises(DataError, match="not found"):
        load_dataset("cifar100", "test", tmp_path / "empty", download=False)
