"""Losses, weight decay and the optimisers against PyTorch; gradient descent's behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab.scratch import (
    SGD,
    BinaryCrossEntropy,
    Linear,
    MSELoss,
    Sequential,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
    fit,
    l2_penalty,
    relative_error,
)

TOL = 1e-6


def check_loss(loss_fn, y: np.ndarray, t: np.ndarray, torch_loss) -> None:
    value, grad = loss_fn(y, t), loss_fn.backward()
    yt = torch.tensor(y, requires_grad=True)
    expected = torch_loss(yt, torch.tensor(t))
    expected.backward()
    assert abs(value - expected.item()) < TOL * abs(expected.item())
    assert relative_error(grad, yt.grad.numpy()) < TOL


def test_softmax_cross_entropy():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((7, 5)) * 4
    logits[0, 0] = 1000.0  # the max shift keeps exp finite
    check_loss(SoftmaxCrossEntropy(), logits, rng.integers(0, 5, 7), F.cross_entropy)


def test_softmax_cross_entropy_delta_is_prediction_minus_target():
    logits = np.array([[2.0, 1.0, 0.1]])
    loss = SoftmaxCrossEntropy()
    loss(logits, np.array([0]))
    probs = np.exp(logits) / np.exp(logits).sum()
    assert np.allclose(loss.backward(), probs - np.array([[1.0, 0.0, 0.0]]))


def test_binary_cross_entropy():
    rng = np.random.default_rng(1)
    check_loss(BinaryCrossEntropy(), rng.uniform(0.01, 0.99, (6, 3)), rng.integers(0, 2, (6, 3)).astype(float),
               F.binary_cross_entropy)


def test_sigmoid_then_binary_cross_entropy_gives_prediction_error():
    rng = np.random.default_rng(2)
    a, t = rng.standard_normal((8, 1)), rng.integers(0, 2, (8, 1)).astype(float)
    sigmoid, loss = Sigmoid(), BinaryCrossEntropy()
    y = sigmoid.forward(a)
    loss(y, t)
    assert np.allclose(sigmoid.backward(loss.backward()), (y - t) / len(t))


def test_mse():
    rng = np.random.default_rng(3)
    check_loss(MSELoss(), rng.standard_normal((5, 4)), rng.standard_normal((5, 4)), F.mse_loss)


def small_net(seed: int) -> Sequential:
    rng = np.random.default_rng(seed)
    net = Sequential(Linear(6, 5, rng=rng), Tanh(), Linear(5, 3, rng=rng))
    for p in net.params().values():
        p.data = p.data + rng.standard_normal(p.data.shape) * 0.1  # nonzero biases
    return net


@pytest.mark.parametrize("momentum, alpha", [(0.0, 0.0), (0.9, 0.0), (0.9, 0.01), (0.5, 0.1)])
def test_sgd_with_weight_decay_matches_torch(momentum, alpha):
    """Five steps of SGD (momentum, L2 on weights only) give PyTorch's weights."""
    net = small_net(0)
    torch_params = {name: torch.tensor(p.data, requires_grad=True) for name, p in net.params().items()}
    groups = [
        {"params": [torch_params[n] for n, p in net.params().items() if p.decay], "weight_decay": alpha},
        {"params": [torch_params[n] for n, p in net.params().items() if not p.decay], "weight_decay": 0.0},
    ]
    torch_opt = torch.optim.SGD(groups, lr=0.1, momentum=momentum)
    ours = SGD(net.params().values(), lr=0.1, momentum=momentum)
    loss_fn = SoftmaxCrossEntropy()
    rng = np.random.default_rng(1)
    for _ in range(5):
        x, t = rng.standard_normal((4, 6)), rng.integers(0, 3, 4)
        loss_fn(net.forward(x), t)
        net.backward(loss_fn.backward())
        l2_penalty(net.params().values(), alpha)
        ours.step()

        p = torch_params
        h = torch.tanh(torch.tensor(x) @ p["0.weight"] + p["0.bias"])
        torch_opt.zero_grad()
        F.cross_entropy(h @ p["2.weight"] + p["2.bias"], torch.tensor(t)).backward()
        torch_opt.step()
    for name, param in net.params().items():
        assert relative_error(param.data, torch_params[name].detach().numpy()) < TOL, name


def test_l2_penalty_value_and_gradient():
    net = small_net(0)
    for p in net.params().values():
        p.grad = np.zeros_like(p.data)
    penalty = l2_penalty(net.params().values(), 0.5)
    weights = [p for p in net.params().values() if p.decay]
    assert len(weights) == 2  # biases are not decayed
    assert penalty == pytest.approx(0.25 * sum((p.data**2).sum() for p in weights))
    assert all(np.allclose(p.grad, 0.5 * p.data) for p in weights)


def test_sgd_rejects_bad_settings():
    with pytest.raises(ValueError, match="got -1"):
        SGD([], lr=-1)
    with pytest.raises(ValueError, match="got 1.5"):
        SGD([], lr=0.1, momentum=1.5)


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian blobs in 6 dimensions: an easy classification problem."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((3, 6)) * 3
    labels = rng.integers(0, 3, n)
    return centres[labels] + rng.standard_normal((n, 6)), labels


def test_full_batch_gradient_descent_decreases_the_loss_every_epoch():
    """With the whole training set per step and a small step, the training loss never goes up."""
    history = fit(small_net(0), blobs(200, 0), epochs=30, batch_size=None, lr=0.1)
    losses = [h["train_loss"] for h in history]
    assert all(b < a for a, b in zip(losses, losses[1:]))
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("batch_size, momentum", [(1, 0.0), (16, 0.9)], ids=["sgd", "minibatch-momentum"])
def test_sgd_and_minibatch_sgd_learn(batch_size, momentum):
    train = blobs(300, 0)
    history = fit(small_net(0), train, blobs(300, 0), epochs=3, batch_size=batch_size, lr=0.01, momentum=momentum)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_acc"] > 0.9
