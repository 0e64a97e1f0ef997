"""Datasets held in memory as uint8 tensors, and the registry that finds them by name.

Every dataset is an :class:`ImageDataset`: ``images`` (N, C, H, W) uint8, ``labels`` (N,)
int64, class names, and per-channel mean/std computed from the training split. Training
batches are cut from these tensors by indexing (see ``cnnlab.data.batches``), so there is no
per-sample Python on the hot path.

Splits: ``train`` and ``test`` are the canonical ones; ``val`` is a seeded hold-out carved
from the canonical training set (5,000 images for MNIST, as in the usual 55,000 / 5,000), and
``train`` then means the remainder. ``trainval`` is the whole canonical training set.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from cnnlab.data.root import data_root
from cnnlab.errors import DataError, UnknownNameError

SPLITS = ("train", "val", "trainval", "test")


@dataclass
class ImageDataset:
    name: str
    split: str
    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, pixel values scaled to [0, 1], training split
    std: tuple[float, ...]
    source: str = ""  # where the images were read from

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DataError(
                f"{self.name}: images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if len(self.labels) != len(self.images):
            raise DataError(f"{self.name}: {len(self.images):,} images but {len(self.labels):,} labels")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> tuple[int, int, int]:
        """(channels, height, width)"""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, indices: torch.Tensor, split: str | None = None) -> "ImageDataset":
        return replace(self, images=self.images[indices], labels=self.labels[indices], split=split or self.split)

    def __repr__(self) -> str:
        c, h, w = self.image_size
        return f"ImageDataset({self.name!r}, split={self.split!r}, {len(self):,} images of {c}x{h}x{w}, {self.num_classes} classes)"


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std of uint8 images, scaled to [0, 1].

    Uses a 256-bin histogram per channel, so it is exact and fast (one pass of bincount)."""
    means, stds = [], []
    values = torch.arange(256, dtype=torch.float64) / 255.0
    for c in range(images.shape[1]):
        hist = torch.bincount(images[:, c].reshape(-1).to(torch.int64), minlength=256).to(torch.float64)
        n = hist.sum()
        mean = (hist * values).sum() / n
        var = (hist * (values - mean) ** 2).sum() / n
        means.append(round(float(mean), 6))
        stds.append(round(float(var.sqrt()), 6))
    return tuple(means), tuple(stds)


@dataclass(frozen=True)
class DatasetSpec:
    """How to find and read a dataset: its loader returns (images, labels) for train/test."""

    name: str
    classes: tuple[str, ...]
    # load(root, split, download) -> (images uint8 (N,C,H,W), labels int64, source description)
    load: Callable[[Path, str, bool], tuple[torch.Tensor, torch.Tensor, str]]
    val_size: int  # default hold-out size carved from the canonical training set
    description: str = ""
    # Datasets whose classes are read from the data on disk (ImageNet's folders and synset
    # file): list_classes(root) -> names in label order; ``classes`` is then empty.
    list_classes: Callable[[Path], tuple[str, ...]] | None = None
    # Image-file datasets that can be streamed (cnnlab.data.stream): files(root, split) ->
    # (paths, labels int64, source description) of the canonical train or test split.
    files: Callable[[Path, str], tuple[list[str], torch.Tensor, str]] | None = None
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def classes_at(self, root: Path) -> tuple[str, ...]:
        """The class names of this dataset under data root ``root``."""
        return self.list_classes(root) if self.list_classes is not None else self.classes


_DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in _DATASETS:
        raise ValueError(f"dataset {spec.name!r} is registered twice")
    _DATASETS[spec.name] = spec
    return spec


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


# Resolvers turn names that are not registered (``folder:/path``) into specs; each returns
# None for names it does not handle. Resolved specs are kept so their data is read once.
_RESOLVERS: list[Callable[[str], "DatasetSpec | None"]] = []
_RESOLVED: dict[str, DatasetSpec] = {}


def register_resolver(resolver: Callable[[str], "DatasetSpec | None"]) -> None:
    _RESOLVERS.append(resolver)


def get_dataset_spec(name: str) -> DatasetSpec:
    if name in _RESOLVED:
        return _RESOLVED[name]
    for resolver in _RESOLVERS:
        spec = resolver(name)
        if spec is not None:
            _RESOLVED[name] = spec
            return spec
    try:
        return _DATASETS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_DATASETS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known datasets: {', '.join(sorted(_DATASETS))}"
        raise UnknownNameError(f"unknown dataset {name!r}{hint}") from None


def _read_canonical(spec: DatasetSpec, root: Path, split: str, download: bool):
    """The canonical train or test split, read once per process and root."""
    key = (str(root.resolve()), split)
    if key not in spec._cache:
        spec._cache[key] = spec.load(root, split, download)
    return spec._cache[key]


def load_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike | None = None,
    *,
    val_size: int | None = None,
    seed: int = 0,
    download: bool = True,
) -> ImageDataset:
    """Load a registered dataset split into memory.

    ``root``: the data root (else ``$CNNLAB_DATA``, else ``~/.cache/cnnlab``). ``val_size``
    and ``seed`` define the validation hold-out (``val_size=0`` keeps the whole training set
    as ``train``). Missing files are downloaded (with checksums) when ``download`` is true.
    """
    spec = get_dataset_spec(name)
    if split not in SPLITS:
        raise UnknownNameError(f"unknown split {split!r} for {name}; expected one of {', '.join(SPLITS)}")
    root_path = data_root(root)
    train_images, train_labels, source = _read_canonical(spec, root_path, "train", download)
    stats_key = (str(root_path.resolve()), "stats")  # mean/std of the training split, computed once
    if stats_key not in spec._cache:
        spec._cache[stats_key] = channel_stats(train_images)
    mean, std = spec._cache[stats_key]
    classes = spec.classes_at(root_path)
    if split == "test":
        images, labels, source = _read_canonical(spec, root_path, "test", download)
        return ImageDataset(name, split, images, labels, classes, mean, std, source)
    full = ImageDataset(name, "trainval", train_images, train_labels, classes, mean, std, source)
    if split == "trainval":
        return full
    n_val = spec.val_size if val_size is None else val_size
    if not 0 <= n_val < len(full):
        raise DataError(f"val_size must be in [0, {len(full)}) for {name} ({len(full):,} training images), got {n_val}")
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed))
    if split == "val":
        return full.subset(order[:n_val].sort().values, "val")
    return full.subset(order[n_val:].sort().values, "train")


def random_subset(dataset: ImageDataset, n: int, *, seed: int) -> ImageDataset:
    """A seeded random ``n`` of the dataset's images, kept in the dataset's order (image
    folders are sorted by class, so the first ``n`` would be a few classes only)."""
    if not 0 < n <= len(dataset):
        raise DataError(f"a subset of {dataset.name} {dataset.split} must have 1 to {len(dataset):,} images, got {n:,}")
    pick = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return dataset.subset(pick[:n].sort().values)


def kfold_indices(n: int, folds: int, *, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """k-fold cross-validation: ``folds`` (train_indices, val_indices) pairs covering 0..n-1."""
    if not 2 <= folds <= n:
        raise ValueError(f"folds must be in [2, {n}], got {folds}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = torch.tensor_split(order, folds)
    return [
        (torch.cat([p for j, p in enumerate(parts) if j != i]).sort().values, parts[i].sort().values)
        for i in range(folds)
    ]
