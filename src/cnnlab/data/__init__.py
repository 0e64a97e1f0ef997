"""Datasets in memory, batches cut by indexing, augmentation on whole batches.

Importing this package registers every dataset module (MNIST, Fashion-MNIST, ...).
"""

import importlib
import pkgutil

from cnnlab.data.batches import Batches
from cnnlab.data.datasets import (
    DatasetSpec,
    ImageDataset,
    channel_stats,
    get_dataset_spec,
    kfold_indices,
    list_datasets,
    load_dataset,
    register_dataset,
)
from cnnlab.data.root import data_root

# Every module in the package is imported, so a new dataset module registers itself.
for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "Batches",
    "DatasetSpec",
    "ImageDataset",
    "channel_stats",
    "data_root",
    "get_dataset_spec",
    "kfold_indices",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]
