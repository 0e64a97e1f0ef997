"""MNIST (LeCun, Cortes, Burges) and Fashion-MNIST (Xiao, Rasul, Vollgraf 2017).

Both come as four gzip IDX files in ``<root>/mnist/`` or ``<root>/fashion-mnist/``. Missing
files are downloaded from the canonical mirrors and checked against the published MD5s.
Files already present are not checksummed (a re-compressed copy with the same content has
other gzip bytes); instead the IDX reader checks their structure, so a truncated file is
caught.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.data.datasets import DatasetSpec, register_dataset
from cnnlab.data.download import download
from cnnlab.data.idx import read_idx
from cnnlab.data.root import ENV_VAR
from cnnlab.errors import DataError


@dataclass(frozen=True)
class IdxFiles:
    folder: str  # under the data root
    mirrors: tuple[str, ...]  # base URLs, tried in order
    md5: dict[str, str]  # file name -> MD5 of the canonical .gz

    def paths(self, split: str) -> tuple[str, str]:
        prefix = "train" if split == "train" else "t10k"
        return f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"


MNIST_FILES = IdxFiles(
    folder="mnist",
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    md5={
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
)

FASHION_FILES = IdxFiles(
    folder="fashion-mnist",
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    md5={
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
)


def fetch_missing(files: IdxFiles, root: Path, names: list[str]) -> None:
    """Download the named files into ``root/folder``; offline, say what was expected where."""
    folder = root / files.folder
    for name in names:
        errors = []
        for base in files.mirrors:
            try:
                download(base + name, folder / name, md5=files.md5[name])
                break
            except DataError as e:
                errors.append(str(e))
        else:
            missing = ", ".join(names)
            raise DataError(
                f"{files.folder} not found: expected {missing} in {folder} and could not download them "
                f"({errors[-1]}); put the files there or set {ENV_VAR} (or --data-root) to a folder that "
                f"has {files.folder}/"
            )


def idx_loader(files: IdxFiles):
    def load(root: Path, split: str, allow_download: bool) -> tuple[torch.Tensor, torch.Tensor, str]:
        folder = root / files.folder
        names = list(files.paths(split))
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            if not allow_download:
                raise DataError(
                    f"{files.folder} not found: expected {', '.join(missing)} in {folder}; set {ENV_VAR} "
                    f"(or --data-root) to a folder that has {files.folder}/"
                )
            fetch_missing(files, root, missing)
        images = read_idx(folder / names[0])
        labels = read_idx(folder / names[1])
        if images.ndim != 3:
            raise DataError(f"{folder / names[0]}: expected (N, 28, 28) images, got shape {tuple(images.shape)}")
        if len(labels) != len(images):
            raise DataError(f"{folder}: {len(images):,} images but {len(labels):,} labels")
        return images.unsqueeze(1), labels.to(torch.int64), str(folder)

    return load


DIGITS = tuple(str(d) for d in range(10))
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

register_dataset(DatasetSpec("mnist", DIGITS, idx_loader(MNIST_FILES), val_size=5000, description="MNIST handwritten digits, 28x28 grayscale"))
register_dataset(DatasetSpec("fashion-mnist", FASHION_CLASSES, idx_loader(FASHION_FILES), val_size=5000, description="Fashion-MNIST clothing, 28x28 grayscale"))
