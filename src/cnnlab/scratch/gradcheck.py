"""Gradient checking: compare backpropagation's gradients with centred finite differences.

    dE/dw_i ~ (E(w + eps e_i) - E(w - eps e_i)) / (2 eps)     error O(eps^2)

For each parameter (and the input) the report is the relative error
``||g_backprop - g_numeric|| / (||g_backprop|| + ||g_numeric||)``: about 1e-8 or smaller in
float64 when the backward pass is right, around 1e-2 or worse when it is wrong. Run it in
float64 (``model.astype(np.float64)``): float32's rounding swamps the differences.
The model must be deterministic between calls (no Dropout in training mode). A parameter
whose true gradient is zero (a bias followed by BatchNorm) reports noise over noise (~1).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from cnnlab.scratch.model import Sequential


def numerical_gradient(f: Callable[[], float], x: np.ndarray, *, eps: float = 1e-6) -> np.ndarray:
    """dF/dx by centred differences, perturbing x (in place, then restoring it) one entry at a time."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        plus = f()
        x[i] = old - eps
        minus = f()
        x[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / (||a|| + ||b||), 0 when both are zero."""
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / denom) if denom > 0 else 0.0


def check_gradients(
    model: Sequential, loss_fn: Callable, x: np.ndarray, targets: np.ndarray, *, eps: float = 1e-6
) -> dict[str, float]:
    """Relative error between backprop and finite differences, per parameter and for ``"input"``.

    ``loss_fn`` is a loss object (``loss_fn(y, t) -> float``, ``loss_fn.backward() -> dE/dy``).
    """

    def loss() -> float:
        return loss_fn(model.forward(x), targets)

    loss()  # backprop's gradients, at the unperturbed point
    grad_x = model.backward(loss_fn.backward())
    analytic = {name: p.grad.copy() for name, p in model.params().items()}
    analytic["input"] = grad_x

    errors = {name: relative_error(analytic[name], numerical_gradient(loss, p.data, eps=eps))
              for name, p in model.params().items()}
    errors["input"] = relative_error(grad_x, numerical_gradient(loss, x, eps=eps))
    return errors
