"""Every scratch layer against PyTorch: forward output, input gradient and parameter gradients
agree in float64 to a relative error below 1e-6 on random inputs (odd sizes, strides, padding)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab.scratch import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Tanh,
    relative_error,
)

TOL = 1e-6


def assert_close(ours: np.ndarray, theirs: torch.Tensor, what: str) -> None:
    theirs = theirs.detach().numpy()
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != {theirs.shape}"
    assert relative_error(ours, theirs) < TOL, f"{what}: relative error {relative_error(ours, theirs):.2e}"


def run_both(layer, torch_fn, x: np.ndarray) -> torch.Tensor:
    """Forward both, backward a random upstream gradient through both; return the torch tensors."""
    rng = np.random.default_rng(1)
    y = layer.forward(x)
    g = rng.standard_normal(y.shape)
    dx = layer.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch_fn(xt)
    yt.backward(torch.tensor(g))
    assert_close(y, yt, "output")
    assert_close(dx, xt.grad, "input gradient")
    return yt


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_linear(rng):
    layer = Linear(7, 5, rng=rng)
    layer.bias.data = rng.standard_normal(5)
    w = torch.tensor(layer.weight.data, requires_grad=True)
    b = torch.tensor(layer.bias.data, requires_grad=True)
    run_both(layer, lambda x: x @ w + b, rng.standard_normal((3, 7)))
    assert_close(layer.weight.grad, w.grad, "dW")
    assert_close(layer.bias.grad, b.grad, "db")


@pytest.mark.parametrize(
    "c_in, c_out, k, stride, padding, h, w",
    [
        (3, 4, 3, 1, 0, 7, 9),  # odd sizes
        (2, 3, 3, 2, 1, 8, 7),  # stride 2 and padding, rows and columns that do not divide evenly
        (3, 2, 5, 2, 2, 11, 10),
        (1, 6, 5, 1, 2, 12, 12),  # LeNet's C1 (padded)
        (4, 5, 1, 1, 0, 5, 6),  # 1x1 convolution
        (2, 2, 4, 3, 1, 10, 9),  # even kernel, stride 3
    ],
)
def test_conv2d(rng, c_in, c_out, k, stride, padding, h, w):
    layer = Conv2d(c_in, c_out, k, stride=stride, padding=padding, rng=rng)
    layer.bias.data = rng.standard_normal(c_out)
    wt = torch.tensor(layer.weight.data, requires_grad=True)
    bt = torch.tensor(layer.bias.data, requires_grad=True)
    run_both(layer, lambda x: F.conv2d(x, wt, bt, stride=stride, padding=padding), rng.standard_normal((2, c_in, h, w)))
    assert_close(layer.weight.grad, wt.grad, "dW")
    assert_close(layer.bias.grad, bt.grad, "db")


@pytest.mark.parametrize("k, stride, h, w", [(2, 2, 8, 8), (2, 2, 7, 9), (3, 2, 9, 8), (3, 1, 6, 7), (2, 3, 10, 11)])
def test_max_pool(rng, k, stride, h, w):
    run_both(MaxPool2d(k, stride=stride), lambda x: F.max_pool2d(x, k, stride), rng.standard_normal((2, 3, h, w)))


@pytest.mark.parametrize("k, stride, h, w", [(2, 2, 8, 8), (2, 2, 7, 9), (3, 2, 9, 8), (3, 1, 6, 7), (2, 3, 10, 11)])
def test_avg_pool(rng, k, stride, h, w):
    run_both(AvgPool2d(k, stride=stride), lambda x: F.avg_pool2d(x, k, stride), rng.standard_normal((2, 3, h, w)))


@pytest.mark.parametrize("layer, torch_fn", [(ReLU(), torch.relu), (Sigmoid(), torch.sigmoid), (Tanh(), torch.tanh)])
def test_activations(rng, layer, torch_fn):
    x = rng.standard_normal((4, 3, 5)) * 5
    x[0, 0, :2] = [-800.0, 800.0]  # the sigmoid must not overflow
    run_both(layer, torch_fn, x)


def test_flatten(rng):
    run_both(Flatten(), lambda x: x.flatten(1), rng.standard_normal((2, 3, 4, 5)))


@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5, 7)], ids=["1d", "2d"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm(rng, shape, training):
    c = shape[1]
    layer = (BatchNorm1d if len(shape) == 2 else BatchNorm2d)(c)
    layer.gamma.data, layer.beta.data = rng.standard_normal(c), rng.standard_normal(c)
    layer.running_mean[...] = rng.standard_normal(c)
    layer.running_var[...] = rng.uniform(0.5, 2, c)
    torch_bn = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(c).double()
    with torch.no_grad():
        torch_bn.weight.copy_(torch.tensor(layer.gamma.data))
        torch_bn.bias.copy_(torch.tensor(layer.beta.data))
        torch_bn.running_mean.copy_(torch.tensor(layer.running_mean))
        torch_bn.running_var.copy_(torch.tensor(layer.running_var))
    layer.training = training
    torch_bn.train(training)
    run_both(layer, torch_bn, rng.standard_normal(shape) * 3 + 1)
    assert_close(layer.gamma.grad, torch_bn.weight.grad, "dgamma")
    assert_close(layer.beta.grad, torch_bn.bias.grad, "dbeta")
    assert_close(layer.running_mean, torch_bn.running_mean, "running mean")
    assert_close(layer.running_var, torch_bn.running_var, "running var")


def test_batch_norm_inference_uses_running_statistics(rng):
    layer = BatchNorm2d(3)
    for _ in range(200):  # running statistics converge to the data's
        layer.forward(rng.standard_normal((8, 3, 4, 4)) * 2 + 5)
    layer.training = False
    y = layer.forward(rng.standard_normal((8, 3, 4, 4)) * 2 + 5)
    assert abs(y.mean()) < 0.1 and abs(y.std() - 1) < 0.1


def test_dropout_matches_torch_with_the_same_mask(rng):
    x = rng.standard_normal((50, 40))
    kept = torch.tensor(Dropout(0.3, rng=np.random.default_rng(5)).forward(x) != 0, dtype=torch.float64)
    # PyTorch's dropout with that mask is x * mask / (1 - p); the same seed draws the same mask
    run_both(Dropout(0.3, rng=np.random.default_rng(5)), lambda xt: xt * kept / 0.7, x)


def test_dropout_rate_and_inference(rng):
    layer = Dropout(0.3, rng=rng)
    x = np.ones((400, 500))
    y = layer.forward(x)
    assert abs((y == 0).mean() - 0.3) < 0.01  # 200,000 draws: 5 standard deviations is 0.005
    assert abs(y.mean() - 1) < 0.02  # inverted dropout keeps the expected activation
    layer.training = False
    assert np.array_equal(layer.forward(x), x) and np.array_equal(layer.backward(x), x)
    with pytest.raises(ValueError, match="got 1"):
        Dropout(1, rng=rng)
