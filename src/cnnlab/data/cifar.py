"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny
Images", https://www.cs.toronto.edu/~kriz/cifar.html) in their canonical distributions.

Both versions are read from the data root, as the archives unpack:

- python: ``cifar-10-batches-py/data_batch_{1..5}``, ``test_batch`` and
  ``cifar-100-python/{train,test}``: pickled dicts whose ``data`` is a (N, 3072) uint8 array
  (1024 red, 1024 green, 1024 blue values, row-major) with ``labels`` / ``fine_labels``.
- binary: ``cifar-10-batches-bin/data_batch_{1..5}.bin``, ``test_batch.bin`` (records of 1
  label byte + 3072 pixel bytes) and ``cifar-100-binary/{train,test}.bin`` (coarse label,
  fine label, 3072 pixel bytes). We use CIFAR-100's fine (100-class) labels.

Missing files are downloaded (python version) with their published MD5s and unpacked.

The python version is a pickle, and unpickling runs whatever the file asks for. So it is read
with a restricted unpickler that only builds the types these files contain (dicts, lists,
strings, bytes, and NumPy arrays); anything else (``os.system``, ``builtins.eval``, ...) is
refused with a DataError before it can run.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.datasets import DatasetSpec, register_dataset
from cnnlab.data.download import download
from cnnlab.data.folders import CIFAR10_CLASSES
from cnnlab.data.root import ENV_VAR
from cnnlab.errors import DataError

PIXELS = 3 * 32 * 32

# The 100 fine classes of CIFAR-100, in label order (alphabetical, as in the archive's meta).
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)


@dataclass(frozen=True)
class CifarFiles:
    """Where one CIFAR variant lives and how it is laid out."""

    python_folder: str  # folder the python archive unpacks to
    binary_folder: str  # folder the binary archive unpacks to
    python_files: dict[str, tuple[str, ...]]  # split -> pickled batch files
    binary_files: dict[str, tuple[str, ...]]  # split -> .bin files
    label_key: str  # key of the labels in the pickled dicts
    label_bytes: int  # label bytes before each binary record (1, or 2 for coarse + fine)
    url: str  # the python archive
    md5: str  # its published MD5


CIFAR10 = CifarFiles(
    python_folder="cifar-10-batches-py",
    binary_folder="cifar-10-batches-bin",
    python_files={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
    binary_files={"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)},
    label_key="labels",
    label_bytes=1,
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
)
CIFAR100 = CifarFiles(
    python_folder="cifar-100-python",
    binary_folder="cifar-100-binary",
    python_files={"train": ("train",), "test": ("test",)},
    binary_files={"train": ("train.bin",), "test": ("test.bin",)},
    label_key="fine_labels",
    label_bytes=2,
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
)
# The binary archives, for reference (not downloaded: the python version is enough):
# https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz   md5 c32a1d4ab5d03f1284b67883e8d87530
# https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz  md5 03b5dce01913d631647c71ecec9e9cb8


# --- the restricted unpickler --------------------------------------------------------------

# The only globals a CIFAR pickle needs: NumPy's array reconstruction (module path of NumPy 1
# and of NumPy 2), the array and dtype types, and the codecs helper Python 2 pickles use for
# byte strings read with encoding="latin1".
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _Refused(pickle.UnpicklingError):
    """A global outside the allowed list: refused before it is imported or called."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise _Refused(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def safe_unpickle(data: bytes, *, name: str = "<bytes>") -> object:
    """Unpickle ``data`` admitting only containers, strings, bytes, numbers and NumPy arrays;
    anything else raises DataError naming the refused global."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except _Refused as e:
        raise DataError(f"{name} is not a plain CIFAR pickle ({e}); it was not loaded") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise DataError(f"{name} is corrupt or truncated: {type(e).__name__}: {e}") from None


def _key(d: dict, key: str):
    """Keys are str when read with encoding="latin1"; accept byte keys too."""
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DataError(f"missing {key!r} in a CIFAR batch (keys: {[k for k in d][:6]})")


def read_python_batch(path: Path, label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    batch = safe_unpickle(raw, name=str(path))
    if not isinstance(batch, dict):
        raise DataError(f"{path}: expected a dict of data and labels, got {type(batch).__name__}")
    data = np.asarray(_key(batch, "data"))
    labels = np.asarray(_key(batch, label_key), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS or len(labels) != len(data):
        raise DataError(f"{path}: expected uint8 data (N, {PIXELS}) and N labels, got {data.dtype} {data.shape}, {labels.shape}")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels)


def read_binary_batch(path: Path, label_bytes: int) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    record = label_bytes + PIXELS
    if raw.size == 0 or raw.size % record:
        raise DataError(f"{path}: {raw.size:,} bytes is not a whole number of {record}-byte CIFAR records")
    rows = raw.reshape(-1, record)
    labels = torch.from_numpy(rows[:, label_bytes - 1].astype(np.int64))  # the last label byte: fine label
    images = torch.from_numpy(rows[:, label_bytes:].reshape(-1, 3, 32, 32).copy())
    return images, labels


def _fetch(files: CifarFiles, root: Path) -> None:
    archive = root / files.url.rsplit("/", 1)[1]
    if not archive.is_file():
        download(files.url, archive, md5=files.md5)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")  # "data" refuses absolute paths, links out of root
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"cannot unpack {archive}: {e}") from None


def cifar_loader(files: CifarFiles, num_classes: int):
    def load(root: Path, split: str, allow_download: bool) -> tuple[torch.Tensor, torch.Tensor, str]:
        py, binary = root / files.python_folder, root / files.binary_folder
        if not (py.is_dir() or binary.is_dir()):
            if not allow_download:
                raise DataError(
                    f"{files.python_folder} not found in {root}: set {ENV_VAR} (or --data-root) to a folder "
                    f"that holds {files.python_folder}/ or {files.binary_folder}/"
                )
            _fetch(files, root)
        if py.is_dir():
            parts = [read_python_batch(py / name, files.label_key) for name in files.python_files[split]]
            source = py
        else:
            parts = [read_binary_batch(binary / name, files.label_bytes) for name in files.binary_files[split]]
            source = binary
        images = torch.cat([p[0] for p in parts])
        labels = torch.cat([p[1] for p in parts])
        if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
            raise DataError(f"{source}: labels outside 0..{num_classes - 1} ({int(labels.min())}..{int(labels.max())})")
        return images, labels, str(source)

    return load


register_dataset(DatasetSpec("cifar10", CIFAR10_CLASSES, cifar_loader(CIFAR10, 10), val_size=5000, description="CIFAR-10, 32x32 RGB, 10 classes"))
register_dataset(DatasetSpec("cifar100", CIFAR100_CLASSES, cifar_loader(CIFAR100, 100), val_size=5000, description="CIFAR-100, 32x32 RGB, 100 fine classes"))
