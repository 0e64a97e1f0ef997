"""A drawing prepared the way MNIST digits were.

LeCun, Cortes & Burges, "The MNIST database of handwritten digits"
(http://yann.lecun.com/exdb/mnist/): the NIST digits were "size normalized to fit in a 20x20
pixel box while preserving their aspect ratio" (the anti-aliasing of that step leaves grey
levels) and then "centered in a 28x28 image by computing the center of mass of the pixels,
and translating the image so as to position this point at the center of the 28x28 field".
:func:`prepare_digit` does exactly that to a stroke drawn on a canvas, so a digit drawn large
in a corner reaches the network looking like the digits it was trained on.

Uploaded files (photos, or the canvas's PNG) are decoded by the one image policy,
:func:`cnnlab.data.image.decode_upload`; this module only reshapes the ink.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from cnnlab.errors import DataError

__all__ = ["DIGIT_BOX", "DIGIT_FIELD", "centre_of_mass", "prepare_digit"]

DIGIT_BOX = 20  # MNIST: the digit's bounding box is scaled to fit 20x20 ...
DIGIT_FIELD = 28  # ... and placed, centred by centre of mass, in 28x28


def centre_of_mass(ink: np.ndarray) -> tuple[float, float]:
    """(row, column) of the intensity-weighted mean position of a 2-D array, in pixel indices."""
    total = float(ink.sum())
    if total <= 0:
        raise DataError("the drawing is empty: no ink to centre")
    rows = np.arange(ink.shape[0], dtype=np.float64)
    cols = np.arange(ink.shape[1], dtype=np.float64)
    return float((ink.sum(1) * rows).sum() / total), float((ink.sum(0) * cols).sum() / total)


def prepare_digit(ink: np.ndarray | torch.Tensor, *, box: int = DIGIT_BOX, size: int = DIGIT_FIELD) -> torch.Tensor:
    """A drawing -> a uint8 (1, size, size) digit prepared as MNIST's were.

    ``ink``: (H, W) uint8 with the strokes bright on a dark background (0 = no ink). The
    bounding box of the ink is scaled, keeping its aspect ratio, so its longer side is
    ``box`` pixels (bilinear with antialiasing, which leaves grey levels as the original
    normalisation did), then pasted into a ``size`` x ``size`` field so that its centre of
    mass falls on the field's centre, translated by whole pixels. An empty drawing raises
    DataError.
    """
    array = ink.numpy() if isinstance(ink, torch.Tensor) else np.asarray(ink)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or array.dtype != np.uint8:
        raise DataError(f"a drawing must be a (H, W) uint8 array, got {array.dtype} {tuple(array.shape)}")
    if not 1 <= box <= size:
        raise DataError(f"box must be between 1 and size ({size}), got {box}")
    ys, xs = np.nonzero(array)
    if len(ys) == 0:
        raise DataError("the drawing is empty: no ink to centre")
    crop = array[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape
    scale = box / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    scaled = np.asarray(Image.fromarray(crop, "L").resize((nw, nh), Image.Resampling.BILINEAR))
    cy, cx = centre_of_mass(scaled.astype(np.float64))
    middle = (size - 1) / 2  # the field's centre in pixel indices (13.5 for 28)
    top, left = int(round(middle - cy)), int(round(middle - cx))
    out = np.zeros((size, size), dtype=np.uint8)
    # Paste with clipping: a lopsided stroke (an "L") can have its centre of mass so far from
    # its box's centre that part of the box leaves the field; MNIST's digits clip the same way.
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + nh, size), min(left + nw, size)
    out[y0:y1, x0:x1] = scaled[y0 - top : y1 - top, x0 - left : x1 - left]
    return torch.from_numpy(out).unsqueeze(0)
