"""Image folders: decoding, the tensor cache, corrupt images, the size policy, folder: names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from cnnlab.data import load_dataset
from cnnlab.data.folders import cache_dir, load_folder
from cnnlab.errors import DataError, UnknownNameError

USER_CACHE = os.environ.get("CNNLAB_CACHE")  # before the fixture below replaces it
COLOURS = {"cat": (255, 0, 0), "dog": (0, 255, 0), "emu": (0, 0, 255)}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))


def make_folder(root: Path, split: str, per_class: int = 3, size=(12, 10), fmt="png") -> None:
    """Solid-colour images, one colour per class, with the image index in pixel (0, 0)."""
    for name, colour in COLOURS.items():
        d = root / split / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = Image.new("RGB", size, colour)
            img.putpixel((0, 0), (i, i, i))
            img.save(d / f"{i:03d}.{fmt}")


def test_decode_labels_and_pixels(tmp_path):
    make_folder(tmp_path, "train")
    got = load_folder(tmp_path / "train", workers=1, quiet=True)
    assert got.classes == ("cat", "dog", "emu")
    assert got.images.shape == (9, 3, 10, 12) and got.images.dtype == torch.uint8
    assert got.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert got.images[4, :, 5, 5].tolist() == [0, 255, 0]  # a dog is green
    assert got.images[4, :, 0, 0].tolist() == [1, 1, 1]  # second dog image (PNG is lossless)
    assert not got.from_cache and got.skipped == ()


def test_cache_hit_on_second_load_and_parallel_workers(tmp_path):
    make_folder(tmp_path, "train", per_class=4)
    first = load_folder(tmp_path / "train", workers=2, quiet=True)
    second = load_folder(tmp_path / "train", quiet=True)
    assert not first.from_cache and second.from_cache
    assert second.cache_file is not None and second.cache_file.parent == cache_dir()
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)


def test_cache_is_invalidated_by_a_new_file_and_rebuilt_when_corrupt(tmp_path):
    make_folder(tmp_path, "train")
    first = load_folder(tmp_path / "train", workers=1, quiet=True)
    Image.new("RGB", (12, 10), (9, 9, 9)).save(tmp_path / "train" / "emu" / "new.png")
    second = load_folder(tmp_path / "train", workers=1, quiet=True)
    assert not second.from_cache and len(second.images) == 10
    assert second.cache_file != first.cache_file
    second.cache_file.write_bytes(b"not a tensor file")  # a torn or corrupt cache
    third = load_folder(tmp_path / "train", workers=1, quiet=True)
    assert not third.from_cache and torch.equal(third.images, second.images)
    assert load_folder(tmp_path / "train", workers=1, quiet=True).from_cache


def test_corrupt_image_is_reported_and_skipped(tmp_path, capsys):
    make_folder(tmp_path, "train")
    bad = tmp_path / "train" / "dog" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    got = load_folder(tmp_path / "train", workers=1)
    assert len(got.images) == 9 and got.labels.tolist().count(1) == 3
    assert [p for p, _ in got.skipped] == [str(bad)]
    err = capsys.readouterr().err
    assert "skipped 1 unreadable image(s) of 10" in err and str(bad) in err
    assert load_folder(tmp_path / "train", workers=1, quiet=True).skipped == got.skipped  # remembered by the cache


def test_mixed_sizes_resize_shorter_side_then_centre_crop(tmp_path):
    d = tmp_path / "train" / "a"
    d.mkdir(parents=True)
    Image.new("RGB", (8, 8), (10, 10, 10)).save(d / "0.png")
    Image.new("RGB", (8, 8), (10, 10, 10)).save(d / "1.png")
    # 16 wide x 8 high: left quarter red, middle half green, right quarter blue.
    wide = Image.new("RGB", (16, 8), (0, 255, 0))
    wide.paste((255, 0, 0), (0, 0, 4, 8))
    wide.paste((0, 0, 255), (12, 0, 16, 8))
    wide.save(d / "2.png")
    got = load_folder(tmp_path / "train", workers=1, quiet=True)
    assert got.images.shape == (3, 3, 8, 8)  # median shorter side 8, centre crop 8x8
    assert (got.images[2] == torch.tensor([0, 255, 0]).view(3, 1, 1)).all()  # only the green middle is kept
    small = load_folder(tmp_path / "train", image_size=4, workers=1, quiet=True)
    assert small.images.shape == (3, 3, 4, 4)


def test_grayscale_folder_has_one_channel(tmp_path):
    d = tmp_path / "train" / "x"
    d.mkdir(parents=True)
    for i in range(2):
        Image.new("L", (5, 5), 100 + i).save(d / f"{i}.png")
    got = load_folder(tmp_path / "train", workers=1, quiet=True)
    assert got.images.shape == (2, 1, 5, 5) and got.images[1, 0, 2, 2] == 101


def test_errors_name_the_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_folder(tmp_path / "nope", quiet=True)
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        load_folder(tmp_path / "train", quiet=True)
    with pytest.raises(UnknownNameError):
        load_dataset("cifar10-jpge")


def test_folder_dataset_by_path_and_read_only_root(tmp_path):
    root = tmp_path / "flowers"
    make_folder(root, "train", per_class=4)
    make_folder(root, "test", per_class=2)
    before = sorted(p for p in root.rglob("*"))
    os.chmod(root, 0o555)
    try:
        train = load_dataset(f"folder:{root}", "train", val_size=3, seed=1)
        val = load_dataset(f"folder:{root}", "val", val_size=3, seed=1)
        test = load_dataset(f"folder:{root}", "test")
    finally:
        os.chmod(root, 0o755)
    assert (len(train), len(val), len(test)) == (9, 3, 6)
    assert train.classes == ("cat", "dog", "emu") and train.image_size == (3, 10, 12)
    assert len(train.mean) == 3 and 0 < train.mean[0] < 1
    assert sorted(p for p in root.rglob("*")) == before  # nothing written into the data root


@pytest.mark.slow
def test_real_cifar10_jpeg(data_root, monkeypatch):
    if not (data_root / "cifar10-jpeg").is_dir():
        pytest.skip("no cifar10-jpeg in the data root")
    # The user's own cache: decode the 60k images once, not on every run of this test.
    if USER_CACHE is None:
        monkeypatch.delenv("CNNLAB_CACHE")
    else:
        monkeypatch.setenv("CNNLAB_CACHE", USER_CACHE)
    train = load_dataset("cifar10-jpeg", "trainval", data_root)
    test = load_dataset("cifar10-jpeg", "test", data_root)
    assert (len(train), len(test)) == (50_000, 10_000) and train.image_size == (3, 32, 32)
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    # CIFAR-10's published channel means, to JPEG's precision.
    assert train.mean == pytest.approx((0.4914, 0.4822, 0.4465), abs=3e-3)
