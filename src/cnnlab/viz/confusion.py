"""The confusion matrix as a heat map: rows are the true classes, columns the predictions.

Colours show each row normalised to the fraction of that class's images (so a rare class
reads like a common one), the cells show the counts, and the colour bar the fractions.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def plot_confusion(
    confusion: torch.Tensor | Sequence[Sequence[int]],
    classes: Sequence[str],
    *,
    title: str | None = None,
    annotate: bool | None = None,
) -> Figure:
    """Heat map of a (true, predicted) count matrix with class names on both axes.

    ``annotate``: write the count in every cell (default: when there are at most 30 classes;
    beyond that the numbers would not fit and only the colours are drawn)."""
    counts = torch.as_tensor(confusion, dtype=torch.float64)
    n = len(classes)
    if counts.shape != (n, n):
        raise ValueError(f"confusion matrix of shape {tuple(counts.shape)} does not match {n} class names")
    totals = counts.sum(1, keepdim=True)
    fractions = counts / totals.clamp(min=1)
    annotate = n <= 30 if annotate is None else annotate
    side = min(max(4.5, 0.55 * n + 2.5), 24)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(fractions.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    bar.set_label("fraction of the true class")
    ax.set_xticks(range(n), labels=list(classes), rotation=45 if n > 5 else 0, ha="right" if n > 5 else "center",
                  fontsize=9 if n <= 30 else 5)
    ax.set_yticks(range(n), labels=[f"{c} ({int(t)})" for c, t in zip(classes, totals.view(-1))], fontsize=9 if n <= 30 else 5)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (images)")
    if annotate:
        for i in range(n):
            for j in range(n):
                value = int(counts[i, j])
                if value == 0:
                    continue
                dark = fractions[i, j] > 0.5  # white text on dark cells
                ax.text(j, i, str(value), ha="center", va="center", fontsize=8 if n <= 12 else 6,
                        color="white" if dark else "black", fontweight="bold" if i == j else "normal")
    accuracy = float(counts.diag().sum() / counts.sum().clamp(min=1))
    ax.set_title(f"{title + ': ' if title else ''}accuracy {accuracy:.2%} on {int(counts.sum()):,} images")
    fig.tight_layout()  # (constrained layout clips the y label next to a fixed-aspect image)
    return fig
