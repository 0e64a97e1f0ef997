"""Comparison charts over the model zoo: reported accuracy against the compute we count."""

from __future__ import annotations

import math
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from cnnlab.analysis.chart import ChartPoint  # noqa: E402

__all__ = ["accuracy_vs_compute"]

# Bubble area in points^2 per million parameters: VGG's 138M gives a bubble ~40 points wide.
_AREA_PER_MPARAM = 9.0


def _area(params: int) -> float:
    return max(_AREA_PER_MPARAM * params / 1e6, 12.0)


def accuracy_vs_compute(points: Sequence[ChartPoint], *, title: str | None = None, dataset: str = "ImageNet") -> Figure:
    """Bubble chart: top-1 accuracy against GMACs (log scale), bubble area = parameters,
    colour = family, each bubble labelled with the model's name."""
    if not points:
        raise ValueError(f"no models to plot: none reports a top-1 accuracy on {dataset}")
    fig, ax = plt.subplots(figsize=(13, 8.5), constrained_layout=True)
    families = sorted({p.family for p in points})
    cmap = plt.get_cmap("tab20" if len(families) > 10 else "tab10")
    colour = {f: cmap(i % cmap.N) for i, f in enumerate(families)}

    # Big bubbles first so small ones stay visible on top.
    for p in sorted(points, key=lambda p: -p.params):
        ax.scatter(
            p.macs / 1e9, p.top1, s=_area(p.params), color=colour[p.family], alpha=0.55, edgecolors="black", linewidths=0.6
        )
    _label(ax, points)

    ax.set_xscale("log")
    ax.set_xlabel("compute per image: GMACs (multiply-accumulates, log scale; FLOPs = 2 x MACs)")
    ax.set_ylabel(f"top-1 accuracy on {dataset} (%), as reported by each paper")
    ax.set_title(title or f"Accuracy vs. compute on {dataset}: bubble area = parameters", fontsize=14)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    lo, hi = min(p.top1 for p in points), max(p.top1 for p in points)
    ax.set_ylim(lo - 2.5, hi + 2.5)
    xs = [p.macs / 1e9 for p in points]
    ax.set_xlim(min(xs) / 1.8, max(xs) * 2.2)

    # Legend 1: bubble size for round parameter counts.
    sizes = [s for s in (5, 25, 100, 300, 900) if s * 1e6 <= 1.5 * max(p.params for p in points)] or [5]
    handles = [ax.scatter([], [], s=_area(s * 1e6), color="grey", alpha=0.4, edgecolors="black") for s in sizes]
    size_legend = ax.legend(
        handles, [f"{s}M params" for s in sizes], title="bubble area", loc="lower right",
        labelspacing=2.2, borderpad=1.4, framealpha=0.9, scatterpoints=1,
    )
    ax.add_artist(size_legend)
    # Legend 2: colour per family.
    fam_handles = [ax.scatter([], [], s=60, color=colour[f], alpha=0.7, edgecolors="black") for f in families]
    ax.legend(fam_handles, families, title="family", loc="upper left", ncol=2 if len(families) > 8 else 1, fontsize=8, framealpha=0.9)
    return fig


def _label(ax, points: Sequence[ChartPoint]) -> None:
    """Name next to each bubble, nudged vertically so labels of nearby models don't overlap."""
    placed: list[tuple[float, float]] = []  # (log10 x, y) of labels already placed
    for p in sorted(points, key=lambda p: (p.top1, p.macs)):
        x, y = math.log10(p.macs / 1e9), p.top1
        ty = y
        for _ in range(40):
            if all(abs(ty - py) > 0.55 or abs(x - px) > 0.32 for px, py in placed):
                break
            ty += 0.35
        placed.append((x, ty))
        radius = math.sqrt(_area(p.params)) / 2  # points
        ax.annotate(
            p.name, (p.macs / 1e9, p.top1), xytext=(radius + 3, ty), textcoords=("offset points", "data"),
            fontsize=8, va="center",
            arrowprops=dict(arrowstyle="-", lw=0.4, color="grey") if ty != y else None,
        )
