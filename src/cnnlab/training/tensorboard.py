"""TensorBoard event files of a run (``--tensorboard``): what ``metrics.csv`` holds, per epoch,
plus the learning rate, training loss and images/s every ``STEP_EVERY`` optimizer steps, so a
long run can be watched with ``tensorboard --logdir runs/`` as users of torchvision's reference
scripts and Lightning are used to. Written by rank 0 only, through torch.utils.tensorboard.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

STEP_EVERY = 50  # optimizer steps between step-level points
FOLDER = "tensorboard"  # inside the run folder

# metrics.csv column -> TensorBoard tag (grouped the way TensorBoard shows sections).
EPOCH_TAGS = {
    "train_loss": "train/loss",
    "train_acc": "train/acc",
    "val_loss": "val/loss",
    "val_top1_err": "val/top1_err",
    "val_top5_err": "val/top5_err",
    "test_loss": "test/loss",
    "test_top1_err": "test/top1_err",
    "test_top5_err": "test/top5_err",
    "lr": "epoch/lr",
    "images_per_s": "epoch/images_per_s",
    "epoch_time_s": "epoch/time_s",
}


class TensorBoardLog:
    """``log = TensorBoardLog(run_dir, start_step=...)``; ``log.step(...)`` after optimizer
    steps, ``log.epoch(record)`` after each epoch, ``log.close()``. A resumed run passes the
    steps already done as ``start_step``: points a killed session wrote after its last
    checkpoint are dropped (SummaryWriter's ``purge_step``), so the curves do not fork."""

    def __init__(self, run_dir: Path, *, start_step: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter  # tensorboard: imported only when asked for

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / FOLDER), purge_step=start_step or None)
        self._t = time.perf_counter()
        self._images = 0

    def step(self, step: int, *, loss: float, lr: float, images: int) -> None:
        """Called after optimizer step ``step`` (0-based, global) with that step's mean loss,
        learning rate and images (over all ranks); writes every ``STEP_EVERY`` steps."""
        self._images += images
        if (step + 1) % STEP_EVERY:
            return
        now = time.perf_counter()
        self.writer.add_scalar("step/lr", lr, step + 1)
        self.writer.add_scalar("step/train_loss", loss, step + 1)
        self.writer.add_scalar("step/images_per_s", self._images / max(now - self._t, 1e-9), step + 1)
        self._t, self._images = now, 0

    def epoch(self, record: dict) -> None:
        """One metrics.csv row, at its global step (``iterations``), NaN columns left out."""
        for column, tag in EPOCH_TAGS.items():
            value = record.get(column)
            if isinstance(value, (int, float)) and not math.isnan(value):
                self.writer.add_scalar(tag, value, record["iterations"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
