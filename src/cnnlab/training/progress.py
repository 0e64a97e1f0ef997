"""Terminal progress for training: a live bar per epoch and one summary line per epoch.

Used by the trainer, the NumPy scratch trainer and the experiments alike, so every training
run in cnnlab looks the same: epoch, images done, images/s, ETA, running loss and accuracy.
"""

from __future__ import annotations

import time
from typing import Mapping

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainProgress:
    """``with TrainProgress(epochs) as p: p.start_epoch(e, n_images); p.advance(...); p.end_epoch(metrics)``."""

    def __init__(self, epochs: int, *, quiet: bool = False, console: Console | None = None) -> None:
        self.epochs = epochs
        self.quiet = quiet
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._loss_sum = 0.0
        self._correct = 0
        self._seen = 0
        self._t0 = 0.0

    def __enter__(self) -> "TrainProgress":
        if not self.quiet:
            self._progress = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}[/bold]"),
                BarColumn(bar_width=28),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>8} img/s"),
                TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:6.2%}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
                refresh_per_second=8,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def start_epoch(self, epoch: int, total_images: int) -> None:
        self._loss_sum, self._correct, self._seen = 0.0, 0, 0
        self._t0 = time.perf_counter()
        if self._progress is not None:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(
                "train", total=total_images, epoch=f"{epoch}/{self.epochs}", rate="-", loss=0.0, acc=0.0
            )

    def advance(self, images: int, loss_sum: float, correct: int) -> None:
        """Record one batch: its size, the summed loss over it, and the count it got right."""
        self._seen += images
        self._loss_sum += loss_sum
        self._correct += correct
        if self._progress is not None and self._task is not None:
            elapsed = max(time.perf_counter() - self._t0, 1e-9)
            self._progress.update(
                self._task,
                advance=images,
                rate=f"{self._seen / elapsed:,.0f}",
                loss=self._loss_sum / self._seen,
                acc=self._correct / self._seen,
            )

    def end_epoch(self, metrics: Mapping[str, float | int | str]) -> None:
        """Print the epoch's summary line (kept in the scrollback, unlike the bar)."""
        if self.quiet:
            return
        parts = []
        for key, value in metrics.items():
            if isinstance(value, float):
                text = f"{value:.4g}" if key in ("lr",) or "loss" in key else f"{value:.4f}"
                if key.endswith(("acc", "err")) or "top" in key:
                    text = f"{value:.2%}"
                elif key in ("images_per_s",):
                    text = f"{value:,.0f}"
                elif key.endswith("_s"):
                    text = f"{value:.1f}s"
            else:
                text = f"{value:,}" if isinstance(value, int) else str(value)
            parts.append(f"[dim]{key}[/dim] {text}")
        self.console.print("  ".join(parts), highlight=False, soft_wrap=True)

    def log(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False, soft_wrap=True)


class EvalProgress:
    """A live bar while a model scores a split (``cnnlab eval``): images done, images/s, ETA.
    ``with EvalProgress("runs/x, TTA flip-translate", 10_000) as p: p.advance(batch)``; the bar
    is transient (the result table follows), and ``quiet`` shows nothing."""

    def __init__(self, what: str, total_images: int, *, quiet: bool = False, console: Console | None = None) -> None:
        self.what, self.total, self.quiet = what, total_images, quiet
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._seen, self._t0 = 0, 0.0

    def __enter__(self) -> "EvalProgress":
        self._t0 = time.perf_counter()
        if not self.quiet:
            self._progress = Progress(
                # narrow enough for 80 columns with a run name of ~10 characters and a TTA mode
                TextColumn("[bold]scoring[/bold] {task.description}"), BarColumn(bar_width=16), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} img/s"), TextColumn("ETA"), TimeRemainingColumn(),
                console=self.console, transient=True, refresh_per_second=8,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.what, total=self.total, rate="-")
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def advance(self, images: int) -> None:
        """Record one scored batch of ``images`` images (all its views)."""
        self._seen += images
        if self._progress is not None and self._task is not None:
            rate = self._seen / max(time.perf_counter() - self._t0, 1e-9)
            self._progress.update(self._task, advance=images, rate=f"{rate:,.0f}")
