"""Gradient checking: backprop through whole small networks agrees with finite differences,
and the checker catches a wrong backward pass."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.scratch import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    BinaryCrossEntropy,
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    MSELoss,
    ReLU,
    Sequential,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
    check_gradients,
    numerical_gradient,
)


def mlp_with_batch_norm(rng):
    return Sequential(
        Linear(5, 6, rng=rng), BatchNorm1d(6), Tanh(), Linear(6, 4, rng=rng), Sigmoid(), Linear(4, 3, rng=rng)
    )


def small_cnn(rng):
    return Sequential(
        Conv2d(2, 3, 3, stride=2, padding=1, rng=rng),  # (B, 3, 5, 4)
        BatchNorm2d(3),
        Tanh(),
        MaxPool2d(2, stride=1),  # (B, 3, 4, 3)
        Conv2d(3, 4, 2, rng=rng),  # (B, 4, 3, 2)
        ReLU(),
        AvgPool2d(2, stride=1),  # (B, 4, 2, 1)
        Flatten(),
        Linear(8, 3, rng=rng),
    )


@pytest.mark.parametrize(
    "build, x_shape",
    [(mlp_with_batch_norm, (4, 5)), (small_cnn, (3, 2, 9, 7))],
    ids=["mlp-batchnorm", "cnn-stride-padding-pools"],
)
def test_backprop_agrees_with_finite_differences(build, x_shape):
    rng = np.random.default_rng(0)
    net = build(rng)
    for p in net.params().values():  # move biases and BatchNorm's gamma/beta off their initial values
        p.data = p.data + rng.standard_normal(p.data.shape) * 0.1
    x = rng.standard_normal(x_shape)
    errors = check_gradients(net, SoftmaxCrossEntropy(), x, rng.integers(0, 3, x_shape[0]))
    assert set(errors) == {*net.params(), "input"}
    # The bias feeding BatchNorm has zero gradient (the batch mean subtracts it away), so its
    # relative error compares rounding noise with rounding noise: check it is zero instead.
    assert np.abs(net.params()["0.bias"].grad).max() < 1e-12
    del errors["0.bias"]
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("loss, make_targets", [
    (MSELoss(), lambda rng: rng.standard_normal((4, 2))),
    (BinaryCrossEntropy(), lambda rng: rng.integers(0, 2, (4, 2)).astype(float)),
])
def test_regression_and_binary_losses(loss, make_targets):
    rng = np.random.default_rng(1)
    net = Sequential(Linear(3, 5, rng=rng), Tanh(), Linear(5, 2, rng=rng), Sigmoid())
    errors = check_gradients(net, loss, rng.standard_normal((4, 3)), make_targets(rng))
    assert max(errors.values()) < 1e-6, errors


class WrongReLU(ReLU):
    """A classic bug: the ReLU passes the gradient everywhere."""

    def backward(self, grad_out):
        return grad_out


def test_checker_catches_a_wrong_backward():
    rng = np.random.default_rng(2)
    net = Sequential(Linear(4, 8, rng=rng), WrongReLU(), Linear(8, 3, rng=rng))
    errors = check_gradients(net, SoftmaxCrossEntropy(), rng.standard_normal((5, 4)), rng.integers(0, 3, 5))
    assert errors["0.weight"] > 1e-2 and errors["input"] > 1e-2
    assert errors["2.weight"] < 1e-6  # the layer after the bug is still right


def test_numerical_gradient_of_a_known_function():
    x = np.array([1.0, -2.0, 3.0])
    grad = numerical_gradient(lambda: float((x**3).sum()), x)
    assert np.allclose(grad, 3 * x**2, rtol=1e-8)
    assert np.array_equal(x, [1.0, -2.0, 3.0])  # restored
