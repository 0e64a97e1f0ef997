"""What ``cnnlab data`` reports about a dataset: sizes, classes, statistics, folds."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from cnnlab.data.datasets import get_dataset_spec, kfold_indices, load_dataset


@dataclass(frozen=True)
class DatasetStats:
    """One dataset with its seeded validation hold-out, described."""

    name: str
    description: str
    sources: tuple[str, ...]  # where train (and test, when elsewhere) were read from
    image_size: tuple[int, int, int]  # (channels, height, width)
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, [0, 1], training split (train + val)
    std: tuple[float, ...]
    sizes: dict[str, int]  # images per split: train, val, test, trainval
    class_counts: dict[str, list[int]]  # split -> images per class (train, val, test)
    val_size: int
    seed: int  # of the hold-out


def dataset_stats(name: str, root: str | os.PathLike | None = None, *, val_size: int | None = None, seed: int = 0) -> DatasetStats:
    """Load the train, val and test splits of ``name`` and describe them."""
    spec = get_dataset_spec(name)
    splits = {
        "train": load_dataset(name, "train", root, val_size=val_size, seed=seed),
        "val": load_dataset(name, "val", root, val_size=val_size, seed=seed),
        "test": load_dataset(name, "test", root),
    }
    train = splits["train"]
    sources = (train.source,) if splits["test"].source == train.source else (train.source, splits["test"].source)
    sizes = {split: len(d) for split, d in splits.items()}
    sizes["trainval"] = sizes["train"] + sizes["val"]
    counts = {split: torch.bincount(d.labels, minlength=train.num_classes).tolist() for split, d in splits.items()}
    return DatasetStats(
        name=name, description=spec.description, sources=sources, image_size=train.image_size, classes=train.classes,
        mean=train.mean, std=train.std, sizes=sizes, class_counts=counts, val_size=sizes["val"], seed=seed,
    )


def kfold_sizes(n: int, folds: int, *, seed: int = 0) -> list[tuple[int, int]]:
    """(train, validation) sizes of each fold of :func:`kfold_indices`."""
    return [(len(tr), len(va)) for tr, va in kfold_indices(n, folds, seed=seed)]
