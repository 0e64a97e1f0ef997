"""Hand-designed vs learned features: HoG + SVM against a CNN trained end to end.

The pattern-recognition lecture contrasts the pre-2012 pipeline, a hand-designed descriptor
fed to a support vector machine (histograms of oriented gradients: Dalal & Triggs 2005,
https://doi.org/10.1109/CVPR.2005.177, with a linear SVM as in their Sec. 4), with features
learned end to end by a CNN (LeCun et al. 1998 on digits; Krizhevsky et al. 2012 on ImageNet).
On three datasets of rising difficulty (MNIST digits, CIFAR-10 objects at 32x32, Imagenette
photographs) we measure:

- raw pixels + linear SVM (the baseline without features),
- HoG + linear SVM (Dalal & Triggs's pipeline),
- HoG + RBF-kernel SVM (the non-linear classifier the classical pipeline could afford),
- a CNN trained from scratch with a shipped recipe on a short schedule
  (LeNet-5 on MNIST; ResNet-20 on CIFAR-10 and on Imagenette),

each with test accuracy, training time (features + fit) and feature dimension. The classical
part is scikit-image's ``hog`` (:mod:`cnnlab.analysis.hog`) and scikit-learn's ``LinearSVC``
and ``SVC``. Everything is subsampled to fit a shared CPU; the sizes are in the report.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.analysis.hog import HogParams, hog_batch, hog_dimension
from cnnlab.analysis.table import to_markdown
from cnnlab.data import load_dataset
from cnnlab.data.root import data_root
from cnnlab.experiments.common import (
    Outcome,
    Settings,
    Verdict,
    derived_dataset,
    register_experiment,
    test_error,
    train_quiet,
)
from cnnlab.viz.experiment_plots import plot_seeded_bars
from cnnlab.viz.hog import plot_hog

LINEAR_C = 0.01  # LinearSVC's C, Dalal & Triggs's soft-margin setting (Sec. 4); not tuned here
RBF_C = 10.0  # SVC's C for the RBF kernel (gamma="scale": 1 / (D * feature variance)); not tuned
SE_FACTOR = 2.0  # "beats" = higher test accuracy by more than 2 standard errors of the difference

METHODS = ("pixels + linear SVM", "HoG + linear SVM", "HoG + RBF SVM", "CNN")

# Short schedules of the shipped recipes (the full ones take hours on this CPU).
LENET_RECIPE = dict(model="lenet5", model_options={"activation": "relu", "pool": "max"}, optimizer="adam", lr=0.003,
                    schedule="onecycle", batch_size=128, augment="none")  # recipes/lenet5-mnist.toml
# recipes/resnet-cifar.toml's optimiser and augmentation; NOTE: one-cycle instead of its step decay, which is
# made for 182 epochs and leaves a few-epoch run at a high learning rate for most of it.
RESNET_RECIPE = dict(model="resnet20", optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="onecycle",
                     batch_size=128, augment="cifar")


@dataclass(frozen=True)
class Task:
    """One dataset of the comparison, with its sizes (full mode, quick mode) and HoG parameters."""

    label: str
    base: str  # a registered dataset; "imagenette" is read as image folders under the data root
    side: int | None  # resize every image to side x side first (None: as stored)
    train: tuple[int, int]  # training images (full, quick): a seeded random subset of the training split
    test: tuple[int | None, int]  # test images (full, quick); None: the whole test split
    rbf_train: tuple[int, int]  # training images for the RBF SVM (its fit grows with n^2)
    epochs: tuple[int, int]  # CNN epochs (full, quick)
    hog: HogParams
    cnn: dict = field(default_factory=dict)  # recipe


TASKS = (
    # 4x4 cells on a 28x28 digit: 7x7 cells, about a stroke width each (8x8 would leave 3x3).
    Task("MNIST", "mnist", None, (10000, 2000), (None, 1000), (5000, 2000), (3, 2), HogParams(cell=4), LENET_RECIPE),
    # The same 4x4 cells at 32x32; colour gradients: the strongest channel per pixel (Sec. 6.2).
    Task("CIFAR-10 (JPEG)", "cifar10-jpeg", None, (5000, 1000), (2000, 500), (5000, 1000), (5, 2), HogParams(cell=4),
         RESNET_RECIPE),
    # The 160x160 photographs resized to 32x32 so ResNet-20 fits the CPU budget; 4x4 cells as CIFAR.
    Task("Imagenette (32 px)", "imagenette", 32, (3000, 500), (1500, 300), (3000, 500), (5, 2), HogParams(cell=4),
         RESNET_RECIPE),
)


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the image decoders)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class _Clock:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), _cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, _cpu_seconds() - self.cpu


def _resize(side: int):
    def transform(images: torch.Tensor) -> torch.Tensor:
        out = [F.interpolate(chunk.float(), size=(side, side), mode="bilinear", antialias=True, align_corners=False)
               for chunk in images.split(500)]
        return torch.cat(out).round().clamp(0, 255).to(torch.uint8)

    return transform


def task_dataset(task: Task, settings: Settings) -> str:
    """Register (once) and name the subsampled (and resized) dataset of ``task``."""
    i = 1 if settings.quick else 0
    train, test = task.train[i], task.test[i]
    base = task.base
    if base == "imagenette":  # the ImageNet-layout folders (train/, val/) of the data root
        base = f"folder:{data_root(settings.data_root) / 'imagenette'}"
    name = f"{task.base}~hog-vs-cnn-{train}-{test or 'all'}" + (f"-{task.side}px" if task.side else "")
    return derived_dataset(base, name, transform=_resize(task.side) if task.side else None, train_size=train,
                           test_size=test, description=f"{task.label}: {train} training images for hog-vs-cnn")


def _pixels(images: torch.Tensor) -> np.ndarray:
    return (images.reshape(len(images), -1).float() / 255.0).numpy()


def _subset(n: int, cap: int) -> np.ndarray:
    """A fixed seeded random ``cap`` of ``n`` indices (all when cap >= n)."""
    if cap >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).permutation(n)[:cap])


def standard_error(a: float, b: float, n: int) -> float:
    """Standard error of the difference of two accuracies, each measured on ``n`` test images."""
    return math.sqrt((a * (1 - a) + b * (1 - b)) / n)


def _classical(task: Task, train, test, settings: Settings) -> dict[str, dict[str, Any]]:
    from sklearn.svm import SVC, LinearSVC

    results: dict[str, dict[str, Any]] = {}
    y_train, y_test = train.labels.numpy(), test.labels.numpy()
    with _Clock() as clock:
        x_train = _pixels(train.images)
        raw = LinearSVC(C=LINEAR_C, dual=False, max_iter=2000).fit(x_train, y_train)
    acc = float((raw.predict(_pixels(test.images)) == y_test).mean())
    results[METHODS[0]] = dict(accuracy=acc, dimension=int(x_train.shape[1]), train_wall_s=clock.wall, train_cpu_s=clock.cpu,
                               train_images=len(y_train))
    with _Clock() as features:
        h_train = hog_batch(train.images, task.hog)
    h_test = hog_batch(test.images, task.hog)
    with _Clock() as clock:
        linear = LinearSVC(C=LINEAR_C, dual=False, max_iter=2000).fit(h_train, y_train)
    acc = float((linear.predict(h_test) == y_test).mean())
    results[METHODS[1]] = dict(accuracy=acc, dimension=int(h_train.shape[1]), train_wall_s=features.wall + clock.wall,
                               train_cpu_s=features.cpu + clock.cpu, train_images=len(y_train))
    pick = _subset(len(y_train), task.rbf_train[1 if settings.quick else 0])
    with _Clock() as clock:
        rbf = SVC(C=RBF_C, kernel="rbf", gamma="scale").fit(h_train[pick], y_train[pick])
    acc = float((rbf.predict(h_test) == y_test).mean())
    share = len(pick) / len(y_train)
    results[METHODS[2]] = dict(accuracy=acc, dimension=int(h_train.shape[1]), train_images=len(pick),
                               train_wall_s=share * features.wall + clock.wall, train_cpu_s=share * features.cpu + clock.cpu,
                               support_vectors=int(rbf.support_vectors_.shape[0]))
    for label, r in results.items():
        print(f"  {task.label}, {label}: test accuracy {100 * r['accuracy']:.2f}% ({r['train_cpu_s']:.0f} s CPU)", flush=True)
    return results


def _cnn(task: Task, data: str, settings: Settings) -> dict[str, Any]:
    epochs = task.epochs[1 if settings.quick else 0]
    with _Clock() as clock:
        run = train_quiet(settings, f"{task.base}-{task.cnn['model']}", data=data, val_size=0, epochs=epochs,
                          eval_test_every_epoch=False, **task.cnn)
    head = [m for m in run.model.modules() if isinstance(m, nn.Linear)][-1] if run.model is not None else None
    return dict(accuracy=1.0 - test_error(run), dimension=int(head.in_features) if head is not None else None,
                train_wall_s=clock.wall, train_cpu_s=clock.cpu, epochs=epochs, model=task.cnn["model"],
                parameters=sum(p.numel() for p in run.model.parameters()) if run.model is not None else None)


@register_experiment(
    "hog-vs-cnn",
    "Hand-designed vs learned features: HoG + SVM against a CNN",
    "Hand-designed HoG features beat raw pixels for a linear SVM, but features learned end to end by a CNN "
    "beat HoG + SVM, and their advantage is larger on natural images (CIFAR-10, Imagenette) than on digits (MNIST).",
)
def run(settings: Settings) -> Outcome:
    results: dict[str, dict[str, dict[str, Any]]] = {}
    sizes: dict[str, dict[str, Any]] = {}
    figures = {}
    for task in TASKS:
        data = task_dataset(task, settings)
        with _Clock() as loading:
            train = load_dataset(data, "trainval", settings.data_root)
            test = load_dataset(data, "test", settings.data_root)
        sizes[task.label] = dict(train=len(train), test=len(test), image=list(train.image_size), dataset=data,
                                 load_cpu_s=loading.cpu, hog=task.hog.describe(),
                                 hog_dimension=hog_dimension(tuple(train.image_size[1:]), task.hog))
        print(f"{task.label}: {len(train):,} training / {len(test):,} test images of {train.image_size}", flush=True)
        results[task.label] = _classical(task, train, test, settings)
        results[task.label][METHODS[3]] = _cnn(task, data, settings)
        figures[f"hog-{task.base}"] = plot_hog(test.images[0], task.hog, title=f"{task.label}, test image 0 "
                                                                                f"(class {test.classes[int(test.labels[0])]})")

    verdicts, margins = _verdicts(results, sizes)
    rows = []
    for task in TASKS:
        for method in METHODS:
            r = results[task.label][method]
            note = f"{r['epochs']} epochs, {r['model']}" if method == "CNN" else (
                f"{r['train_images']:,} images, {r['support_vectors']:,} support vectors" if "RBF" in method else
                f"{r['train_images']:,} images")
            rows.append([task.label, method, f"{100 * r['accuracy']:.2f}%", f"{r['dimension']:,}",
                         f"{r['train_cpu_s']:.0f} s", f"{r['train_wall_s']:.0f} s", note])
    table = to_markdown(["dataset", "method", "test accuracy", "feature dimension", "training CPU time",
                         "training wall time", "trained on"], rows)
    figures["accuracy"] = plot_seeded_bars(
        [t.label for t in TASKS], {m: [[results[t.label][m]["accuracy"]] for t in TASKS] for m in METHODS},
        ylabel="test accuracy (%)", title="Test accuracy: raw pixels, HoG (linear / RBF SVM) and a CNN" + (" (quick mode)" if settings.quick else ""))
    chance = figures["accuracy"].axes[0]
    chance.axhline(10, color="0.3", ls="--", lw=0.8)
    chance.annotate("chance (10 classes)", (len(TASKS) - 0.5, 10), ha="right", va="bottom", fontsize=7, color="0.3")
    total_cpu = sum(s["load_cpu_s"] for s in sizes.values()) + sum(
        r["train_cpu_s"] for res in results.values() for r in res.values())
    setup = _setup(settings, sizes)
    notes = [
        "Subsampled to fit a shared 2-core CPU: "
        + ", ".join(f"{k} {v['train']:,} training / {v['test']:,} test images" for k, v in sizes.items())
        + ". "
        "Each subset is a fixed seeded random draw, the same for every method.",
        "The CNNs run short schedules of the shipped recipes (LeNet-5: recipes/lenet5-mnist.toml with fewer epochs; "
        "ResNet-20: recipes/resnet-cifar.toml's optimiser and augmentation with a one-cycle schedule over a few epochs "
        "instead of 182 epochs of step decay), so they are below their published accuracies; the SVMs' C values are fixed, not tuned (linear: 0.01 as Dalal & Triggs; RBF: 10, gamma = scale).",
        "Training time is features + fit on the training images (for the CNN: the whole training run including its "
        "final test evaluation); CPU time counts both cores' work, wall time is what a shared machine gave.",
        f"Total CPU time of the measured steps: {total_cpu / 60:.1f} minutes.",
    ]
    metrics = {"results": results, "sizes": sizes, "margins": margins, "total_cpu_s": total_cpu,
               "linear_C": LINEAR_C, "rbf_C": RBF_C}
    return Outcome(setup, verdicts, metrics, figures, [table], notes)


def _verdicts(results: dict, sizes: dict) -> tuple[list[Verdict], dict[str, float]]:
    rule = f"accuracy difference > {SE_FACTOR:g} standard errors of the difference on the test images"
    hog_wins, cnn_wins, margins, texts_hog, texts_cnn = [], [], {}, [], []
    for task in TASKS:
        r, n = results[task.label], sizes[task.label]["test"]
        raw, hog = r[METHODS[0]]["accuracy"], r[METHODS[1]]["accuracy"]
        se = standard_error(raw, hog, n)
        hog_wins.append(hog - raw > SE_FACTOR * se)
        texts_hog.append(f"{task.label} {100 * raw:.2f}% -> {100 * hog:.2f}% (2 SE {200 * se:.2f} pp)")
        best_label = max(METHODS[1:3], key=lambda m: r[m]["accuracy"])
        best, cnn = r[best_label]["accuracy"], r[METHODS[3]]["accuracy"]
        se = standard_error(best, cnn, n)
        cnn_wins.append(cnn - best > SE_FACTOR * se)
        margins[task.label] = cnn - best
        texts_cnn.append(f"{task.label}: CNN {100 * cnn:.2f}% vs {best_label} {100 * best:.2f}% (2 SE {200 * se:.2f} pp)")
    digits, natural = TASKS[0].label, [t.label for t in TASKS[1:]]
    verdicts = [
        Verdict("HoG + linear SVM beats raw pixels + linear SVM on every dataset", "; ".join(texts_hog), rule, all(hog_wins)),
        Verdict("a CNN beats the better HoG pipeline (linear or RBF SVM) on every dataset", "; ".join(texts_cnn), rule,
                all(cnn_wins)),
        Verdict("the CNN's margin over the better HoG pipeline is larger on natural images than on digits",
                "; ".join(f"{k}: {100 * v:+.2f} pp" for k, v in margins.items()),
                f"the margin on each of {', '.join(natural)} is positive and exceeds the margin on {digits}",
                all(0 < margins[k] and margins[k] > margins[digits] for k in natural)),
    ]
    return verdicts, margins


def _setup(settings: Settings, sizes: dict) -> str:
    lines = [
        "Three pipelines on the same images, per dataset: raw pixels scaled to [0, 1] + `LinearSVC` (one-vs-rest, "
        f"squared hinge, C = {LINEAR_C}); HoG (scikit-image `hog`, L2-Hys blocks, unsigned 9-bin orientations; colour "
        "images: the gradient of the strongest channel) + the same `LinearSVC`; HoG + `SVC` with an RBF kernel "
        f"(C = {RBF_C}, gamma = scale); and a CNN trained from scratch on the images (LeNet-5 with ReLU and max pooling, "
        "Adam one-cycle lr 0.003, on MNIST; ResNet-20, SGD momentum 0.9, one-cycle peak lr 0.1, weight decay 1e-4, "
        "random 4-pixel-shift crops and flips, on CIFAR-10 and Imagenette). The CNN's feature dimension is the width of "
        "the learned representation its final linear classifier reads (LeNet-5: 84; ResNet-20: 64).",
        "",
    ]
    rows = [[k, f"{v['train']:,}", f"{v['test']:,}", "x".join(str(s) for s in v["image"]), v["hog"], f"{v['hog_dimension']:,}"]
            for k, v in sizes.items()]
    lines.append(to_markdown(["dataset", "training images", "test images", "image (C x H x W)", "HoG parameters",
                              "HoG dimension"], rows))
    if settings.quick:
        lines += ["", "Quick mode: a few hundred to 2,000 images per dataset and one CNN epoch; the numbers only show that "
                      "the pipeline runs."]
    return "\n".join(lines)
