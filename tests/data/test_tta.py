"""Test-time augmentation views: flips and AlexNet's ten crops, on a known image."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data.tta import five_crops, tta_padding, tta_views


def image() -> torch.Tensor:
    return torch.arange(2 * 3 * 6 * 8, dtype=torch.float32).view(2, 3, 6, 8)


def test_five_crops_are_the_corners_and_the_centre():
    x = image()
    tl, tr, bl, br, centre = five_crops(x, (4, 4))
    assert torch.equal(tl, x[..., 0:4, 0:4])
    assert torch.equal(tr, x[..., 0:4, 4:8])
    assert torch.equal(bl, x[..., 2:6, 0:4])
    assert torch.equal(br, x[..., 2:6, 4:8])
    assert torch.equal(centre, x[..., 1:5, 2:6])
    assert tl[0, 0, 0, 0] == x[0, 0, 0, 0] and br[0, 0, -1, -1] == x[0, 0, -1, -1]


def test_ten_crops_are_five_crops_and_their_mirrors():
    x = image()
    views = tta_views(x, "10crop", (4, 4))
    assert len(views) == 10 and all(v.shape == (2, 3, 4, 4) for v in views)
    for crop, mirror in zip(views[:5], views[5:]):
        assert torch.equal(mirror, crop.flip(-1))
    assert len({tuple(v.reshape(-1).tolist()) for v in views}) == 10  # all different


def test_flip_center_and_none():
    x = image()
    plain, mirror = tta_views(x, "flip")
    assert torch.equal(plain, x) and torch.equal(mirror[..., 0], x[..., -1])
    assert tta_views(x, "none")[0] is x
    (centre,) = tta_views(x, "center", (2, 2))
    assert torch.equal(centre, x[..., 2:4, 3:5])
    with pytest.raises(ValueError, match="larger than the images"):
        tta_views(x, "10crop", (7, 7))
    with pytest.raises(ValueError, match="unknown test-time augmentation"):
        tta_views(x, "12crop")


def test_padding_only_when_the_crop_is_the_whole_image():
    assert tta_padding("10crop", (32, 32), (32, 32)) == 4  # CIFAR: corners become 4-pixel shifts
    assert tta_padding("10crop", (256, 256), (224, 224)) == 0  # AlexNet: crops of the larger image
    assert tta_padding("flip", (32, 32), (32, 32)) == 0


def test_flip_translate_is_airbenchs_six_views():
    x = image()
    views = tta_views(x, "flip-translate")
    assert len(views) == 6 and all(v.shape == x.shape for v in views)
    as_is, down_right, up_left = views[:3]
    assert torch.equal(as_is, x)
    # moved by one pixel: the interior is the image shifted; the new edge is its reflection
    assert torch.equal(down_right[..., 1:, 1:], x[..., :-1, :-1])
    assert torch.equal(down_right[..., 0, 1:], x[..., 1, :-1])
    assert torch.equal(up_left[..., :-1, :-1], x[..., 1:, 1:])
    assert torch.equal(up_left[..., -1, :-1], x[..., -2, 1:])
    assert all(torch.equal(m, v.flip(-1)) for m, v in zip(views[3:], views[:3]))
