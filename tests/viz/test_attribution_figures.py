"""The explanation figures: attribution (image, heat map over it, top classes), HoG, feature
visualisation. Checked by what they state (titles, colour-bar units, bars) and by geometry."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.analysis.attribution import attribute
from cnnlab.analysis.hog import HogParams, cell_votes
from cnnlab.viz.attribution import UNITS, plot_attribution
from cnnlab.viz.feature_vis import plot_maximized
from cnnlab.viz.hog import hog_segments, plot_hog
from cnnlab.viz.patches import TopPatch

CLASSES = ["zero", "one", "two"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3)).eval()


def texts(fig) -> str:
    parts = [t.get_text() for t in fig.texts] + ([fig._suptitle.get_text()] if fig._suptitle else [])
    for ax in fig.axes:
        parts += [ax.get_title(), ax.get_ylabel(), ax.get_xlabel()] + [t.get_text() for t in ax.get_yticklabels()]
    return "\n".join(parts)


@pytest.mark.parametrize("method", ["gradcam", "saliency", "integrated-gradients", "occlusion"])
def test_attribution_figure_states_method_class_and_units(model, method):
    image = torch.randint(0, 256, (1, 16, 16), dtype=torch.uint8)
    x = image[None].float() / 255
    result = attribute(model, x, method, target=2, window=4, stride=2, steps=4)
    fig = plot_attribution(image, result, classes=CLASSES, title="tiny model")
    words = texts(fig)
    assert "tiny model" in words and result.describe() in words
    assert f"Why class 'two' (p = {float(result.probabilities[2]):.3f})" in words
    assert UNITS[method] in words  # the colour bar's label
    (top,) = [ax for ax in fig.axes if ax.get_title() == "top 3 classes"]
    bars = top.patches  # the explained class in red
    assert len(bars) == 3
    red = [b for b in bars if b.get_facecolor()[:3] == pytest.approx((0.839, 0.153, 0.157), abs=0.01)]
    assert len(red) == 1 and red[0].get_width() == pytest.approx(float(result.probabilities[2]))
    plt.close(fig)


def test_attribution_figure_refuses_an_image_of_another_size(model):
    result = attribute(model, torch.rand(1, 1, 16, 16), "saliency")
    with pytest.raises(ValueError, match="as the model saw it"):
        plot_attribution(torch.zeros(1, 12, 12, dtype=torch.uint8), result)


def test_hog_segments_run_along_the_edge():
    # A vertical edge has a horizontal gradient (bin 0): its segments must be near-vertical.
    image = np.zeros((16, 16), np.uint8)
    image[:, 8:] = 255
    votes = cell_votes(image, HogParams(cell=4))
    assert int(np.argmax(votes.sum(axis=(0, 1)))) == 0
    segments, strengths = hog_segments(votes, 4)
    strongest = segments[np.argmax(strengths)]
    dx, dy = strongest[1] - strongest[0]
    assert abs(math.degrees(math.atan2(abs(dx), abs(dy)))) < 15  # within 15 degrees of vertical
    fig = plot_hog(torch.from_numpy(image)[None], HogParams(cell=4))
    assert "4x4-pixel cells" in texts(fig) and f"{3 * 3 * 4 * 9:,} numbers" in texts(fig)
    plt.close(fig)


def test_maximised_images_sit_beside_their_patches():
    images = torch.rand(2, 1, 12, 12)
    patch = lambda ch, i: TopPatch(ch, 9.0 - i, i, i % 3, (0, 0), torch.rand(1, 6, 6))  # noqa: E731
    patches = {3: [patch(3, i) for i in range(9)], 5: [patch(5, i) for i in range(9)]}
    fig = plot_maximized(images, [3, 5], layer="features.c3", patches=patches, activations=[1.5, 2.5], classes=CLASSES,
                         settings="64 steps")
    words = texts(fig)
    assert "channel 3" in words and "channel 5" in words and "maximised: 2.50" in words
    assert "top-9 dataset patches" in words and "64 steps" in words and "one: 8.00" in words
    assert len(fig.axes) == 2 * (1 + 9)
    plt.close(fig)
    fig = plot_maximized(images, [3, 5], layer="features.c3")
    assert len(fig.axes) == 2 and "patches" not in fig._suptitle.get_text().split("\n")[0]
    plt.close(fig)
