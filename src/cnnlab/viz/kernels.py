"""Hand-designed kernels applied to an image: what a convolution layer computes, before learning.

The lectures' two examples: a 5x5 box blur (every weight 1/25 = 0.04, so a constant image
stays constant) and a Laplacian-style edge detector [[0, -1/4, 0], [-1/4, 1, -1/4],
[0, -1/4, 0]] (weights summing to 0, so flat regions give 0 and only changes respond).

Like a CNN layer, :func:`apply_kernel` computes a cross-correlation (the kernel is not
flipped; for the symmetric kernels above that is the same as a convolution) with zero
padding, so the output has the input's size and the border shows the padding's effect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from cnnlab.data.image import decode_image  # noqa: E402

BLUR_5X5 = torch.full((5, 5), 0.04)  # box blur: the mean of a 5x5 neighbourhood
EDGE_3X3 = torch.tensor([[0.0, -0.25, 0.0], [-0.25, 1.0, -0.25], [0.0, -0.25, 0.0]])  # centre minus mean of 4 neighbours

DEFAULT_KERNELS: tuple[tuple[str, torch.Tensor], ...] = (("blur 5x5 (all 0.04)", BLUR_5X5), ("edge detector", EDGE_3X3))


def parse_kernel(text: str) -> torch.Tensor:
    """``"1,0,-1;2,0,-2;1,0,-1"`` (rows separated by ';', values by ',' or spaces) -> a
    (3, 3) tensor. Values may be fractions such as ``1/9``."""
    rows = []
    for row in text.split(";"):
        if not row.strip():
            continue
        values = []
        for item in row.replace(",", " ").split():
            try:
                if "/" in item:
                    num, den = item.split("/")
                    values.append(float(num) / float(den))
                else:
                    values.append(float(item))
            except (ValueError, ZeroDivisionError):
                raise ValueError(f"bad kernel value {item!r} in {text!r}; expected numbers such as 1, -0.25 or 1/9") from None
        rows.append(values)
    if not rows or len({len(r) for r in rows}) != 1:
        raise ValueError(f"bad kernel {text!r}: expected rows of equal length separated by ';', e.g. \"1,0,-1;2,0,-2;1,0,-1\"")
    return torch.tensor(rows, dtype=torch.float32)


def load_gray(path: str | Path, *, max_side: int = 256) -> torch.Tensor:
    """An image file as a (H, W) float tensor in [0, 1] (luminance), shrunk so that its longer
    side is at most ``max_side`` pixels (kernels are a few pixels wide: a huge photo would
    show no visible effect). Decoding and conversion are the data package's image policy."""
    img = decode_image(path, channels=1)
    if max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)


def chosen_kernels(texts: Sequence[str] = (), *, defaults: bool = True) -> list[tuple[str, torch.Tensor]]:
    """The kernels to apply, as (label, kernel): the two defaults (unless ``defaults=False``),
    then each of ``texts`` parsed by :func:`parse_kernel`."""
    chosen = list(DEFAULT_KERNELS) if defaults else []
    for i, text in enumerate(texts, start=1):
        chosen.append((f"kernel {i}" if len(texts) > 1 else "your kernel", parse_kernel(text)))
    if not chosen:
        raise ValueError("no kernels: give a kernel or keep the defaults")
    return chosen


def apply_kernel(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Cross-correlate a (H, W) image with a (kh, kw) kernel, zero padding, stride 1: output
    (H, W) (for even kernel sizes the extra padding goes on the bottom and right)."""
    if image.ndim != 2 or kernel.ndim != 2:
        raise ValueError(f"need a (H, W) image and a (kh, kw) kernel, got {tuple(image.shape)} and {tuple(kernel.shape)}")
    kh, kw = kernel.shape
    x = F.pad(image.float()[None, None], ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2))
    return F.conv2d(x, kernel.float()[None, None])[0, 0]


def _kernel_label(kernel: torch.Tensor) -> str:
    return f"{kernel.shape[0]}x{kernel.shape[1]}, sum {float(kernel.sum()):.3g}"


def plot_kernels(
    image: torch.Tensor, kernels: Sequence[tuple[str, torch.Tensor]] = DEFAULT_KERNELS, *, title: str | None = None
) -> Figure:
    """Top row: the input and each filtered output, each with its colour bar. Bottom row:
    each kernel's weights, written in its cells. ``image``: (H, W) in [0, 1]."""
    if not kernels:
        raise ValueError("need at least one kernel")
    n = len(kernels) + 1
    h, w = image.shape
    aspect = h / w
    fig, axes = plt.subplots(2, n, figsize=(3.9 * n, 3.6 * aspect + 2.6), squeeze=False, constrained_layout=True,
                             gridspec_kw={"height_ratios": [3 * aspect, 1.5]})
    shown = axes[0, 0].imshow(image.numpy(), cmap="gray", vmin=0, vmax=1)
    axes[0, 0].set_title(f"input ({h}x{w} pixels, grayscale)")
    fig.colorbar(shown, ax=axes[0, 0], shrink=0.8, label="intensity")
    axes[1, 0].axis("off")
    axes[1, 0].text(0.5, 0.5, "kernels below their outputs\n(cross-correlation,\nzero padding, stride 1)",
                    ha="center", va="center", fontsize=10, transform=axes[1, 0].transAxes)
    for col, (name, kernel) in enumerate(kernels, start=1):
        out = apply_kernel(image, kernel).numpy()
        signed = out.min() < -1e-6  # an edge detector's output has both signs: centre it on 0
        if signed:
            # Colours clipped at the 99th percentile of |response|: edges are thin, and a few
            # extreme pixels would otherwise wash every other edge out to white.
            limit = float(np.percentile(np.abs(out), 99)) or float(np.abs(out).max()) or 1.0
            shown = axes[0, col].imshow(out, cmap="RdBu_r", vmin=-limit, vmax=limit)
        else:
            shown = axes[0, col].imshow(out, cmap="gray")
        axes[0, col].set_title(f"{name}\noutput, range [{out.min():.2f}, {out.max():.2f}]", fontsize=10)
        extend = "both" if signed and limit < np.abs(out).max() else "neither"
        fig.colorbar(shown, ax=axes[0, col], shrink=0.8, label="response", extend=extend)
        _draw_kernel(axes[1, col], kernel, f"kernel: {_kernel_label(kernel)}")
    for ax in axes[0]:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return fig


def _draw_kernel(ax, kernel: torch.Tensor, title: str) -> None:
    k = kernel.numpy()
    limit = float(np.abs(k).max()) or 1.0
    ax.imshow(k, cmap="RdBu_r", vmin=-limit, vmax=limit)
    if k.shape[0] * k.shape[1] <= 81:  # write the weights while they fit
        for (i, j), v in np.ndenumerate(k):
            ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=9 if max(k.shape) <= 5 else 7,
                    color="white" if abs(v) > 0.6 * limit else "black")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
