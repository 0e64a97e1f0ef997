"""Fitting the small two-input classifiers of ``cnnlab viz boundary`` (perceptron vs MLP).

A dozen lines of plain PyTorch: full-batch Adam with cross-entropy on the
:class:`~cnnlab.models.mlp.MLP` block, for a 2-D toy set of :mod:`cnnlab.data.toy`. A few
hundred points train in about a second on a CPU, so no run folder, checkpoint or data loader
is involved; :func:`cnnlab.viz.neuron.plot_decision_regions` draws the fitted models.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models.mlp import MLP

__all__ = ["fit_toy_classifier", "parse_hidden_layouts"]


def fit_toy_classifier(
    x: torch.Tensor, y: torch.Tensor, hidden: Sequence[int] = (), *, steps: int = 1500, lr: float = 0.03, seed: int = 0
) -> nn.Module:
    """Train a two-input classifier on (x, y) with full-batch Adam and cross-entropy.

    ``hidden=()`` is a perceptron (one linear layer: a linear boundary); ``(8,)`` adds one
    hidden layer of 8 tanh units. 1,500 steps on 400 points take about a second on a CPU.
    Returns the model in eval mode."""
    if any(h < 1 for h in hidden):
        raise ValueError(f"hidden widths must be >= 1, got {tuple(hidden)}")
    torch.manual_seed(seed)
    model = MLP(in_features=2, hidden=tuple(hidden), num_classes=int(y.max()) + 1, activation="tanh")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


def parse_hidden_layouts(text: str) -> list[tuple[int, ...]]:
    """``"0,8,32x32"`` -> ``[(), (8,), (32, 32)]``: classifiers separated by commas, each its
    hidden widths joined by ``x``; ``0`` is a perceptron (no hidden layer)."""
    try:
        layouts = [tuple(int(w) for w in item.split("x") if int(w) > 0) for item in text.replace(" ", "").split(",") if item]
    except ValueError:
        raise ValueError(f"expected e.g. 0,8,32x32 (0: no hidden layer), got {text!r}") from None
    if not layouts:
        raise ValueError(f"give at least one classifier, e.g. 0,8; got {text!r}")
    return layouts
