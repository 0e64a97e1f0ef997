"""The lectures' worked examples, computed by the scratch engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab.scratch import (
    BinaryCrossEntropy,
    Linear,
    ReLU,
    Scalar,
    Sigmoid,
    chain_rule_example,
    l2_penalty,
    relative_error,
    sigmoid_neuron_gradient,
)


def test_chain_rule_by_hand():
    f, grads = chain_rule_example(-2, 5, -4)
    assert f == -12
    assert grads == {"x": -4, "y": -4, "z": 3}


def test_chain_rule_by_scalar_autodiff():
    x, y, z = Scalar(-2), Scalar(5), Scalar(-4)
    f = (x + y) * z
    f.backward()
    assert f.value == -12
    assert (x.grad, y.grad, z.grad) == (-4, -4, 3)


def test_scalar_autodiff_adds_over_paths_and_matches_torch():
    """f = sigmoid(x*y + x) * x uses x on three paths; the gradients must sum over them."""
    x, y = Scalar(0.7), Scalar(-1.3)
    f = (x * y + x).sigmoid() * x
    f.backward()
    xt = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    yt = torch.tensor(-1.3, dtype=torch.float64, requires_grad=True)
    ft = torch.sigmoid(xt * yt + xt) * xt
    ft.backward()
    assert f.value == pytest.approx(ft.item(), rel=1e-12)
    assert x.grad == pytest.approx(xt.grad.item(), rel=1e-12)
    assert y.grad == pytest.approx(yt.grad.item(), rel=1e-12)


def test_linear_layer_worked_example():
    layer = Linear(4, 3, rng=np.random.default_rng(0))
    layer.weight.data = np.array([[1, 0, 1], [3, 0, 2], [-2, -2, 0], [1, 1, 0]], dtype=float)
    x = np.array([[1, 2, 4, 0]], dtype=float)
    assert np.array_equal(x @ layer.weight.data, [[-1, -8, 5]])  # the weighted sums
    layer.bias.data = np.array([2, 1, 3], dtype=float)
    a = layer.forward(x)
    assert np.array_equal(a, [[1, -7, 8]])  # plus the bias
    assert np.array_equal(ReLU().forward(a), [[1, 0, 8]])  # after the ReLU


@pytest.fixture
def neuron_problem():
    rng = np.random.default_rng(0)
    features = np.hstack([rng.standard_normal((20, 3)), np.ones((20, 1))])  # last feature: the bias
    targets = rng.integers(0, 2, 20).astype(float)
    return rng.standard_normal(4), features, targets


def test_sigmoid_neuron_gradient_is_prediction_error_times_feature(neuron_problem):
    w, z, t = neuron_problem
    alpha = 0.3
    error, grad = sigmoid_neuron_gradient(w, z, t, alpha=alpha)
    x = 1 / (1 + np.exp(-(z @ w)))
    expected = -sum((t[n] - x[n]) * z[n] for n in range(len(t))) + alpha * w  # -sum_n (t_n - x_n) z_n + alpha w
    assert np.allclose(grad, expected, rtol=1e-12)
    # and PyTorch's autograd of E(w) agrees
    wt = torch.tensor(w, requires_grad=True)
    xt = torch.sigmoid(torch.tensor(z) @ wt)
    et = torch.nn.functional.binary_cross_entropy(xt, torch.tensor(t), reduction="sum") + 0.5 * alpha * wt @ wt
    et.backward()
    assert error == pytest.approx(et.item(), rel=1e-12)
    assert relative_error(grad, wt.grad.numpy()) < 1e-10


def test_sigmoid_neuron_is_linear_sigmoid_and_cross_entropy(neuron_problem):
    """The same gradient from the layers: Linear (no bias) -> Sigmoid -> BCE, plus weight decay.
    BCE is a batch mean, so its gradient is the neuron's summed gradient over N."""
    w, z, t = neuron_problem
    alpha = 0.3
    layer, sigmoid, loss = Linear(4, 1, rng=np.random.default_rng(0)), Sigmoid(), BinaryCrossEntropy()
    layer.weight.data = w[:, None].copy()
    loss(sigmoid.forward(layer.forward(z)), t[:, None])
    layer.backward(sigmoid.backward(loss.backward()))
    l2_penalty([layer.weight], alpha / len(t))
    _, grad = sigmoid_neuron_gradient(w, z, t, alpha=alpha)
    assert relative_error(layer.weight.grad[:, 0] * len(t), grad) < 1e-10
