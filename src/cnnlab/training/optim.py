"""Optimizer and loss factories: names from ``TrainConfig`` to torch objects."""

from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import UnknownNameError

OPTIMIZERS = ("sgd", "adam", "adamw")
LOSSES = ("ce", "mse")

# GoogLeNet (Szegedy et al. 2015, Sec. 5): "the losses of the auxiliary classifiers were
# weighted by 0.3" and added to the main loss in training.
AUX_WEIGHT = 0.3

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, labels) -> scalar


def make_optimizer(
    params: Iterable[nn.Parameter],
    *,
    name: str,
    lr: float,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """SGD (with ``momentum``), Adam or AdamW (``momentum`` is beta1, beta2 0.999)."""
    params = [p for p in params if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    betas = (momentum, 0.999)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)
    raise UnknownNameError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")


def make_loss(name: str, *, num_classes: int, label_smoothing: float = 0.0) -> LossFn:
    """"ce": softmax cross-entropy (optionally label-smoothed); "mse": squared error between
    the softmax output and the one-hot target, summed over classes and averaged over the
    batch (the lectures' sum-of-squares error)."""
    if name == "ce":
        return lambda logits, y: F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    if name == "mse":

        def mse(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            target = F.one_hot(y, num_classes).to(logits.dtype)
            return ((F.softmax(logits, dim=1) - target) ** 2).sum(1).mean()

        return mse
    raise UnknownNameError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")


def loss_with_aux(loss_fn: LossFn, logits: torch.Tensor, aux: tuple[torch.Tensor, ...], y: torch.Tensor) -> torch.Tensor:
    """The main loss plus ``AUX_WEIGHT`` times each auxiliary head's loss."""
    loss = loss_fn(logits, y)
    for a in aux:
        loss = loss + AUX_WEIGHT * loss_fn(a, y)
    return loss
