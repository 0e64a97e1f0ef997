"""Training a classifier with the NumPy engine: mini-batches, backprop, SGD, evaluation.

One step is the whole algorithm of the lectures:
    forward:   logits = model(x),  E = cross-entropy(logits, t) (+ alpha/2 ||w||^2)
    backward:  delta = (softmax(logits) - t) / N, passed back through every layer
    update:    w <- w - lr v,  v <- momentum v + dE/dw

``fit`` reports progress through an optional object with ``start_epoch(epoch, total_images)``,
``advance(images, loss_sum, correct)`` and ``end_epoch(metrics)`` (the CLI passes cnnlab's
``TrainProgress``; this package imports nothing from the rest of cnnlab).
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Protocol

import numpy as np

from cnnlab.scratch.losses import SoftmaxCrossEntropy, l2_penalty
from cnnlab.scratch.model import Sequential
from cnnlab.scratch.optim import SGD


@dataclass(frozen=True)
class Recipe:
    """Default hyperparameters for training one of ``model.MODELS`` on MNIST."""

    epochs: int
    batch_size: int  # images per SGD step
    lr: float  # learning rate per step (the loss is a batch mean)
    momentum: float  # heavy-ball coefficient mu in v <- mu v + g
    weight_decay: float = 0.0  # alpha in E + alpha/2 ||w||^2


# Chosen to reach the tests' accuracies in as few epochs as possible on a CPU.
RECIPES: dict[str, Recipe] = {
    "mlp": Recipe(epochs=5, batch_size=64, lr=0.02, momentum=0.9),
    "lenet5": Recipe(epochs=3, batch_size=64, lr=0.05, momentum=0.9),
}


class Progress(Protocol):
    def start_epoch(self, epoch: int, total_images: int) -> None: ...
    def advance(self, images: int, loss_sum: float, correct: int) -> None: ...
    def end_epoch(self, metrics: Mapping[str, float]) -> None: ...


def limit_blas_threads(n: int = 1) -> bool:
    """Ask NumPy's OpenBLAS to use ``n`` threads; returns whether it could.

    OpenBLAS starts a busy-waiting thread per core. On a machine shared with other jobs those
    threads fight over the cores and the small matrix products here (64 x 150 @ 150 x 16) get
    10-20x slower than on one thread, so the trainer asks for one. Best effort: wheels of NumPy
    built against another BLAS are left alone.
    """
    for lib in sorted((Path(np.__file__).parent.parent / "numpy.libs").glob("*openblas*")):
        blas = ctypes.CDLL(str(lib))  # already loaded by NumPy: this returns the same library
        for symbol in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads"):
            if hasattr(blas, symbol):
                getattr(blas, symbol)(ctypes.c_int(n))
                return True
    return False


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """uint8 images to float32 with zero mean and unit variance, using the training set's statistics."""
    scaled = [a.astype(np.float32) / 255 for a in (train, *others)]
    mean, std = scaled[0].mean(), scaled[0].std()
    return [(a - mean) / std for a in scaled]


def minibatches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Indices of a random permutation of range(n), batch_size at a time (the last batch may be smaller)."""
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def accuracy(model: Sequential, images: np.ndarray, labels: np.ndarray, *, batch_size: int = 250) -> float:
    """Top-1 accuracy in inference mode."""
    model.eval()
    correct = sum(
        int((model.forward(images[i : i + batch_size]).argmax(axis=1) == labels[i : i + batch_size]).sum())
        for i in range(0, len(images), batch_size)
    )
    model.train()
    return correct / len(images)


def fit(
    model: Sequential,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    epochs: int,
    batch_size: int | None,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` on float images and integer labels; returns one metrics dict per epoch.

    ``batch_size=None`` is full-batch gradient descent, ``1`` is SGD, anything else mini-batch SGD.
    """
    images, labels = train
    n = len(images)
    batch_size = batch_size or n
    rng = np.random.default_rng(seed)
    loss_fn = SoftmaxCrossEntropy()
    optimizer = SGD(model.params().values(), lr=lr, momentum=momentum)
    model.train()
    history = []
    for epoch in range(1, epochs + 1):
        if progress is not None:
            progress.start_epoch(epoch, n)
        t0 = time.perf_counter()
        loss_sum, correct = 0.0, 0
        for idx in minibatches(n, batch_size, rng):
            x, t = images[idx], labels[idx]
            logits = model.forward(x)
            loss = loss_fn(logits, t)
            model.backward(loss_fn.backward())
            l2_penalty(model.params().values(), weight_decay)  # adds alpha * w to the weights' gradients
            optimizer.step()
            batch_correct = int((logits.argmax(axis=1) == t).sum())
            loss_sum, correct = loss_sum + loss * len(idx), correct + batch_correct
            if progress is not None:
                progress.advance(len(idx), loss * len(idx), batch_correct)
        seconds = time.perf_counter() - t0
        metrics = {"epoch": epoch, "train_loss": loss_sum / n, "train_acc": correct / n}
        if test is not None:
            metrics["test_acc"] = accuracy(model, *test)
        metrics |= {"images_per_s": n / seconds, "time_s": seconds}
        history.append(metrics)
        if progress is not None:
            progress.end_epoch(metrics)
    return history
