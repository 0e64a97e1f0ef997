"""A grid of sample images from a dataset, labelled with their class names."""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def sample_indices(labels: torch.Tensor, num_classes: int, per_class: int, *, seed: int = 0) -> torch.Tensor:
    """Up to ``per_class`` random (seeded) indices of each class, class by class."""
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(num_classes):
        idx = (labels == c).nonzero().view(-1)
        picks.append(idx[torch.randperm(len(idx), generator=g)[:per_class]].sort().values)
    return torch.cat(picks) if picks else torch.zeros(0, dtype=torch.int64)


def plot_sample_grid(
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: Sequence[str],
    *,
    per_class: int = 8,
    max_classes: int = 20,
    seed: int = 0,
    title: str | None = None,
) -> Figure:
    """One row per class (the first ``max_classes``), ``per_class`` random images each, the
    class name at the start of the row. ``images``: uint8 (N, C, H, W)."""
    n_rows = min(len(classes), max_classes)
    pick = sample_indices(labels, n_rows, per_class, seed=seed)
    h, w = images.shape[-2:]
    cell = 1.1 if max(h, w) <= 64 else 1.6
    fig, axes = plt.subplots(
        n_rows, per_class, figsize=(per_class * cell + 1.4, n_rows * cell + 0.6), squeeze=False,
        gridspec_kw={"wspace": 0.05, "hspace": 0.08},
    )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    col = {c: 0 for c in range(n_rows)}
    for i in pick.tolist():
        c = int(labels[i])
        ax = axes[c, col[c]]
        col[c] += 1
        img = images[i]
        if img.shape[0] == 1:
            ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:
            ax.imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest" if max(h, w) <= 64 else "antialiased")
    for c in range(n_rows):
        axes[c, 0].set_ylabel(classes[c], rotation=0, ha="right", va="center", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.subplots_adjust(left=0.16 if per_class <= 8 else 0.1, right=0.99, top=0.95 if title else 0.99, bottom=0.01)
    return fig
