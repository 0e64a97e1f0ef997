"""Gradient descent and its stochastic versions: one update rule, three ways to feed it.

    v <- mu v + dE/dw        (mu = 0: no momentum)
    w <- w - lr v

What distinguishes the lectures' three algorithms is the data each gradient is computed on,
i.e. the batch size the training loop (``cnnlab.scratch.fit.fit``) uses:
  - gradient descent: the whole training set per step (``batch_size=None``);
  - stochastic gradient descent: one example per step (``batch_size=1``);
  - mini-batch SGD: B examples per step, usually with momentum (``batch_size=B, momentum=0.9``).
The momentum form is PyTorch's (``torch.optim.SGD``), so the two produce the same weights.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from cnnlab.scratch.layers import Parameter


class SGD:
    """w <- w - lr v, v <- momentum v + grad (v = grad when momentum is 0)."""

    def __init__(self, params: Iterable[Parameter], *, lr: float, momentum: float = 0.0):
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.params = list(params)
        self.lr, self.momentum = lr, momentum
        self.velocity: list[np.ndarray | None] = [None] * len(self.params)

    def step(self) -> None:
        for i, p in enumerate(self.params):
            step = p.grad
            if self.momentum:
                v = self.velocity[i]
                step = self.velocity[i] = p.grad.copy() if v is None else self.momentum * v + p.grad
            p.data -= self.lr * step
