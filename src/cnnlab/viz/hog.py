"""The lecture's HoG figure: an image next to its histogram-of-oriented-gradients rendering.

The rendering is drawn as vector line segments, so it stays readable for 4-pixel cells of a
28x28 digit: in every cell one segment per orientation bin, through the cell's centre, along
the edge direction (perpendicular to the bin's gradient direction), as opaque as the cell's
block-normalised vote (:func:`cnnlab.analysis.hog.cell_votes`: what the classifier sees).
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from cnnlab.analysis.hog import HogParams, cell_votes, hog_dimension  # noqa: E402
from cnnlab.viz.activations import show_image  # noqa: E402


def hog_segments(votes: np.ndarray, cell: int) -> tuple[np.ndarray, np.ndarray]:
    """Line segments ((N, 2, 2) in pixel coordinates, y down) and their strengths (N,) for
    per-cell votes (cells_y, cells_x, orientations)."""
    cy, cx, n = votes.shape
    segments, strengths = [], []
    half = 0.45 * cell
    for b in range(n):
        theta = math.radians((b + 0.5) * 180 / n)  # the bin's gradient direction (centre of the bin)
        ex, ey = -math.sin(theta), math.cos(theta)  # the edge runs perpendicular to the gradient
        for i in range(cy):
            for j in range(cx):
                x0, y0 = j * cell + (cell - 1) / 2, i * cell + (cell - 1) / 2
                segments.append([[x0 - half * ex, y0 - half * ey], [x0 + half * ex, y0 + half * ey]])
                strengths.append(votes[i, j, b])
    return np.array(segments), np.array(strengths)


def plot_hog(image: torch.Tensor, params: HogParams = HogParams(), *, title: str | None = None) -> Figure:
    """``image`` (C, H, W) uint8 on the left; on the right its HoG cells, each a star of
    segments along the edge directions, brighter for stronger (block-normalised) votes."""
    h, w = image.shape[-2:]
    votes = cell_votes(image, params)
    segments, strengths = hog_segments(votes, params.cell)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
    show_image(axes[0], image)
    axes[0].set_title(f"image ({w}x{h} pixels)", fontsize=10)
    ax = axes[1]
    ax.set_facecolor("black")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)  # y down, as the image
    ax.set_aspect("equal")
    top = max(float(strengths.max()), 1e-12)
    colours = np.ones((len(strengths), 4))
    colours[:, 3] = np.clip(strengths / top, 0, 1)
    ax.add_collection(LineCollection(segments, colors=colours, linewidths=max(0.6, 40 / max(h // params.cell, 1) / 4)))
    for x in range(params.cell, w, params.cell):
        ax.axvline(x - 0.5, color="tab:blue", lw=0.4, alpha=0.4)
    for y in range(params.cell, h, params.cell):
        ax.axhline(y - 0.5, color="tab:blue", lw=0.4, alpha=0.4)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"HoG: {h // params.cell}x{w // params.cell} cells (blue grid), one segment per bin along the edge",
                 fontsize=9.5)
    heading = (f"Histogram of oriented gradients (Dalal & Triggs 2005): {params.describe()}\n"
               f"feature vector: {hog_dimension((h, w), params):,} numbers")
    fig.suptitle(f"{title}\n{heading}" if title else heading, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return fig
