"""`cnnlab scratch-train` prints the metrics cnnlab.scratch.fit computes for the same run."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from cnnlab.data import DatasetSpec, get_dataset_spec, load_dataset, register_dataset
from cnnlab.errors import UnknownNameError
from cnnlab.scratch import MODELS
from cnnlab.scratch.fit import fit, limit_blas_threads, standardise
from tests.cli.conftest import run_cli

SMALL = "test-scratch-mnist"  # 600 training and 200 test MNIST digits: seconds, not minutes


@pytest.fixture(scope="module")
def small_mnist(data_root):
    train, test = load_dataset("mnist", "trainval", data_root), load_dataset("mnist", "test", data_root)
    parts = {"train": (train.images[:600], train.labels[:600]), "test": (test.images[:200], test.labels[:200])}

    def load(root, split, download):
        return *parts[split], "the first MNIST images"

    try:
        get_dataset_spec(SMALL)
    except UnknownNameError:
        register_dataset(DatasetSpec(SMALL, tuple(str(d) for d in range(10)), load, val_size=0))
    return parts


def _epoch_lines(err: str) -> list[dict[str, str]]:
    lines = [ln for ln in err.splitlines() if ln.startswith("epoch ")]
    return [dict(re.findall(r"(\w+) (\S+)", ln)) for ln in lines]


def test_scratch_train_prints_what_fit_returns(small_mnist, capsys):
    code, out, err = run_cli(["scratch-train", "--model", "mlp", "--data", SMALL, "--epochs", "2", "--batch-size", "32",
                              "--lr", "0.05", "--seed", "4"], capsys)
    assert code == 0, err
    model = MODELS["mlp"](num_classes=10, seed=4).astype(np.float32)
    assert f"scratch mlp: {model.num_params():,} parameters, 600 training images" in err
    (x_train, y_train), (x_test, y_test) = small_mnist["train"], small_mnist["test"]
    x_train, x_test = standardise(x_train.numpy(), x_test.numpy())
    limit_blas_threads(1)
    history = fit(model, (x_train, y_train.numpy()), (x_test, y_test.numpy()), epochs=2, batch_size=32, lr=0.05,
                  momentum=0.9, weight_decay=0.0, seed=4)
    printed = _epoch_lines(err)
    assert [p["epoch"] for p in printed] == ["1", "2"]
    for p, h in zip(printed, history, strict=True):
        assert p["train_loss"] == f"{h['train_loss']:.4g}"
        assert p["train_acc"] == f"{h['train_acc']:.2%}" and p["test_acc"] == f"{h['test_acc']:.2%}"
    assert history[-1]["test_acc"] > 0.7  # 600 digits are enough for a 784-300-10 MLP to read most


def test_scratch_train_rejects_images_of_another_shape(capsys):
    def load(root, split, download):
        return torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]), "zeros"

    try:
        get_dataset_spec("test-scratch-rgb")
    except UnknownNameError:
        register_dataset(DatasetSpec("test-scratch-rgb", ("a", "b"), load, val_size=0))
    code, _, err = run_cli(["scratch-train", "--data", "test-scratch-rgb"], capsys)
    assert code != 0 and "the scratch models take 1x28x28 images; test-scratch-rgb has (3, 8, 8)" in err
