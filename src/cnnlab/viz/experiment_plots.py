"""Figures for the experiments (``cnnlab experiment NAME``): seeded bar charts, error curves
in the style of the ResNet paper's Figure 1, image strips and receptive-field maps.

Every function takes numbers, histories or tensors and returns a matplotlib Figure; none
trains. Errors are fractions in the inputs and percentages on the axes.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def plot_seeded_bars(
    groups: Sequence[str],
    series: Mapping[str, Sequence[Sequence[float]]],
    *,
    ylabel: str = "test error (%)",
    title: str | None = None,
) -> Figure:
    """Grouped bars: for each group (x position) one bar per series, the mean over seeds,
    with every seed's value as a dot. ``series[name][g]`` holds the per-seed fractions of
    group ``g``."""
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(groups) * max(1, len(series)) ** 0.5, 3.8), constrained_layout=True)
    n = len(series)
    width = 0.8 / n
    for i, (name, per_group) in enumerate(series.items()):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        means = [100 * sum(v) / len(v) for v in per_group]
        bars = ax.bar(xs, means, width * 0.92, color=COLORS[i % len(COLORS)], alpha=0.85, label=name if n > 1 else None)
        for x, values in zip(xs, per_group):
            ax.plot([x] * len(values), [100 * v for v in values], "o", color="black", ms=3, zorder=3)
        for bar, m in zip(bars, means):  # the mean inside the bar's foot, clear of the seed dots
            ax.annotate(f"{m:.2f}", (bar.get_x() + bar.get_width() / 2, 0), ha="center", va="bottom", fontsize=8,
                        xytext=(0, 3), textcoords="offset points", color="white", fontweight="bold")
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    ax.margins(y=0.12)
    if n > 1:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def _error_series(history: Sequence[dict], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in history:
        v = row.get(key)
        if isinstance(v, (int, float)) and not math.isnan(v):
            xs.append(row["epoch"])
            ys.append(100 * (1 - v) if key == "train_acc" else 100 * v)
    return xs, ys


def plot_error_curves(
    panels: Mapping[str, Sequence[tuple[str, Sequence[dict]]]],
    *,
    held_out_key: str = "test_top1_err",
    held_out_name: str = "test",
    title: str | None = None,
    ymax: float | None = None,
) -> Figure:
    """He et al. 2016, Figure 1/6 style: per net, training error solid and held-out error
    dashed, one panel per group (``panels[title] = [(label, history), ...]``), panels sharing
    the error axis; ``ymax`` (percent) zooms in on small errors and the gap between them."""
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.2 * len(panels), 4.0), constrained_layout=True, squeeze=False, sharey=True
    )
    for ax, (panel_title, runs) in zip(axes[0], panels.items()):
        for i, (label, history) in enumerate(runs):
            c = COLORS[i % len(COLORS)]
            ax.plot(*_error_series(history, "train_acc"), color=c, lw=2, label=f"{label} train".strip())
            ax.plot(*_error_series(history, held_out_key), color=c, lw=1.2, ls="--", label=f"{label} {held_out_name}".strip())
        ax.set(title=panel_title, xlabel="epoch", ylabel="error (%)")
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        if ymax is not None:
            ax.set_ylim(0, ymax)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_image_rows(rows: Sequence[tuple[str, torch.Tensor]], *, title: str | None = None) -> Figure:
    """One row per (label, images): images (N, C, H, W) floats in [0, 1] or uint8."""
    n = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(len(rows), n, figsize=(0.95 * n + 1.4, 1.0 * len(rows) + 0.3), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(images):
                img = images[c].float()
                img = img / 255.0 if images.dtype == torch.uint8 else img
                if img.shape[0] == 1:
                    ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
                else:
                    ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.2, right=0.98, top=0.88 if title else 0.98, bottom=0.02, wspace=0.05, hspace=0.1)
    return fig


def plot_ensemble(member_errors: Sequence[float], ensemble_by_k: Sequence[float], *, title: str | None = None) -> Figure:
    """Left: each member's test error and the ensemble's. Right: the ensemble of the first k
    members against k, with the members' mean."""
    fig, (ax_m, ax_k) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    k = len(member_errors)
    labels = [f"seed {i}" for i in range(k)] + ["ensemble"]
    values = [100 * e for e in member_errors] + [100 * ensemble_by_k[-1]]
    colors = [COLORS[0]] * k + [COLORS[1]]
    bars = ax_m.bar(range(k + 1), values, color=colors)
    for bar, v in zip(bars, values):
        ax_m.annotate(f"{v:.2f}", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=8,
                      xytext=(0, 2), textcoords="offset points")
    mean = sum(values[:k]) / k
    ax_m.axhline(mean, color="gray", ls="--", lw=1, label=f"member mean {mean:.2f}%")
    ax_m.set_xticks(range(k + 1), labels, rotation=30 if k > 5 else 0, fontsize=8)
    ax_m.set(ylabel="test error (%)", title="members and their ensemble")
    lo = min(values)
    ax_m.set_ylim(max(0, lo - (max(values) - lo) * 1.5 - 0.2), max(values) + (max(values) - lo) * 0.4 + 0.1)
    ax_m.legend(fontsize=8, loc="best")
    ks = list(range(1, len(ensemble_by_k) + 1))
    ax_k.plot(ks, [100 * e for e in ensemble_by_k], "o-", color=COLORS[1], label="ensemble of the first k")
    ax_k.axhline(mean, color="gray", ls="--", lw=1, label="member mean")
    ax_k.set(xlabel="members averaged (k)", ylabel="test error (%)", title="averaging probabilities")
    ax_k.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax_k.legend(fontsize=8)
    for ax in (ax_m, ax_k):
        ax.grid(True, axis="y", alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def plot_receptive_field(
    depths: Sequence[int],
    extent: Sequence[int],
    theory: Sequence[int],
    sigma: Sequence[float],
    maps: Mapping[int, torch.Tensor],
    profiles: Mapping[int, torch.Tensor],
    *,
    sqrt_fit: tuple[float, float] | None = None,
) -> Figure:
    """Top: gradient maps |d y_centre / d x| for a few depths (the ERF). Bottom: measured
    non-zero extent against 1 + L(k - 1); the horizontal profiles; the ERF's standard
    deviation against L on log-log axes with the fitted power law ``sqrt_fit`` = (a, p),
    sigma = a L^p."""
    shown = list(maps)
    fig = plt.figure(figsize=(12, 7.2), constrained_layout=True)
    grid = fig.add_gridspec(2, max(3, len(shown)), height_ratios=(1, 1.15))
    for i, depth in enumerate(shown):
        ax = fig.add_subplot(grid[0, i])
        m = maps[depth]
        ax.imshow(m.numpy(), cmap="magma", interpolation="nearest")
        ax.set_title(f"L = {depth}: field {theory[list(depths).index(depth)]} px", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    ax_e = fig.add_subplot(grid[1, 0])
    ax_e.plot(depths, theory, "-", color="gray", lw=3, alpha=0.5, label="1 + L(k - 1)")
    ax_e.plot(depths, extent, "o", color=COLORS[0], label="measured: non-zero gradient")
    ax_e.set(xlabel="3x3 conv layers (L)", ylabel="extent (pixels)", title="theoretical receptive field")
    ax_e.legend(fontsize=8)
    ax_p = fig.add_subplot(grid[1, 1])
    for i, (depth, profile) in enumerate(profiles.items()):
        centre = len(profile) // 2
        xs = [x - centre for x in range(len(profile))]
        c = COLORS[i % len(COLORS)]
        ax_p.plot(xs, (profile / profile.max()).numpy(), "-", color=c, label=f"L = {depth}")
        p = profile.double() / profile.sum()
        offsets = torch.tensor(xs, dtype=torch.float64)
        mean = (p * offsets).sum()
        var = (p * (offsets - mean) ** 2).sum()
        ax_p.plot(xs, torch.exp(-((offsets - mean) ** 2) / (2 * var)).numpy(), ":", color=c, lw=1)
    ax_p.set(xlabel="offset from the centre (pixels)", ylabel="gradient (normalised)", title="ERF profile (dotted: Gaussian, same std)")
    ax_p.legend(fontsize=8)
    ax_s = fig.add_subplot(grid[1, 2])
    ax_s.loglog(depths, sigma, "o", color=COLORS[0], label="measured ERF std")
    ax_s.loglog(depths, [(t - 1) / 2 for t in theory], "-", color="gray", lw=3, alpha=0.5, label="theoretical half-width L")
    if sqrt_fit is not None:
        a, p = sqrt_fit
        ax_s.loglog(depths, [a * d**p for d in depths], "--", color=COLORS[1], label=f"fit {a:.2f} L^{p:.2f}")
    ax_s.set(xlabel="3x3 conv layers (L)", ylabel="pixels", title="ERF std vs theoretical half-width")
    for axis in (ax_s.xaxis, ax_s.yaxis):
        axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax_s.set_xticks([d for d in (1, 2, 4, 8, 16, 32) if d <= max(depths)])
    ax_s.set_yticks([v for v in (0.5, 1, 2, 4, 8, 16, 32) if v <= max(theory)])
    ax_s.legend(fontsize=8)
    for ax in (ax_e, ax_p, ax_s):
        ax.grid(True, alpha=0.3)
    return fig
