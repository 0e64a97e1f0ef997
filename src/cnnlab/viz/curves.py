"""Training curves: loss, error and learning rate per epoch (or against wall time from the
run's start: time-to-accuracy, the speedrun comparison), several runs overlaid.

``plot_curves`` draws histories (the rows of run folders' ``metrics.csv``);
``run_histories`` reads them from run folders, ``write_run_curves`` draws one run's
``curves.png`` (what ``cnnlab train`` refreshes after every epoch).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from cnnlab.errors import CnnlabError  # noqa: E402
from cnnlab.training.config import TrainConfig  # noqa: E402
from cnnlab.training.run import read_history  # noqa: E402


X_AXES = ("epoch", "time")
# The test errors a target accuracy is checked against, in order: the weights', then the
# weight average's (a run that keeps an EMA or a lookahead reports both each epoch).
_TEST_ERRORS = {"weights": "test_top1_err", "EMA weights": "ema_test_top1_err"}


def first_reaching(history: Sequence[dict], accuracy: float) -> tuple[dict, str] | None:
    """The first epoch's row whose test accuracy (the weights' or the EMA weights') is at
    least ``accuracy`` (a fraction), and which of the two reached it; None when none did.
    Time to accuracy is that row's ``elapsed_s`` (evaluation included)."""
    if not 0.0 < accuracy <= 1.0:
        raise CnnlabError(f"target accuracy {accuracy!r} is not a fraction in (0, 1]")
    for row in history:
        for which, key in _TEST_ERRORS.items():
            err = row.get(key)
            # 1e-9: metrics.csv holds errors to 4-6 digits, so 1 - 0.1241 must count as 87.59%
            if isinstance(err, (int, float)) and not math.isnan(err) and 1.0 - err >= accuracy - 1e-9:
                return row, which
    return None


def best_test_accuracy(history: Sequence[dict]) -> float | None:
    """The best test accuracy of any epoch (weights or EMA weights); None when never tested."""
    errs = [row[key] for row in history for key in _TEST_ERRORS.values()
            if isinstance(row.get(key), (int, float)) and not math.isnan(row[key])]
    return 1.0 - min(errs) if errs else None


def _series(history: Sequence[dict], key: str, x: str = "epoch") -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in history:
        v = row.get(key)
        at = row["epoch"] if x == "epoch" else row.get("elapsed_s", math.nan) / 60
        if isinstance(v, (int, float)) and not math.isnan(v) and not math.isnan(at):
            xs.append(at)
            ys.append(float(v))
    return xs, ys


