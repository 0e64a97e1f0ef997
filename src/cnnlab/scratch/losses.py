"""Losses: ``loss = L(y, t)`` returns the batch mean (as PyTorch does), then ``L.backward()``
returns dE/dy, where the backward pass of the network starts.

Because the loss is the mean over the batch, every gradient carries a 1/N: the lectures'
output delta ``y_k - t_k`` (for a sum over the training set) appears here as ``(y_k - t_k) / N``.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from cnnlab.scratch.layers import Parameter


def softmax(logits: np.ndarray) -> np.ndarray:
    """exp(a_k) / sum_j exp(a_j) along the last axis, shifted by the max so exp cannot overflow."""
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class SoftmaxCrossEntropy:
    """E = -mean_n ln y_{n, t_n}, y = softmax(a), from logits a (N, K) and integer classes t (N,).

    backward: dE/da_k = (y_k - t_k) / N with t one-hot: softmax and cross-entropy together give
    the lectures' output delta "prediction minus target" (the softmax Jacobian cancels).
    """

    def __call__(self, logits: np.ndarray, targets: np.ndarray) -> float:
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # log-softmax
        self.probs, self.targets = np.exp(log_probs), targets
        return float(-log_probs[np.arange(len(targets)), targets].mean())

    def backward(self) -> np.ndarray:
        delta = self.probs.copy()
        delta[np.arange(len(self.targets)), self.targets] -= 1  # y - t, t one-hot
        return delta / len(self.targets)


class BinaryCrossEntropy:
    """E = -mean [t ln y + (1 - t) ln(1 - y)] for probabilities y in (0, 1) and targets t in [0, 1].

    backward: dE/dy = (y - t) / (y (1 - y)) / N. After a sigmoid (dy/da = y (1 - y)) this becomes
    (y - t) / N: the single neuron's "prediction error".
    The logs are clamped at -100, as PyTorch does, so y = 0 or 1 gives a finite loss.
    """

    def __call__(self, probs: np.ndarray, targets: np.ndarray) -> float:
        self.probs, self.targets = probs, targets
        log_y = np.maximum(np.log(probs), -100)
        log_1my = np.maximum(np.log1p(-probs), -100)
        return float(-(targets * log_y + (1 - targets) * log_1my).mean())

    def backward(self) -> np.ndarray:
        y, t = self.probs, self.targets
        return (y - t) / np.maximum(y * (1 - y), 1e-12) / y.size


class MSELoss:
    """E = mean (y - t)^2 over all elements; backward: dE/dy = 2 (y - t) / (number of elements)."""

    def __call__(self, y: np.ndarray, targets: np.ndarray) -> float:
        self.diff = y - targets
        return float((self.diff**2).mean())

    def backward(self) -> np.ndarray:
        return 2 * self.diff / self.diff.size


def l2_penalty(params: Iterable[Parameter], alpha: float) -> float:
    """Weight decay: add (alpha / 2) sum w^2 over the decayed weights to the loss.

    Returns that term and adds its gradient, alpha * w, to each weight's ``.grad``: call it
    after ``backward``. The same update as ``torch.optim.SGD(weight_decay=alpha)``.
    """
    penalty = 0.0
    for p in params:
        if p.decay and alpha:
            penalty += 0.5 * alpha * float((p.data * p.data).sum())
            p.grad = p.grad + alpha * p.data
    return penalty
