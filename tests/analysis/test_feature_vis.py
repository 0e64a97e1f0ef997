"""Activation maximisation recovers what a unit is known to detect.

A first layer set by hand to four oriented-edge filters (0, 45, 90, 135 degrees): the image
that maximises each unit must be a pattern of that orientation, for a 28x28 grayscale input
and for an RGB one (with a colour basis). The dominant orientation is read with the structure
tensor; the image must also correlate best with its own filter, tiled.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.analysis.feature_vis import (
    Regularisers,
    channel_activation,
    colour_basis,
    maximize,
)
from cnnlab.errors import CnnlabError, UnknownNameError

ANGLES = (0.0, 45.0, 90.0, 135.0)  # gradient direction of each filter, degrees, y pointing down


def oriented_edge(theta_deg: float, size: int = 9, wavelength: float = 4.0) -> torch.Tensor:
    """A Gabor-like edge filter: a sinusoid varying along direction theta under a Gaussian."""
    r = torch.arange(size) - (size - 1) / 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    t = math.radians(theta_deg)
    u = x * math.cos(t) + y * math.sin(t)
    k = torch.sin(2 * math.pi * u / wavelength) * torch.exp(-(x**2 + y**2) / (2 * (size / 4) ** 2))
    return k / k.norm()


def edge_network(channels: int) -> nn.Module:
    conv = nn.Conv2d(channels, len(ANGLES), 9, bias=False)
    with torch.no_grad():
        for i, a in enumerate(ANGLES):
            conv.weight[i] = oriented_edge(a).expand(channels, -1, -1) / math.sqrt(channels)
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(len(ANGLES), 3))


def dominant_orientation(image: torch.Tensor) -> float:
    """Gradient orientation in degrees [0, 180) of a (C, H, W) image, from the structure tensor."""
    g = image.mean(0).numpy()
    gy, gx = np.gradient(g)
    return math.degrees(0.5 * math.atan2(2 * (gx * gy).sum(), (gx**2 - gy**2).sum())) % 180


def angle_gap(a: float, b: float) -> float:
    d = abs(a - b) % 180
    return min(d, 180 - d)


def tiled_correlation(image: torch.Tensor, kernel: torch.Tensor) -> float:
    """Largest normalised cross-correlation of the (mean-removed) image with the kernel."""
    g = image.mean(0, keepdim=True)[None]
    g = g - g.mean()
    k = kernel[None, None]
    num = F.conv2d(g, k)
    local = F.conv2d(g**2, torch.ones_like(k)).clamp(min=1e-8).sqrt()
    return float((num / (local * k.norm())).max())


@pytest.mark.parametrize("channels", [1, 3])
def test_maximising_image_of_an_edge_unit_has_the_filters_orientation(channels):
    torch.manual_seed(0)
    model = edge_network(channels)
    colour = None
    if channels == 3:  # correlated colour images, as a dataset has them
        base = torch.rand(64, 1, 8, 8)
        colour = colour_basis((torch.cat([base, 0.8 * base + 0.2 * torch.rand(64, 1, 8, 8), base ** 2], 1) * 255).to(torch.uint8))
    images = maximize(model, "1", range(len(ANGLES)), image_size=(channels, 28, 28), steps=48, colour=colour, seed=1)
    assert images.shape == (len(ANGLES), channels, 28, 28)
    assert images.min() >= 0 and images.max() <= 1
    for i, angle in enumerate(ANGLES):
        found = dominant_orientation(images[i])
        assert angle_gap(found, angle) < 15, (angle, found)
        corr = [tiled_correlation(images[i], oriented_edge(a)) for a in ANGLES]
        assert int(np.argmax(corr)) == i, (angle, corr)


def test_maximised_images_excite_their_units_more_than_noise():
    torch.manual_seed(0)
    model = edge_network(1)
    images = maximize(model, "0", [0, 2], image_size=(1, 28, 28), steps=24, mean=[0.5], std=[0.25], pad=2)
    prep = lambda x: (F.pad(x, (2, 2, 2, 2)) - 0.5) / 0.25  # noqa: E731
    got = channel_activation(model, "0", prep(images), [0, 2])
    noise = channel_activation(model, "0", prep(torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))), [0, 2])
    assert (got > 3 * noise.abs()).all(), (got, noise)


def test_colour_basis_is_a_square_root_of_the_colour_covariance():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(200, 1, 4, 4, generator=g)
    images = (torch.cat([base, 0.5 * base + 0.5 * torch.rand(200, 1, 4, 4, generator=g), torch.rand(200, 1, 4, 4, generator=g)], 1) * 255).to(torch.uint8)
    b = colour_basis(images)
    cov = torch.cov(images.permute(1, 0, 2, 3).reshape(3, -1).double() / 255).float()
    ratio = (b @ b.T) / cov
    assert torch.allclose(ratio, ratio[0, 0].expand(3, 3), rtol=1e-3)
    assert float(b.norm(dim=0).max()) == pytest.approx(1.0)


def test_regularisers_describe_themselves_and_pixel_mode_runs():
    reg = Regularisers(fourier=False, tv=0.1)
    assert "pixel parametrisation" in reg.describe() and "TV penalty 0.1" in reg.describe()
    out = maximize(edge_network(1), "0", [1], image_size=(1, 20, 20), steps=3, regularisers=reg)
    assert out.shape == (1, 1, 20, 20)


def test_bad_layer_and_channel_are_named():
    model = edge_network(1)
    with pytest.raises(UnknownNameError, match="no layer 'conv'"):
        maximize(model, "conv", [0], image_size=(1, 28, 28), steps=1)
    with pytest.raises(CnnlabError, match=r"channels \[7\] out of range: layer '0' has 4 channels"):
        maximize(model, "0", [7], image_size=(1, 28, 28), steps=1)
