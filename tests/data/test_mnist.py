import functools
import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import pytest
import torch

from cnnlab.data import DatasetSpec, load_dataset
from cnnlab.data import datasets as datasets_module
from cnnlab.data import mnist as mnist_module
from cnnlab.data.download import download
from cnnlab.data.root import data_root
from cnnlab.errors import DataError
from tests.data.test_idx import idx_bytes


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root() == tmp_path / "env"
    monkeypatch.setenv("CNNLAB_DATA", "")
    assert data_root() == Path("~/.cache/cnnlab").expanduser()


def _fake_mnist(folder: Path, n_train: int = 50, n_test: int = 20) -> dict[str, bytes]:
    g = torch.Generator().manual_seed(0)
    files = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        files[f"{prefix}-images-idx3-ubyte.gz"] = gzip.compress(
            idx_bytes(torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g))
        )
        files[f"{prefix}-labels-idx1-ubyte.gz"] = gzip.compress(
            idx_bytes(torch.randint(0, 10, (n,), dtype=torch.uint8, generator=g))
        )
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


@pytest.fixture
def served(tmp_path):
    """A local HTTP server over a folder of fake MNIST files."""
    site = tmp_path / "site"
    files = _fake_mnist(site)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", files
    server.shutdown()


def _patched_files(monkeypatch, mirror: str, files: dict[str, bytes], corrupt: str | None = None):
    md5 = {n: hashlib.md5(d).hexdigest() for n, d in files.items()}
    if corrupt:
        md5[corrupt] = "0" * 32
    fake = mnist_module.IdxFiles(folder="mnist", mirrors=(mirror,), md5=md5)
    spec = DatasetSpec("mnist", mnist_module.DIGITS, mnist_module.idx_loader(fake), val_size=10)
    monkeypatch.setitem(datasets_module._DATASETS, "mnist", spec)


def test_download_from_local_http_server(monkeypatch, tmp_path, served):
    url, files = served
    _patched_files(monkeypatch, url, files)
    root = tmp_path / "root"
    ds = load_dataset("mnist", "test", root)
    assert len(ds) == 20 and ds.image_size == (1, 28, 28)
    assert (root / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes() == files["t10k-images-idx3-ubyte.gz"]


def test_checksum_mismatch_keeps_nothing(monkeypatch, tmp_path, served):
    url, files = served
    _patched_files(monkeypatch, url, files, corrupt="train-images-idx3-ubyte.gz")
    root = tmp_path / "root"
    with pytest.raises(DataError, match="checksum mismatch .* expected 0{32}; the file was not kept"):
        load_dataset("mnist", "train", root)
    assert not (root / "mnist" / "train-images-idx3-ubyte.gz").exists()
    assert not list((root / "mnist").glob("*.part"))


def test_download_file_url(tmp_path):
    src = tmp_path / "x.bin"
    src.write_bytes(b"hello")
    out = download(src.as_uri(), tmp_path / "out" / "x.bin", md5=hashlib.md5(b"hello").hexdigest(), quiet=True)
    assert out.read_bytes() == b"hello"


def test_offline_message_names_files_folder_and_variable(monkeypatch, tmp_path):
    _patched_files(monkeypatch, (tmp_path / "nowhere").as_uri() + "/", {n: b"" for n in mnist_module.MNIST_FILES.md5})
    with pytest.raises(DataError) as e:
        load_dataset("mnist", "train", tmp_path / "empty")
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and str(tmp_path / "empty" / "mnist") in msg and "CNNLAB_DATA" in msg


def test_truncated_local_file_fails_clearly(monkeypatch, tmp_path):
    files = _fake_mnist(tmp_path / "root" / "mnist")
    _patched_files(monkeypatch, "file:///nonexistent/", files)
    data = files["train-images-idx3-ubyte.gz"]
    (tmp_path / "root" / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(data[:-30])
    with pytest.raises(DataError, match="corrupt or truncated"):
        load_dataset("mnist", "train", tmp_path / "root")


def test_real_mnist_splits_and_statistics(data_root):
    train = load_dataset("mnist", "train", data_root)
    val = load_dataset("mnist", "val", data_root)
    test = load_dataset("mnist", "test", data_root)
    assert (len(train), len(val), len(test)) == (55_000, 5_000, 10_000)
    assert train.images.dtype == torch.uint8 and train.image_size == (1, 28, 28)
    # The published MNIST statistics (training set): mean 0.1307, std 0.3081.
    assert train.mean[0] == pytest.approx(0.1307, abs=1e-4) and train.std[0] == pytest.approx(0.3081, abs=1e-4)
    assert torch.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # Train and validation are disjoint and seeded.
    again = load_dataset("mnist", "val", data_root)
    assert torch.equal(val.labels, again.labels)
    other = load_dataset("mnist", "val", data_root, seed=1)
    assert not torch.equal(val.images, other.images)


def test_real_fashion_mnist(data_root):
    test = load_dataset("fashion-mnist", "test", data_root)
    assert len(test) == 10_000 and test.classes[0] == "T-shirt/top"
    assert torch.bincount(test.labels).tolist() == [1000] * 10
