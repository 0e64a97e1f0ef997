"""Whole networks: the scratch MLP and LeNet-5 compute what cnnlab's PyTorch models compute,
a short training run lowers the loss, and (slow) full MNIST training reaches the claimed accuracy."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from cnnlab.cli import cli
from cnnlab.models import create_model
from cnnlab.scratch import MODELS, SoftmaxCrossEntropy, fit, lenet5, mlp, relative_error, standardise
from cnnlab.scratch.fit import RECIPES, limit_blas_threads

# scratch parameter name -> (cnnlab.models parameter name, transpose?) ; Linear weights are (in, out) here
LENET5_NAMES = {
    "0": "features.c1", "3": "features.c3", "6": "features.c5", "9": "classifier.f6", "11": "classifier.output",
}
MLP_NAMES = {"1": "layers.1", "3": "layers.3"}


def copy_torch_weights(scratch, torch_model, names: dict[str, str]) -> None:
    state = torch_model.state_dict()
    for name, p in scratch.params().items():
        index, kind = name.split(".")
        value = state[f"{names[index]}.{kind}"].double().numpy()
        p.data = value.T.copy() if value.ndim == 2 else value.copy()


@pytest.mark.parametrize("name, names, input_size", [("lenet5", LENET5_NAMES, 32), ("mlp", MLP_NAMES, 28)])
def test_scratch_network_equals_cnnlab_model(name, names, input_size):
    """Same weights, same logits and gradients as cnnlab.models' PyTorch version (float64)."""
    torch.manual_seed(0)
    torch_model = create_model(name).double()
    scratch = MODELS[name]()
    copy_torch_weights(scratch, torch_model, names)
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((3, 1, 28, 28)), rng.integers(0, 10, 3)

    loss_fn = SoftmaxCrossEntropy()
    loss_fn(scratch.forward(x), t)
    scratch.backward(loss_fn.backward())
    xt = torch.tensor(x)
    xt = F.pad(xt, (2, 2, 2, 2)) if input_size == 32 else xt  # the paper's 32x32 input = C1's padding here
    logits = torch_model(xt)
    F.cross_entropy(logits, torch.tensor(t)).backward()

    assert relative_error(scratch.forward(x), logits.detach().numpy()) < 1e-10
    grads = {n: p.grad.double().numpy() for n, p in torch_model.named_parameters()}
    for pname, p in scratch.params().items():
        index, kind = pname.split(".")
        expected = grads[f"{names[index]}.{kind}"]
        assert relative_error(p.grad, expected.T if expected.ndim == 2 else expected) < 1e-8, pname


def test_parameter_counts_match_the_papers():
    assert lenet5().num_params() == 61_706
    assert mlp().num_params() == 784 * 300 + 300 + 300 * 10 + 10


def first_mnist_images(root: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n MNIST training images from the gzip IDX files (reads only what it needs)."""
    with gzip.open(root / "mnist" / "train-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(16 + n * 784)[16:], np.uint8).reshape(n, 1, 28, 28)
    with gzip.open(root / "mnist" / "train-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(8 + n)[8:], np.uint8).astype(np.int64)
    return images, labels


@pytest.mark.parametrize("name", ["mlp", "lenet5"])
def test_training_smoke(data_root, name):
    """A couple of hundred real digits, float32, three epochs: the loss goes down, accuracy goes up."""
    images, labels = first_mnist_images(data_root, 192)
    (x,) = standardise(images)
    model = MODELS[name](seed=0).astype(np.float32)
    recipe = RECIPES[name]
    history = fit(model, (x, labels), (x, labels), epochs=3, batch_size=32, lr=recipe.lr, momentum=recipe.momentum)
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    assert history[-1]["test_acc"] > 0.8
    assert all(p.data.dtype == np.float32 for p in model.params().values())


def test_cli_help_lists_the_options():
    result = CliRunner().invoke(cli, ["scratch-train", "--help"])
    assert result.exit_code == 0
    options = ("--model", "--epochs", "--batch-size", "--lr", "--momentum", "--weight-decay", "--seed", "--data-root")
    assert all(option in result.output for option in options)


def train_on_mnist(name: str, data_root: Path) -> list[dict[str, float]]:
    """What `cnnlab scratch-train --model <name>` runs, with the model's default recipe."""
    from cnnlab.data import load_dataset

    train, test = load_dataset("mnist", "trainval", data_root), load_dataset("mnist", "test", data_root)
    x_train, x_test = standardise(train.images.numpy(), test.images.numpy())
    recipe = RECIPES[name]
    limit_blas_threads(1)
    return fit(
        MODELS[name](seed=0).astype(np.float32),
        (x_train, train.labels.numpy()),
        (x_test, test.labels.numpy()),
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
    )


@pytest.mark.slow
def test_mlp_reaches_97_percent_on_mnist(data_root):
    assert train_on_mnist("mlp", data_root)[-1]["test_acc"] >= 0.97


@pytest.mark.slow
def test_lenet5_reaches_98_percent_on_mnist(data_root):
    assert train_on_mnist("lenet5", data_root)[-1]["test_acc"] >= 0.98


def test_train_eval_and_astype_reach_every_layer():
    from cnnlab.scratch import BatchNorm1d, Dropout, Linear, Sequential

    rng = np.random.default_rng(0)
    inner = Sequential(Linear(3, 4, rng=rng), BatchNorm1d(4))
    net = Sequential(inner, Dropout(0.5, rng=rng), Linear(4, 2, rng=rng))
    net.eval().astype(np.float32)
    assert not any(layer.training for layer in [*inner.layers, *net.layers])
    assert inner.layers[1].running_var.dtype == np.float32
    assert net.forward(np.ones((2, 3), np.float32)).dtype == np.float32
    net.train()
    assert all(layer.training for layer in [*inner.layers, *net.layers])
