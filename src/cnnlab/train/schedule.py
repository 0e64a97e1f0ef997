"""Learning-rate schedules as pure functions of the step (nanoGPT style), plus the
plateau rule of AlexNet and VGG ("divide by 10 when validation accuracy stops improving"),
which needs the validation history and so is a small stateful object.
"""

from __future__ import annotations

import math

from cnnlab.train.config import TrainConfig


def lr_at(config: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """The learning rate at optimizer step ``step`` (0-based) of ``total_steps``.

    Warmup (``config.warmup`` epochs) rises linearly from 0 to ``config.lr``; the schedule's
    decay is measured in fractions of the whole run, so changing ``epochs`` rescales it.
    """
    warmup_steps = round(config.warmup * steps_per_epoch)
    if step < warmup_steps:
        return config.lr * (step + 1) / warmup_steps
    progress = step / max(1, total_steps)  # fraction of training done
    s = config.schedule
    if s in ("constant", "plateau"):  # plateau's decay is applied on top, per epoch
        return config.lr
    if s == "step":
        return config.lr * config.gamma ** math.floor(progress / config.step_size)
    if s == "multistep":
        return config.lr * config.gamma ** sum(progress >= m for m in config.milestones)
    if s == "cosine":
        after = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * after))
    if s == "onecycle":
        # Smith & Topin 2019: up linearly from lr/25 to lr over the first 30%, then
        # cosine-anneal to lr/1e4 (the defaults of their super-convergence recipe).
        peak = 0.3
        lo, hi, end = config.lr / 25.0, config.lr, config.lr / 25.0 / 1e4
        if progress < peak:
            return lo + (hi - lo) * progress / peak
        t = (progress - peak) / (1.0 - peak)
        return end + (hi - end) * 0.5 * (1.0 + math.cos(math.pi * t))
    raise ValueError(f"unknown schedule {s!r}")


class Plateau:
    """Multiply the learning rate by ``gamma`` after ``patience`` epochs without improvement."""

    def __init__(self, gamma: float, patience: int) -> None:
        self.gamma, self.patience = gamma, patience
        self.factor = 1.0
        self.best = -math.inf
        self.bad_epochs = 0

    def update(self, val_accuracy: float) -> None:
        if val_accuracy > self.best:
            self.best, self.bad_epochs = val_accuracy, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            self.factor *= self.gamma
            self.bad_epochs = 0

    def state_dict(self) -> dict:
        return {"factor": self.factor, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.factor, self.best, self.bad_epochs = state["factor"], state["best"], state["bad_epochs"]
