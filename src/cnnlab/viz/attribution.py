"""Attribution figures: the image, its heat map laid over it, and the top classes.

The maps come from :mod:`cnnlab.analysis.attribution`. Non-negative maps (Grad-CAM, saliency:
scaled to max 1) are drawn with a sequential colour map from transparent-looking dark blue to
red; signed maps (integrated gradients in logit units, occlusion's probability drop) with a
diverging map centred on 0, so red always means "speaks for the class" and blue "against".
"""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize, TwoSlopeNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from cnnlab.analysis.attribution import Attribution  # noqa: E402
from cnnlab.viz.activations import show_image  # noqa: E402

# Overlay opacity: a non-negative map tints the whole image (0.25) and covers it where it is
# strong (0.75); a signed map is transparent at 0 so the image shows where nothing is attributed.
OVERLAY_FLOOR, OVERLAY_TOP = 0.25, 0.75

SHORT = {"gradcam": "Grad-CAM", "saliency": "saliency", "integrated-gradients": "integrated gradients",
         "occlusion": "occlusion"}
UNITS = {  # colour-bar label per method
    "gradcam": "Grad-CAM (ReLU of weighted maps, max = 1)",
    "saliency": "|d score / d pixel| (max = 1)",
    "integrated-gradients": "attribution (logit units; red: for the class)",
    "occlusion": "drop in p(class) when covered",
}


def _gray(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) uint8 or [0, 1] float -> (H, W) luminance in [0, 1] for the overlay's backdrop."""
    img = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
    img = img.clamp(0, 1)
    if img.shape[0] == 3:
        img = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]
    return img[0].numpy()


def _colour_scale(heat: np.ndarray, signed: bool) -> tuple[str, Normalize]:
    if signed:
        span = float(np.abs(heat).max()) or 1.0
        return "RdBu_r", TwoSlopeNorm(vcenter=0.0, vmin=-span, vmax=span)
    return "jet", Normalize(vmin=0.0, vmax=max(float(heat.max()), 1e-12))


def _overlay(heat: np.ndarray, cmap: str, norm: Normalize, signed: bool) -> np.ndarray:
    """(H, W, 4) RGBA heat map whose opacity grows with the map's magnitude."""
    rgba = matplotlib.colormaps[cmap](norm(heat))
    strength = np.abs(heat) / max(float(np.abs(heat).max()), 1e-12)
    rgba[..., 3] = OVERLAY_TOP * np.sqrt(strength) if signed else OVERLAY_FLOOR + (OVERLAY_TOP - OVERLAY_FLOOR) * strength
    return rgba


def plot_attribution(
    image: torch.Tensor,
    result: Attribution,
    *,
    classes: Sequence[str] | None = None,
    title: str | None = None,
    top: int = 5,
) -> Figure:
    """Three panels: ``image`` (C, H, W) as the model saw it (the map's size), the heat map over
    a grayscale copy with a labelled colour bar, and the ``top`` classes' probabilities (the
    explained class in red). The heading names the method, its settings and the class."""
    heat = result.heatmap.detach().float().cpu().numpy()
    if tuple(image.shape[-2:]) != heat.shape:
        raise ValueError(f"image is {tuple(image.shape[-2:])} but the heat map is {heat.shape}; "
                         "pass the image as the model saw it (after the run's padding)")
    name = (lambda i: classes[i] if classes else str(i))
    fig = plt.figure(figsize=(12.5, 4.4))
    grid = fig.add_gridspec(1, 3, width_ratios=[1, 1.22, 1.1], wspace=0.28, left=0.02, right=0.98, top=0.80, bottom=0.1)

    ax = fig.add_subplot(grid[0])
    show_image(ax, image)
    ax.set_title("input", fontsize=10)

    ax = fig.add_subplot(grid[1])
    ax.imshow(_gray(image), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    cmap, norm = _colour_scale(heat, result.signed)
    ax.imshow(_overlay(heat, cmap, norm, result.signed), interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(SHORT[result.method] + (" (red: for the class, blue: against)" if result.signed else " over the input"),
                 fontsize=9.5)
    # The bar shows the colour map at full strength (the overlay is translucent).
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(UNITS[result.method], fontsize=8)
    bar.ax.tick_params(labelsize=7)

    ax = fig.add_subplot(grid[2])
    probs = result.probabilities
    k = min(top, len(probs))
    values, indices = probs.topk(k)
    labels = [name(int(i)) for i in indices]
    colours = ["tab:red" if int(i) == result.target else "0.6" for i in indices]
    ax.barh(range(k)[::-1], values.numpy(), color=colours)
    ax.set_yticks(range(k)[::-1], labels, fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    for y, v in zip(range(k)[::-1], values.tolist()):
        ax.text(min(v + 0.02, 0.8), y, f"{v:.3f}", va="center", fontsize=8)
    ax.set_title(f"top {k} classes", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)

    p = float(probs[result.target])
    heading = f"Why class '{name(result.target)}' (p = {p:.3f}): {result.describe()}"
    fig.suptitle(f"{title}\n{heading}" if title else heading, fontsize=11)
    return fig
