"""Datasets in memory, the one image policy (``image``), batches cut by indexing,
augmentation on whole batches, atomic writes and safe file names (``files``).

Importing this package registers every dataset module (MNIST, Fashion-MNIST, ...).
"""

import importlib
import pkgutil

from cnnlab.data.batches import Batches
from cnnlab.data.datasets import (
    SPLITS,
    DatasetSpec,
    ImageDataset,
    channel_stats,
    get_dataset_spec,
    kfold_indices,
    list_datasets,
    load_dataset,
    random_subset,
    register_dataset,
)
from cnnlab.data.root import data_root

# Every module in the package is imported, so a new dataset module registers itself.
for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "SPLITS",
    "Batches",
    "DatasetSpec",
    "ImageDataset",
    "channel_stats",
    "data_root",
    "get_dataset_spec",
    "kfold_indices",
    "list_datasets",
    "load_dataset",
    "random_subset",
    "register_dataset",
]
