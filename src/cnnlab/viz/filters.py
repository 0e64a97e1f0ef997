"""The first convolution layer's kernels as images: what the network looks for in pixels.

As in Krizhevsky, Sutskever, Hinton 2012 (AlexNet, Fig. 3: "96 convolutional kernels of
size 11x11x3 learned by the first convolutional layer") and Zeiler & Fergus 2014 ("Visualizing
and Understanding Convolutional Networks", Fig. 6, https://arxiv.org/abs/1311.2901): each
kernel is drawn as a small picture, in colour when it reads RGB input, in grayscale when it
reads one channel. Each kernel is scaled to [0, 1] by its own minimum and maximum, so weak
kernels stay visible; its weight range is printed under it, since the scaling hides it.
Kernels of layers with another number of input channels are drawn as the mean over those
channels (labelled so).
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from cnnlab.viz.activations import normalise_each  # noqa: E402


def plot_filters(weight: torch.Tensor, *, layer: str = "first conv", title: str | None = None, max_kernels: int = 96) -> Figure:
    """Grid of the kernels of a convolution weight (out, in, kh, kw), each normalised for
    display, numbered and labelled with its weight range. Draws at most ``max_kernels``."""
    if weight.ndim != 4:
        raise ValueError(f"expected a convolution weight (out, in, kh, kw), got shape {tuple(weight.shape)}")
    out_ch, in_ch, kh, kw = weight.shape
    n = min(out_ch, max_kernels)
    w = weight[:n].detach().float().cpu()
    colour = in_ch == 3
    shown = w if in_ch in (1, 3) else w.mean(1, keepdim=True)
    pictures = normalise_each(shown.numpy())  # (n, c, kh, kw) in [0, 1]
    cols = min(n, 12 if n > 48 else 8 if n > 16 else max(3, math.ceil(math.sqrt(n))))
    rows = math.ceil(n / cols)
    cell = 1.25
    # at least 6.5 inches wide so that the two-line heading fits above a handful of kernels
    fig, axes = plt.subplots(rows, cols, figsize=(max(6.5, cols * cell + 0.4), rows * (cell + 0.25) + 1.1), squeeze=False,
                             constrained_layout=True)
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in enumerate(axes.flat[:n]):
        if colour:
            ax.imshow(pictures[i].transpose(1, 2, 0), interpolation="nearest")
        else:
            ax.imshow(pictures[i, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        lo, hi = float(w[i].min()), float(w[i].max())
        ax.set_title(f"#{i}", fontsize=9, pad=2)
        ax.text(0.5, -0.04, f"[{lo:.2f}, {hi:.2f}]", transform=ax.transAxes, ha="center", va="top", fontsize=7,
                color="0.3")
    what = "RGB" if colour else "grayscale" if in_ch == 1 else f"mean over {in_ch} input channels"
    shown_text = f"{n} of {out_ch}" if n < out_ch else f"{out_ch}"
    heading = (f"{layer}: {shown_text} kernels of {kh}x{kw}x{in_ch} ({what})\n"
               "each scaled to its own min..max; weight range below it")
    fig.suptitle(f"{title}\n{heading}" if title else heading, fontsize=11)
    return fig
