"""Comparison charts over the model zoo: reported accuracy against the compute we count."""

from __future__ import annotations

import math
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from cnnlab.analysis.chart import ChartPoint  # noqa: E402

__all__ = ["accuracy_vs_compute"]

# Bubble area in points^2 per million parameters: a fixed scale, so charts compare (VGG-16's
# 138M parameters give a bubble about 33 points across, ResNet-50's 26M about 14).
_AREA_PER_MPARAM = 6.0
_MIN_AREA = 10.0


def _area(params: float) -> float:
    return max(_AREA_PER_MPARAM * params / 1e6, _MIN_AREA)


def accuracy_vs_compute(points: Sequence[ChartPoint], *, title: str | None = None, dataset: str = "ImageNet") -> Figure:
    """Bubble chart: top-1 accuracy against GMACs (log scale), bubble area = parameters,
    colour = family, each bubble labelled with the model's name."""
    if not points:
        raise ValueError(f"no models to plot: none reports a top-1 accuracy on {dataset}")
    fig, ax = plt.subplots(figsize=(16, 10.5), constrained_layout=True)
    families = sorted({p.family for p in points})
    cmap = plt.get_cmap("tab20" if len(families) > 10 else "tab10")
    colour = {f: cmap(i % cmap.N) for i, f in enumerate(families)}
    largest = max(p.params for p in points)

    # Big bubbles first so small ones stay visible on top.
    for p in sorted(points, key=lambda p: -p.params):
        ax.scatter(p.macs / 1e9, p.top1, s=_area(p.params), color=colour[p.family], alpha=0.55,
                   edgecolors="black", linewidths=0.6, zorder=2)

    ax.set_xscale("log")
    ax.set_xlabel("compute per image: GMACs (multiply-accumulates, log scale; FLOPs = 2 x MACs)", fontsize=11)
    ax.set_ylabel(f"top-1 accuracy on {dataset} (%), as reported by each paper", fontsize=11)
    ax.set_title(title or f"Accuracy vs. compute on {dataset} (bubble area = parameters)", fontsize=14)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    lo, hi = min(p.top1 for p in points), max(p.top1 for p in points)
    ax.set_ylim(lo - 2.5 - 0.25 * (hi - lo), hi + 2.5)  # room at the bottom for the legends
    xs = [p.macs / 1e9 for p in points]
    ax.set_xlim(min(xs) / 1.8, max(xs) * 3)

    # Legend 1: bubble size for round parameter counts up to the largest model's.
    sizes = [m for m in (5, 25, 100, 300, 1000) if m * 1e6 <= largest] or [round(largest / 1e6, 1)]
    handles = [ax.scatter([], [], s=_area(m * 1e6), color="grey", alpha=0.4, edgecolors="black") for m in sizes]
    size_legend = ax.legend(handles, [f"{m:g}M params" for m in sizes], title="bubble area", loc="lower right",
                            labelspacing=1.8, borderpad=1.2, scatterpoints=1, framealpha=0.9)
    ax.add_artist(size_legend)
    # Legend 2: colour per family.
    fam_handles = [ax.scatter([], [], s=50, color=colour[f], alpha=0.7, edgecolors="black") for f in families]
    ax.legend(fam_handles, families, title="family", loc="lower center", ncol=3 if len(families) > 6 else 1,
              fontsize=8, framealpha=0.9)
    _label(fig, ax, points, largest)
    return fig


def _label(fig: Figure, ax, points: Sequence[ChartPoint], largest: float) -> None:
    """Name each bubble at the first spot around it (right, left, above, below, then further
    out with a leader line) where the text covers no other label or bubble; failing that, no
    other label; failing that, to its right."""
    renderer = fig.canvas.get_renderer()
    bubbles = []
    for p in points:
        cx, cy = ax.transData.transform((p.macs / 1e9, p.top1))
        r = 0.8 * math.sqrt(_area(p.params)) / 2 * fig.dpi / 72  # shrunk: touching an edge reads fine
        bubbles.append(Bbox.from_extents(cx - r, cy - r, cx + r, cy + r))
    labels: list[Bbox] = []
    for i in sorted(range(len(points)), key=lambda i: -points[i].params):
        p = points[i]
        r = math.sqrt(_area(p.params)) / 2 + 2  # bubble radius in points (scatter sizes are diameter^2)
        near = [(r, 0, "left"), (-r, 0, "right"), (0, r + 5, "center"), (0, -r - 5, "center")]
        near += [(sx * (r + 4 * k), sy * (r + 9 * k), "left" if sx > 0 else "right")
                 for k in range(1, 4) for sx in (1, -1) for sy in (1, -1)]
        far = [(sx * (r + 4 * k), sy * (r + 9 * k), "left" if sx > 0 else "right")
               for k in range(4, 9) for sx in (1, -1) for sy in (1, -1)]
        others = [b for j, b in enumerate(bubbles) if j != i]
        chosen = None
        # Close to the bubble and clear of everything; else close and clear of labels; else further out.
        for obstacles, spots in ((labels + others, near), (labels, near), (labels, far)):
            for dx, dy, ha in spots:
                text = ax.annotate(p.name, (p.macs / 1e9, p.top1), xytext=(dx, dy), textcoords="offset points",
                                   ha=ha, va="center", fontsize=8, zorder=3)
                box = text.get_window_extent(renderer).expanded(1.04, 1.15)
                text.remove()
                if not any(box.overlaps(b) for b in obstacles):
                    chosen = (dx, dy, ha)
                    break
            if chosen:
                break
        dx, dy, ha = chosen or near[0]
        leader = abs(dy) > r
        text = ax.annotate(p.name, (p.macs / 1e9, p.top1), xytext=(dx, dy), textcoords="offset points", ha=ha,
                           va="center", fontsize=8, zorder=3,
                           arrowprops=dict(arrowstyle="-", lw=0.5, color="grey", shrinkB=r - 2) if leader else None)
        labels.append(text.get_window_extent(renderer).expanded(1.04, 1.15))
