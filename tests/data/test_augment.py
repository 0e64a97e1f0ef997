"""Batch augmentations: shapes, seeded determinism, geometry on known images, statistics."""

from __future__ import annotations

import math

import pytest
import torch

from cnnlab.data.augment import (
    PRESETS,
    ColorJitter,
    Compose,
    Cutout,
    HorizontalFlip,
    PCALighting,
    RandomAffine,
    RandomCrop,
    RandomResizedCrop,
    RandomShift,
    get_preset,
    rgb_pca,
)
from cnnlab.data.datasets import ImageDataset
from cnnlab.errors import UnknownNameError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ramp(b: int = 4, c: int = 3, h: int = 8, w: int = 8) -> torch.Tensor:
    """Distinct values everywhere, so every crop can be located."""
    return torch.arange(b * c * h * w, dtype=torch.float32).view(b, c, h, w) / (b * c * h * w)


ALL = [
    RandomShift(2),
    RandomCrop(8, padding=2),
    RandomCrop(8, padding=2, pad_mode="reflect"),
    HorizontalFlip(),
    RandomResizedCrop(8),
    RandomAffine(degrees=10, translate=0.1),
    ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4),
    PCALighting((0.2, 0.02, 0.004), torch.eye(3)),
    Cutout(4),
]


@pytest.mark.parametrize("aug", ALL, ids=repr)
def test_shape_and_seeded_determinism(aug):
    x = torch.rand(16, 3, 8, 8, generator=gen(5))
    a, b, c = aug(x, gen(1)), aug(x, gen(1)), aug(x, gen(2))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_random_crop_is_a_window_of_the_padded_image():
    x = ramp()
    out = RandomCrop(6)(x, gen(0))
    for i in range(len(x)):
        windows = [x[i, :, t : t + 6, l : l + 6] for t in range(3) for l in range(3)]
        assert any(torch.equal(out[i], w) for w in windows)
    padded = RandomCrop(8, padding=4)(x, gen(3))
    zero_rows = (padded == 0).all(dim=(1, 3))  # zero padding shows as whole zero rows or columns
    assert zero_rows.any()
    reflected = RandomCrop(8, padding=4, pad_mode="reflect")(x + 1, gen(3))
    assert (reflected > 0).all()  # reflection pads with image content, never zeros


def test_random_crop_all_offsets_occur_uniformly():
    x = ramp(b=1).expand(4000, -1, -1, -1)
    out = RandomShift(1)(x, gen(0))
    # Offsets in {-1, 0, 1}^2: the pixel at (1, 1) comes from 9 places with equal frequency.
    sources = out[:, 0, 1, 1]
    counts = torch.unique(sources, return_counts=True)[1]
    assert len(counts) == 9 and counts.min() > 4000 / 9 * 0.8


def test_flip_geometry():
    x = ramp()
    assert torch.equal(HorizontalFlip(p=1.0)(x, gen()), x.flip(3))
    assert torch.equal(HorizontalFlip(p=0.0)(x, gen()), x)
    mixed = HorizontalFlip()(ramp(b=200), gen(1))
    flipped = sum(torch.equal(mixed[i], ramp(b=200)[i].flip(2)) for i in range(200))
    assert 70 < flipped < 130


def test_affine_identity_and_small_translation():
    x = ramp()
    assert torch.allclose(RandomAffine()(x, gen()), x, atol=1e-6)
    assert torch.allclose(RandomResizedCrop(8, scale=(1, 1), ratio=(1, 1))(x, gen()), x, atol=1e-6)
    # A 10-degree rotation keeps the centre of a constant image and blacks out no more than a corner.
    ones = torch.ones(8, 1, 16, 16)
    rotated = RandomAffine(degrees=10)(ones, gen(1))
    assert torch.allclose(rotated[:, :, 6:10, 6:10], torch.ones(1)) and rotated.mean() > 0.85


def test_random_resized_crop_zooms_in():
    # A 2x2 checkerboard of 16x16 quadrants: a crop of a small area sees mostly one quadrant.
    board = torch.zeros(1, 1, 32, 32)
    board[..., :16, :16] = board[..., 16:, 16:] = 1
    out = RandomResizedCrop(16, scale=(0.05, 0.05))(board.expand(64, -1, -1, -1), gen(0))
    assert out.shape == (64, 1, 16, 16)
    purity = (out.mean(dim=(1, 2, 3)) - 0.5).abs() * 2
    assert purity.mean() > 0.5


def test_color_jitter_ranges_and_gray_images():
    x = torch.full((500, 3, 4, 4), 0.5)
    bright = ColorJitter(brightness=0.4)(x, gen(0))
    factors = bright[:, 0, 0, 0] / 0.5
    assert factors.min() >= 0.6 - 1e-6 and factors.max() <= 1.4 + 1e-6 and factors.std() > 0.1
    gray = torch.rand(10, 1, 4, 4, generator=gen(1))
    assert torch.equal(ColorJitter(saturation=0.5)(gray, gen(2)), gray)  # nothing to saturate
    out = ColorJitter(brightness=0.9, contrast=0.9, saturation=0.9)(torch.rand(50, 3, 4, 4, generator=gen(3)), gen(4))
    assert out.min() >= 0 and out.max() <= 1
    flat = torch.rand(10, 3, 1, 1, generator=gen(5)).expand(-1, -1, 4, 4)
    assert torch.allclose(ColorJitter(saturation=0.5)(flat.mean(1, keepdim=True).expand(-1, 3, -1, -1), gen(6)),
                          flat.mean(1, keepdim=True).expand(-1, 3, -1, -1), atol=1e-6)


