"""The chain rule on scalars, and the single sigmoid neuron's gradient: the lectures' worked examples.

``Scalar`` is a minimal reverse-mode autodiff value (in the spirit of Karpathy's micrograd):
each operation records its inputs and the local derivatives, and ``backward`` applies the
chain rule from the output back, multiplying local derivatives along every path and adding
over paths. For f(x, y, z) = (x + y) z at x = -2, y = 5, z = -4:

    q = x + y = 3,  f = q z = -12
    df/dz = q = 3,  df/dq = z = -4,  df/dx = df/dq dq/dx = -4,  df/dy = -4
"""

from __future__ import annotations

import math

import numpy as np


class Scalar:
    """A number that remembers how it was computed, so that ``backward`` can fill ``grad``."""

    def __init__(self, value: float, parents: tuple[tuple["Scalar", float], ...] = ()):
        self.value = float(value)
        self.grad = 0.0
        self.parents = parents  # (input, d self / d input) pairs: the local derivatives

    def __add__(self, other: "Scalar | float") -> "Scalar":
        other = other if isinstance(other, Scalar) else Scalar(other)
        return Scalar(self.value + other.value, ((self, 1.0), (other, 1.0)))

    def __mul__(self, other: "Scalar | float") -> "Scalar":
        other = other if isinstance(other, Scalar) else Scalar(other)
        return Scalar(self.value * other.value, ((self, other.value), (other, self.value)))

    __radd__, __rmul__ = __add__, __mul__

    def sigmoid(self) -> "Scalar":
        s = 1 / (1 + math.exp(-self.value))
        return Scalar(s, ((self, s * (1 - s)),))

    def backward(self) -> None:
        """d self / d v for every v this value depends on, into ``v.grad``."""
        order: list[Scalar] = []  # topological order: every node after its inputs
        seen: set[int] = set()

        def visit(v: Scalar) -> None:
            if id(v) not in seen:
                seen.add(id(v))
                for parent, _ in v.parents:
                    visit(parent)
                order.append(v)

        visit(self)
        self.grad = 1.0
        for v in reversed(order):  # chain rule: each node passes grad * local derivative to its inputs
            for parent, local in v.parents:
                parent.grad += v.grad * local

    def __repr__(self) -> str:
        return f"Scalar({self.value:g}, grad={self.grad:g})"


def chain_rule_example(x: float, y: float, z: float) -> tuple[float, dict[str, float]]:
    """f(x, y, z) = (x + y) z and its gradient by hand: forward pass, then local derivatives backwards."""
    q = x + y  # forward
    f = q * z
    df_dq, df_dz = z, q  # backward: d(qz)/dq = z, d(qz)/dz = q
    df_dx, df_dy = df_dq * 1.0, df_dq * 1.0  # dq/dx = dq/dy = 1
    return f, {"x": df_dx, "y": df_dy, "z": df_dz}


def sigmoid_neuron_gradient(
    w: np.ndarray, features: np.ndarray, targets: np.ndarray, *, alpha: float = 0.0
) -> tuple[float, np.ndarray]:
    """Cross-entropy error of one sigmoid neuron with weight decay, and its gradient.

    x_n = sigma(w . z_n) for feature vectors z_n (N, D) and targets t_n in {0, 1}:
        E(w) = -sum_n [t_n ln x_n + (1 - t_n) ln(1 - x_n)] + (alpha / 2) w . w
        dE/dw = -sum_n (t_n - x_n) z_n + alpha w       (prediction error times feature)
    (a bias is a weight on a constant feature 1).
    """
    x = 1 / (1 + np.exp(-(features @ w)))
    error = -np.sum(targets * np.log(x) + (1 - targets) * np.log(1 - x)) + 0.5 * alpha * (w @ w)
    grad = -((targets - x) @ features) + alpha * w
    return float(error), grad
