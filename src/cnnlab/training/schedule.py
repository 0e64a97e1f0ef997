"""Learning-rate schedules as a pure function of the step (nanoGPT style), plus the plateau
rule of AlexNet and VGG ("divide by 10 when validation accuracy stops improving"), which needs
the validation history and so is a small stateful object.

Decay points are fractions of the whole run, so changing the number of epochs rescales them.
"""

from __future__ import annotations

import math
from typing import Sequence

SCHEDULES = ("constant", "step", "multistep", "plateau", "cosine", "onecycle")

# One-cycle (Smith & Topin 2019, "Super-Convergence"): rise over the first 30% of training
# from peak / 25 to the peak, then cosine-anneal to peak / 25 / 1e4 (their recipe's defaults).
ONECYCLE_RISE = 0.3
ONECYCLE_START_DIV = 25.0
ONECYCLE_END_DIV = 1e4


def lr_at(
    step: int,
    *,
    schedule: str,
    peak: float,
    total_steps: int,
    warmup_steps: int = 0,
    step_size: float = 0.3,
    milestones: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
) -> float:
    """The learning rate at optimizer step ``step`` (0-based) of ``total_steps``.

    ``schedule``: one of ``cnnlab.training.config.SCHEDULES``. A warmup of ``warmup_steps``
    rises linearly from ``peak / warmup_steps`` to ``peak``. ``step_size``: "step" decays by
    ``gamma`` every this fraction of training; ``milestones``: "multistep" decays by ``gamma``
    at each of these fractions. "plateau" is constant here; :class:`Plateau` multiplies it.
    """
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = step / max(1, total_steps)  # fraction of training done
    if schedule in ("constant", "plateau"):
        return peak
    if schedule == "step":
        return peak * gamma ** math.floor(progress / step_size)
    if schedule == "multistep":
        return peak * gamma ** sum(progress >= m for m in milestones)
    if schedule == "cosine":
        after = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return peak * 0.5 * (1.0 + math.cos(math.pi * after))
    if schedule == "onecycle":
        lo, end = peak / ONECYCLE_START_DIV, peak / ONECYCLE_START_DIV / ONECYCLE_END_DIV
        if progress < ONECYCLE_RISE:
            return lo + (peak - lo) * progress / ONECYCLE_RISE
        t = (progress - ONECYCLE_RISE) / (1.0 - ONECYCLE_RISE)
        return end + (peak - end) * 0.5 * (1.0 + math.cos(math.pi * t))
    raise ValueError(f"unknown schedule {schedule!r}")


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
