"""HoG: the feature length formula, the rendering, and orientations read off simple edges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab.analysis.hog import (
    HogParams,
    cell_histograms,
    hog_batch,
    hog_dimension,
    hog_features,
    hog_image,
)
from cnnlab.errors import CnnlabError


@pytest.mark.parametrize("size, params, expected", [
    ((28, 28), HogParams(cell=4), 6 * 6 * 2 * 2 * 9),  # 7x7 cells -> 6x6 blocks of 2x2 cells
    ((32, 32), HogParams(cell=4), 7 * 7 * 4 * 9),
    ((128, 64), HogParams(), 15 * 7 * 4 * 9),  # Dalal & Triggs's person window: 3,780
    ((64, 64), HogParams(cell=8, block=3, orientations=12), 6 * 6 * 9 * 12),
])
def test_feature_dimension_is_the_formula(size, params, expected):
    assert hog_dimension(size, params) == expected
    image = torch.randint(0, 256, (1, *size), dtype=torch.uint8)
    assert hog_features(image, params).shape == (expected,)
    assert hog_features(torch.randint(0, 256, (3, *size), dtype=torch.uint8), params).shape == (expected,)


def test_dalal_triggs_window_has_3780_numbers():
    assert hog_dimension((128, 64)) == 3780  # the paper's 64x128 detection window


def test_rendering_has_the_image_shape():
    image = torch.randint(0, 256, (3, 40, 24), dtype=torch.uint8)
    assert hog_image(image, HogParams(cell=4)).shape == (40, 24)


def vertical_edge(size: int = 32) -> np.ndarray:
    image = np.zeros((size, size), np.uint8)
    image[:, size // 2:] = 255
    return image


def test_a_vertical_edge_votes_into_the_horizontal_gradient_bin():
    # Intensity changes along x only: gradient direction 0 degrees = bin 0 of [0, 20) degrees.
    votes = cell_histograms(vertical_edge(), HogParams(cell=4)).sum(axis=(0, 1, 2, 3))
    assert int(np.argmax(votes)) == 0 and votes[0] > 0.99 * votes.sum()
    # Its transpose, a horizontal edge: 90 degrees = bin 4 of [80, 100).
    votes = cell_histograms(vertical_edge().T.copy(), HogParams(cell=4)).sum(axis=(0, 1, 2, 3))
    assert int(np.argmax(votes)) == 4


def test_vertical_edge_rendering_draws_vertical_strokes():
    # The rendering draws each bin along the edge, i.e. perpendicular to the gradient: a
    # vertical line where the edge is.
    r = hog_image(vertical_edge(), HogParams(cell=4))
    column_energy = r.sum(axis=0)
    assert abs(int(np.argmax(column_energy)) - 16) <= 3
    assert r[:, 12:20].sum() > 0.9 * r.sum()


def test_batch_matches_single_images_and_too_small_images_fail():
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    batch = hog_batch(images, HogParams(cell=4))
    assert np.allclose(batch[1], hog_features(images[1], HogParams(cell=4)))
    with pytest.raises(CnnlabError, match="fewer than one 2x2-cell block"):
        hog_features(torch.zeros(1, 12, 12, dtype=torch.uint8), HogParams(cell=8))