def plot_curves(runs: Sequence[tuple[str, Sequence[dict]]], *, title: str | None = None, x: str = "epoch",
                targets: Sequence[float] = ()) -> Figure:
    """Three panels: loss (train solid, validation dashed), top-1 error in % (train, val, test,
    and the EMA weights' val/test when the run kept an EMA) on a log scale, and the learning
    rate. A metric the run never measured (no hold-out: no validation) is left out. ``runs`` is a list of (label, history) pairs.
    ``x``: "epoch", or "time" (minutes from the run's start, ``elapsed_s``: evaluation included).
    ``targets``: test accuracies (fractions), each drawn as a line on the error panel, with a
    star where each run first reaches it (:func:`first_reaching`)."""
    if x not in X_AXES:
        raise CnnlabError(f"unknown x axis {x!r}; expected one of {', '.join(X_AXES)}")
    series = lambda history, key: _series(history, key, x)  # noqa: E731
    fig, (ax_loss, ax_err, ax_lr) = plt.subplots(1, 3, figsize=(15, 4.3), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, history) in enumerate(runs):
        c = colors[i % len(colors)]
        prefix = f"{label}: " if len(runs) > 1 else ""
        for key, style, name in (("train_loss", "-", "train"), ("val_loss", "--", "validation")):
            xs, ys = series(history, key)
            if xs:  # a run without a hold-out has no validation curve, and no legend entry for one
                ax_loss.plot(xs, ys, color=c, ls=style, marker="o" if key == "train_loss" else "s", ms=3,
                             label=f"{prefix}{name}")
        xs, acc = series(history, "train_acc")
        ax_err.plot(xs, [100 * (1 - a) for a in acc], color=c, marker="o", ms=3, label=f"{prefix}train")
        for key, style, marker, name in (("val_top1_err", "--", "s", "validation"), ("test_top1_err", ":", "^", "test"),
                                         ("ema_val_top1_err", "--", "x", "validation, EMA weights"),
                                         ("ema_test_top1_err", "-.", "x", "test, EMA weights")):
            xs, err = series(history, key)
            if xs:
                ax_err.plot(xs, [100 * e for e in err], color=c, ls=style, marker=marker, ms=3, label=f"{prefix}{name}")
        ax_lr.plot(*series(history, "lr"), color=c, marker="o", ms=3, label=label)
        for target in targets:
            hit = first_reaching(history, target)
            if hit is not None:
                row, which = hit
                at = row["epoch"] if x == "epoch" else row.get("elapsed_s", math.nan) / 60
                err = row[_TEST_ERRORS[which]]
                ax_err.plot([at], [100 * err], color=c, marker="*", ms=14, ls="none", zorder=5,
                            label=f"{prefix}first at {100 * target:g}%")
    for target in targets:
        ax_err.axhline(100 * (1 - target), color="0.3", lw=1, ls="--", zorder=1)
        # on the left: error curves fall from the upper left, so the line's left end is clear of them
        ax_err.annotate(f"target: {100 * target:g}% accuracy", (0.01, 100 * (1 - target)),
                        xycoords=("axes fraction", "data"), ha="left", va="bottom", fontsize=8, color="0.3")
    xlabel = "epoch" if x == "epoch" else "minutes from the start (evaluation included)"
    ax_loss.set(title="Loss", xlabel=xlabel, ylabel="cross-entropy")
    ax_err.set(title="Top-1 error", xlabel=xlabel, ylabel="error (%)")
    ax_err.set_yscale("log")
    ax_err.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax_err.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax_lr.set(title="Learning rate (end of epoch)", xlabel=xlabel, ylabel="learning rate")
    for ax in (ax_loss, ax_err, ax_lr):
        ax.grid(True, alpha=0.3)
        if x == "epoch":
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, min_n_ticks=1))
    epochs = [row["epoch"] for _, history in runs for row in history]
    if x == "epoch" and epochs and max(epochs) == min(epochs):  # a one-epoch run: one tick, not 0.945 ... 1.055
        for ax in (ax_loss, ax_err, ax_lr):
            ax.set_xticks([epochs[0]])
    if len(runs) > 1:
        # Overlays: below the panels, so that a dozen entries do not cover the curves.
        for ax in (ax_loss, ax_err, ax_lr):
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
        rows = math.ceil(len(ax_err.get_legend_handles_labels()[0]) / 2)
        fig.set_size_inches(15, 4.3 + 0.2 * rows)  # the panels keep their height above the legend
    else:
        ax_loss.legend(fontsize=8)
        ax_err.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def run_histories(runs: Sequence[str | Path]) -> list[tuple[str, list[dict]]]:
    """(folder name, history) for each run folder, read from its ``metrics.csv``."""
    histories = []
    for run in runs:
        metrics = Path(run) / "metrics.csv"
        if not metrics.is_file():
            raise CnnlabError(f"{run} has no metrics.csv (is it a run folder from `cnnlab train`?)")
        histories.append((Path(run).name, read_history(metrics)))
    return histories


def write_run_curves(run_dir: str | Path) -> Path:
    """Draw ``run_dir/curves.png`` from the run folder's ``metrics.csv`` and ``config.json``."""
    run_dir = Path(run_dir)
    config = TrainConfig.load(run_dir / "config.json")
    fig = plot_curves(run_histories([run_dir]), title=f"{config.model} on {config.data} ({run_dir.name})")
    return save_figure(fig, run_dir / "curves.png")