def test_pca_lighting_statistics():
    eigval = torch.tensor([0.2175, 0.0188, 0.0045], dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen(0), dtype=torch.float64))
    light = PCALighting(eigval, q, std=0.1)
    x = torch.zeros(20000, 3, 2, 2)
    shift = light(x, gen(1))[:, :, 0, 0].double()  # (N, 3): the added RGB offset
    assert torch.equal(light(x, gen(1))[:, :, 1, 1], shift.float())  # the same offset for every pixel
    alpha = (shift @ q) / eigval  # coordinates along each eigenvector, divided by its eigenvalue
    assert alpha.mean(0).abs().max() < 0.005
    assert torch.allclose(alpha.std(0), torch.full((3,), 0.1, dtype=torch.float64), rtol=0.03)
    # The offsets' covariance is V diag((0.1 lambda)^2) V^T.
    expected = q @ torch.diag((0.1 * eigval) ** 2) @ q.T
    assert torch.allclose(torch.cov(shift.T), expected, atol=2e-5)


def test_rgb_pca_recovers_a_known_covariance():
    g = gen(0)
    direction = torch.tensor([1.0, 1.0, 1.0]) / math.sqrt(3)
    n = 64 * 16 * 16
    t = torch.randn(n, generator=g) * 0.15  # strong variation along gray
    noise = torch.randn(n, 3, generator=g) * 0.01
    pixels = (0.5 + t[:, None] * direction + noise).clamp(0, 1)
    images = (pixels * 255).round().to(torch.uint8).T.reshape(3, 64, 16, 16).permute(1, 0, 2, 3)
    eigval, eigvec = rgb_pca(images)
    assert eigval[0] > 50 * eigval[1] and eigval[1] >= eigval[2] > 0
    assert abs(float(eigvec[:, 0].float() @ direction)) > 0.999
    assert eigval[0] == pytest.approx(0.15**2, rel=0.1)


def test_cutout_zeroes_a_square():
    x = torch.ones(200, 1, 32, 32)
    out = Cutout(8)(x, gen(0))
    zeros = (out == 0).sum(dim=(1, 2, 3))
    assert zeros.max() == 64 and zeros.min() >= 16  # centre inside: at least a quarter of the square
    for i in range(10):
        rows = (out[i, 0] == 0).any(1).nonzero().view(-1)
        cols = (out[i, 0] == 0).any(0).nonzero().view(-1)
        assert (out[i, 0, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] == 0).all()  # a filled rectangle


def fake_dataset(c: int = 3, size: int = 32) -> ImageDataset:
    images = torch.randint(0, 256, (20, c, size, size), dtype=torch.uint8, generator=gen(0))
    return ImageDataset("fake", "train", images, torch.zeros(20, dtype=torch.int64), ("a",), (0.5,) * c, (0.25,) * c)


def test_presets():
    assert get_preset("none") is None
    for name in PRESETS:
        get_preset(name)  # every preset builds without a dataset (name checks before loading)
    mnist = get_preset("mnist")
    assert isinstance(mnist, RandomShift)  # digits: no flips or rotations
    cifar = get_preset("cifar", fake_dataset())
    assert isinstance(cifar, Compose) and [type(s) for s in cifar.steps] == [RandomCrop, HorizontalFlip]
    assert cifar.steps[0].padding == 4 and cifar.steps[0].pad_mode == "zero"
    assert cifar(torch.rand(4, 3, 32, 32), gen()).shape == (4, 3, 32, 32)
    assert cifar(torch.rand(4, 1, 36, 36), gen()).shape == (4, 1, 36, 36)  # keeps the (padded) batch size
    airbench = get_preset("airbench", fake_dataset())  # Jordan 2024: 2-pixel reflect translations
    assert [type(s) for s in airbench.steps] == [RandomCrop, HorizontalFlip]
    assert airbench.steps[0].padding == 2 and airbench.steps[0].pad_mode == "reflect"
    x = torch.rand(64, 3, 8, 8, generator=gen(1))
    out = airbench(x, gen(2))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    windows = [padded[:, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
    for i in range(64):  # each image is one of the 25 shifts of itself or of its mirror, with no zeros
        assert any(torch.equal(out[i], w[i]) or torch.equal(out[i], w[i].flip(-1)) for w in windows)
    inception = get_preset("inception")
    assert inception(torch.rand(4, 3, 40, 30), gen()).shape == (4, 3, 40, 30)
    alexnet = get_preset("alexnet", fake_dataset(size=256))
    assert alexnet(torch.rand(2, 3, 256, 256), gen()).shape == (2, 3, 224, 224)
    light = alexnet.steps[-1]
    eigval, _ = rgb_pca(fake_dataset(size=256).images)
    assert torch.allclose(light.eigval, eigval)  # the dataset's own PCA, not ImageNet's
    with pytest.raises(UnknownNameError, match="unknown augmentation preset 'cifar10'"):
        get_preset("cifar10")


def test_register_preset():
    from cnnlab.data import augment

    augment.register_preset("test-shift-3", lambda dataset: RandomShift(3))
    try:
        assert get_preset("test-shift-3").max_shift == 3
        with pytest.raises(ValueError, match="registered twice"):
            augment.register_preset("test-shift-3", lambda dataset: None)
    finally:
        del augment.PRESETS["test-shift-3"]
