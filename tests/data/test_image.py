"""The image policy: decode, convert, resize the shorter side and centre-crop, invert, normalise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import Batches, ImageDataset
from cnnlab.data.folders import load_folder
from cnnlab.data.image import (
    dark_background,
    decode_image,
    load_image,
    normalise,
    resize_and_crop,
    should_invert,
    to_model_input,
)
from cnnlab.errors import CnnlabError, DataError


def gradient_image(width: int, height: int) -> Image.Image:
    """An RGB image whose every pixel differs from its neighbours (so crops are told apart)."""
    x = np.arange(width)[None, :, None]
    y = np.arange(height)[:, None, None]
    rgb = np.concatenate([(x * 7) % 256 + 0 * y, (y * 5) % 256 + 0 * x, (x + y) % 256], axis=2)
    return Image.fromarray(rgb.astype(np.uint8))


def test_resize_and_crop_scales_the_shorter_side_then_takes_the_centre():
    img = gradient_image(60, 30)  # width 60, height 30
    out = resize_and_crop(img, (20, 20))
    assert out.size == (20, 20)
    # By hand: shorter side 30 -> 20 keeps the aspect ratio (60 -> 40), then the middle 20 columns.
    expected = img.resize((40, 20), Image.Resampling.BILINEAR).crop((10, 0, 30, 20))
    assert np.array_equal(np.asarray(out), np.asarray(expected))
    # Not a stretch: stretching 60x30 to 20x20 gives other pixels.
    assert not np.array_equal(np.asarray(out), np.asarray(img.resize((20, 20), Image.Resampling.BILINEAR)))


def test_resize_and_crop_keeps_an_image_of_the_target_size_and_covers_other_targets():
    img = gradient_image(32, 24)
    assert resize_and_crop(img, (24, 32)) is img
    assert resize_and_crop(img, (16, 40)).size == (40, 16)  # (height, width) targets need not be square
    assert resize_and_crop(gradient_image(10, 10), (30, 30)).size == (30, 30)  # upscaling too


def test_decode_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match=f"no image at {tmp_path / 'missing.png'}"):
        decode_image(tmp_path / "missing.png", 3)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(DataError, match=f"cannot decode image {bad}"):
        decode_image(bad, 3)
    with pytest.raises(DataError, match="1 or 3 channels"):
        decode_image(bad, 2)


def test_load_image_converts_channels(tmp_path):
    gradient_image(28, 28).save(tmp_path / "rgb.png")
    gray = load_image(tmp_path / "rgb.png", (1, 28, 28), invert="no")
    assert gray.shape == (1, 28, 28) and gray.dtype == torch.uint8
    expected = np.asarray(gradient_image(28, 28).convert("L"))
    assert torch.equal(gray[0], torch.from_numpy(expected.copy()))
    assert load_image(tmp_path / "rgb.png", (3, 14, 14)).shape == (3, 14, 14)


def test_invert_test_for_dark_background_datasets():
    dark_digit = torch.zeros(1, 28, 28, dtype=torch.uint8)
    dark_digit[0, 10:18, 12:16] = 255  # white stroke on black: as MNIST
    scanned = 255 - dark_digit  # black stroke on white paper
    assert should_invert(scanned, "auto", dark_background=True)
    assert not should_invert(dark_digit, "auto", dark_background=True)
    assert not should_invert(scanned, "auto", dark_background=False)
    assert should_invert(dark_digit, "yes", dark_background=False)
    assert not should_invert(scanned, "no", dark_background=True)
    assert not should_invert(torch.full((3, 8, 8), 255, dtype=torch.uint8), "yes", dark_background=True)  # RGB never
    with pytest.raises(CnnlabError, match="unknown invert mode 'maybe'"):
        should_invert(scanned, "maybe", dark_background=True)
    assert dark_background([0.1307]) and not dark_background([0.9]) and not dark_background([0.2, 0.2, 0.2])


def test_load_image_inverts_a_black_on_white_scan(tmp_path):
    digit = np.zeros((28, 28), np.uint8)
    digit[8:20, 12:16] = 255
    Image.fromarray(255 - digit).save(tmp_path / "scan.png")
    got = load_image(tmp_path / "scan.png", (1, 28, 28), invert="auto", dark_background=True)
    assert torch.equal(got[0], torch.from_numpy(digit))


def test_to_model_input_is_what_training_batches_do_without_augmentation():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 3, 8, 8), generator=g, dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    dataset = ImageDataset("t", "test", images, torch.zeros(5, dtype=torch.int64), ("a",), mean, std)
    (batch, _), = list(Batches(dataset, 5, pad=2))
    got = to_model_input(images, mean=mean, std=std, pad=2)
    assert got.shape == (5, 3, 12, 12) and torch.equal(got, batch)
    # normalise: per channel (x - mean) / std
    x = torch.rand(2, 3, 4, 4, generator=g)
    assert torch.allclose(normalise(x, mean, std)[:, 1], (x[:, 1] - 0.4) / 0.25)


def test_folder_dataset_and_load_image_give_the_same_pixels(tmp_path):
    """The drift the policy removes: an image folder of mixed sizes is resized (shorter side)
    and centre-cropped, and an image file read on its own gets exactly the same pixels."""
    sizes = [(40, 28), (28, 50), (28, 28), (60, 35), (33, 28)]
    for i, (w, h) in enumerate(sizes):
        (tmp_path / "train" / "a").mkdir(parents=True, exist_ok=True)
        gradient_image(w, h).save(tmp_path / "train" / "a" / f"{i}.png")
    got = load_folder(tmp_path / "train", workers=1, cache=False, quiet=True)
    assert got.images.shape == (5, 3, 28, 28)  # median shorter side: 28
    for i in range(len(sizes)):
        assert torch.equal(load_image(tmp_path / "train" / "a" / f"{i}.png", (3, 28, 28)), got.images[i]), i
