"""Both views of a unit: the image that maximises it beside the dataset patches that excite it most.

The maximised images come from :func:`cnnlab.analysis.feature_vis.maximize`; the top-9 patches
from :func:`cnnlab.viz.patches.top_patches` (Zeiler & Fergus 2014). One block per channel: the
synthetic image on the left, its nine best dataset patches on the right, so a reader can check
whether the two views agree on what the unit detects.
"""

from __future__ import annotations

import math
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from cnnlab.viz.activations import show_image  # noqa: E402
from cnnlab.viz.patches import TopPatch  # noqa: E402


def plot_maximized(
    images: torch.Tensor,
    channels: Sequence[int],
    *,
    layer: str,
    patches: dict[int, list[TopPatch]] | None = None,
    activations: Sequence[float] | None = None,
    classes: Sequence[str] | None = None,
    settings: str = "",
    title: str | None = None,
    columns: int = 2,
) -> Figure:
    """``images`` (N, C, H, W) in [0, 1], one per entry of ``channels``; beside each, when
    ``patches`` has the channel, its top patches as a 3x3 grid labelled "class: activation".
    ``activations``: the maximised images' own activations, stated under them."""
    n = len(channels)
    if n == 0 or len(images) != n:
        raise ValueError(f"need one image per channel: {len(images)} images for {n} channels")
    per = max((len(patches.get(ch, [])) for ch in channels), default=0) if patches else 0
    side = math.ceil(math.sqrt(per)) if per else 0
    cols = min(n, columns if per else max(columns, 4))
    rows = math.ceil(n / cols)
    # inches: a patch cell, the gap, a label line, a block's heading, the margin, the synthetic image
    cell, gap, label, head, margin = 0.72, 0.06, 0.16, 0.32, 0.12
    grid_h = side * (cell + label) + max(side - 1, 0) * gap if side else 1.8
    big = min(grid_h, 2.4) if side else 1.8
    block_w = margin + big + (0.25 + side * cell + (side - 1) * gap if side else 0) + margin
    block_h = head + max(grid_h, big + label) + margin
    top = 0.95 if title else 0.75
    width = max(cols * block_w + (cols + 1) * margin, 7.0)
    height = rows * block_h + (rows + 1) * margin + top
    fig = plt.figure(figsize=(width, height))
    x_offset = (width - (cols * block_w + (cols + 1) * margin)) / 2
    for b, ch in enumerate(channels):
        r, c = divmod(b, cols)
        bx = x_offset + margin + c * (block_w + margin)
        by = height - top - margin - r * (block_h + margin)
        fig.patches.append(plt.Rectangle((bx / width, (by - block_h) / height), block_w / width, block_h / height,
                                         transform=fig.transFigure, facecolor="0.94", edgecolor="0.8", zorder=-1))
        fig.text((bx + block_w / 2) / width, (by - 0.05) / height, f"channel {ch}", ha="center", va="top",
                 fontsize=10, fontweight="bold")
        y_img = by - head - big
        ax = fig.add_axes(((bx + margin) / width, y_img / height, big / width, big / height))
        show_image(ax, images[b])
        caption = "maximised" + (f": {activations[b]:.2f}" if activations is not None else "")
        ax.set_xlabel(caption, fontsize=7, labelpad=2)
        for i, p in enumerate((patches or {}).get(ch, [])):
            pr, pc = divmod(i, side)
            x0 = bx + margin + big + 0.25 + pc * (cell + gap)
            y0 = by - head - label - pr * (cell + label + gap) - cell
            ax = fig.add_axes((x0 / width, y0 / height, cell / width, cell / height))
            show_image(ax, p.patch)
            name = classes[p.label] if classes else str(p.label)
            ax.set_title(f"{name}: {p.activation:.2f}", fontsize=6.5, pad=1.5)
    heading = f"{layer}: activation maximisation (Erhan et al. 2009)"
    if per:
        heading += f" beside the top-{per} dataset patches (Zeiler & Fergus 2014)"
    lines = [heading]
    if settings:
        lines.append(settings)
    lines.append("left: synthetic image: mean activation; right: patch label = image class: activation")
    text = "\n".join(lines)
    fig.suptitle(f"{title}\n{text}" if title else text, fontsize=9.5, y=1 - 0.08 / height, va="top")
    return fig
