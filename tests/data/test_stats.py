"""Dataset statistics, k-fold sizes and seeded subsets (what `cnnlab data` and training use)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from cnnlab.data import ImageDataset, kfold_indices, load_dataset, random_subset
from cnnlab.data.stats import dataset_stats, kfold_sizes
from cnnlab.errors import DataError


@pytest.fixture
def folder(tmp_path, monkeypatch) -> str:
    """An image folder with 3 classes: 4/5/6 training and 2 test images each."""
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    for split, counts in (("train", (4, 5, 6)), ("test", (2, 2, 2))):
        for c, n in zip("abc", counts):
            d = tmp_path / "root" / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (8, 8), (40 * i, 10, 200)).save(d / f"{i}.png")
    return f"folder:{tmp_path / 'root'}"


def test_dataset_stats_counts_every_split(folder):
    s = dataset_stats(folder, val_size=3, seed=1)
    assert s.classes == ("a", "b", "c") and s.image_size == (3, 8, 8)
    assert s.sizes == {"train": 12, "val": 3, "test": 6, "trainval": 15}
    assert [sum(c) for c in zip(s.class_counts["train"], s.class_counts["val"])] == [4, 5, 6]
    assert s.class_counts["test"] == [2, 2, 2]
    train = load_dataset(folder, "train", val_size=3, seed=1)
    assert s.mean == train.mean and s.std == train.std and s.val_size == 3 and s.seed == 1


def test_kfold_sizes():
    assert kfold_sizes(10, 3) == [(6, 4), (7, 3), (7, 3)]
    assert kfold_sizes(10, 3, seed=5) == [(len(a), len(b)) for a, b in kfold_indices(10, 3, seed=5)]


def test_random_subset_is_seeded_sorted_and_checked():
    images = torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1)
    ds = ImageDataset("t", "train", images, torch.arange(20), tuple("x" * 20), (0.0,), (1.0,))
    a, b = random_subset(ds, 5, seed=3), random_subset(ds, 5, seed=3)
    assert torch.equal(a.images, b.images) and len(a) == 5
    picked = a.images.flatten().tolist()
    assert picked == sorted(picked) and len(set(picked)) == 5  # distinct, in dataset order
    assert not torch.equal(random_subset(ds, 5, seed=4).images, a.images)
    assert torch.equal(random_subset(ds, 20, seed=0).images, images)
    with pytest.raises(DataError, match="1 to 20 images, got 21"):
        random_subset(ds, 21, seed=0)
