"""Histograms of oriented gradients: the hand-designed feature of the pre-2012 pipeline.

Dalal & Triggs 2005, "Histograms of Oriented Gradients for Human Detection", CVPR
(https://doi.org/10.1109/CVPR.2005.177). The descriptor, as the paper builds it (Sec. 6):

1. gradients with the centred 1-D mask [-1, 0, 1] and no smoothing (Sec. 6.2 found smoothing
   hurts); for colour images the gradient of the channel with the largest magnitude;
2. each pixel votes its gradient magnitude into one of ``orientations`` bins spanning 0-180
   degrees ("unsigned" gradients; 9 bins was their best, Sec. 6.3), accumulated over
   ``cell`` x ``cell`` pixel cells (8 x 8 in the paper's 64 x 128 person window);
3. cells grouped into overlapping ``block`` x ``block`` blocks (2 x 2 cells, moved by one cell,
   so each cell appears in up to four blocks), each block's vector normalised with L2-Hys:
   L2 normalise, clip at 0.2, normalise again (Sec. 6.4);
4. the feature is all block vectors concatenated, fed to a linear SVM (Sec. 4).

The computation is scikit-image's ``skimage.feature.hog``; this module fixes the parameters by
name, states the feature dimension, and converts cnnlab's (C, H, W) uint8 tensors.

Deviations: skimage votes each pixel into its nearest spatial cell (the paper interpolates
trilinearly between neighbouring cells and bins) and applies no Gaussian window over a block.
For small images (MNIST 28 x 28, CIFAR 32 x 32) we use 4 x 4 cells: at 8 x 8 a 28 x 28 digit
would have only 3 x 3 cells (the lecture's figure uses the same).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from skimage.feature import hog as skimage_hog

from cnnlab.errors import CnnlabError


@dataclass(frozen=True)
class HogParams:
    """Dalal & Triggs's choices (Sec. 6), by name."""

    orientations: int = 9  # bins over 0-180 degrees (unsigned); Sec. 6.3, Fig. 4(b)
    cell: int = 8  # pixels per cell side; 8 x 8 in the paper's 64 x 128 window (Sec. 6.4)
    block: int = 2  # cells per block side; 2 x 2 blocks, one cell apart (Sec. 6.4, Fig. 4(c))
    block_norm: str = "L2-Hys"  # L2, clip at 0.2, renormalise (Sec. 6.4, Fig. 4(d))
    sqrt_gamma: bool = False  # square-root "gamma" of the pixels first (Sec. 6.1: a small gain)

    def describe(self) -> str:
        return (f"{self.orientations} orientations, {self.cell}x{self.cell}-pixel cells, "
                f"{self.block}x{self.block}-cell blocks, {self.block_norm}")


def hog_dimension(size: tuple[int, int], params: HogParams = HogParams()) -> int:
    """Length of the HoG vector of an image of ``size`` (H, W):
    blocks_y * blocks_x * block^2 * orientations, with cells = floor(side / cell) and
    blocks = cells - block + 1 per side (blocks move by one cell)."""
    cells = [s // params.cell for s in size]
    blocks = [c - params.block + 1 for c in cells]
    if min(blocks) < 1:
        raise CnnlabError(f"a {size[0]}x{size[1]} image has {cells[0]}x{cells[1]} cells of {params.cell} pixels, "
                          f"fewer than one {params.block}x{params.block}-cell block; use smaller cells")
    return blocks[0] * blocks[1] * params.block**2 * params.orientations


def _as_array(image: torch.Tensor | np.ndarray) -> tuple[np.ndarray, int | None]:
    """(C, H, W) tensor, uint8 or float in [0, 1], or (H, W) -> float array in [0, 1] and its channel axis."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        image = (image.float() / 255.0 if image.dtype == torch.uint8 else image.float()).numpy()
    else:
        image = image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
    if image.ndim == 2:
        return image, None
    if image.ndim == 3 and image.shape[0] == 1:
        return image[0], None
    if image.ndim == 3 and image.shape[0] == 3:
        return np.moveaxis(image, 0, -1), -1  # skimage wants channels last
    raise CnnlabError(f"HoG takes an (H, W), (1, H, W) or (3, H, W) image, got shape {tuple(image.shape)}")


def _hog(image, params: HogParams, visualize: bool):
    array, channel_axis = _as_array(image)
    hog_dimension(array.shape[:2], params)  # a clear error for too-small images
    return skimage_hog(
        array, orientations=params.orientations, pixels_per_cell=(params.cell, params.cell),
        cells_per_block=(params.block, params.block), block_norm=params.block_norm, visualize=visualize,
        transform_sqrt=params.sqrt_gamma, feature_vector=True, channel_axis=channel_axis,
    )


def hog_features(image: torch.Tensor | np.ndarray, params: HogParams = HogParams()) -> np.ndarray:
    """The HoG vector (float32, length :func:`hog_dimension`) of one image."""
    return _hog(image, params, False).astype(np.float32)


def hog_batch(images: torch.Tensor, params: HogParams = HogParams()) -> np.ndarray:
    """HoG vectors (N, D) float32 of uint8 images (N, C, H, W)."""
    if images.ndim != 4:
        raise CnnlabError(f"expected a batch (N, C, H, W), got shape {tuple(images.shape)}")
    out = np.empty((len(images), hog_dimension(tuple(images.shape[-2:]), params)), dtype=np.float32)
    for i, image in enumerate(images):
        out[i] = hog_features(image, params)
    return out


def hog_image(image: torch.Tensor | np.ndarray, params: HogParams = HogParams()) -> np.ndarray:
    """scikit-image's rendering (H, W) of the cell histograms: in every cell a star of line
    segments, one per orientation bin, each as bright as that bin's (unnormalised) vote and
    drawn perpendicular to the gradient, i.e. along the edge."""
    _, rendering = _hog(image, params, True)
    return rendering


def cell_histograms(image: torch.Tensor | np.ndarray, params: HogParams = HogParams()) -> np.ndarray:
    """The block-normalised histograms reshaped to (blocks_y, blocks_x, block, block, orientations);
    bin b covers orientations [180 b / n, 180 (b + 1) / n) degrees of the gradient."""
    array, _ = _as_array(image)
    cells = [s // params.cell for s in array.shape[:2]]
    shape = (cells[0] - params.block + 1, cells[1] - params.block + 1, params.block, params.block, params.orientations)
    return hog_features(image, params).reshape(shape)


def cell_votes(image: torch.Tensor | np.ndarray, params: HogParams = HogParams()) -> np.ndarray:
    """What the feature vector says about each cell: (cells_y, cells_x, orientations), the mean
    of the cell's block-normalised histograms over every block that holds it (cells past the
    last full block are left 0). The figure draws these, so it shows what the classifier sees."""
    blocks = cell_histograms(image, params)
    by, bx, b = blocks.shape[0], blocks.shape[1], params.block
    votes = np.zeros((by + b - 1, bx + b - 1, params.orientations))
    count = np.zeros((by + b - 1, bx + b - 1, 1))
    for dy in range(b):
        for dx in range(b):
            votes[dy:dy + by, dx:dx + bx] += blocks[:, :, dy, dx]
            count[dy:dy + by, dx:dx + bx] += 1
    return votes / np.maximum(count, 1)
