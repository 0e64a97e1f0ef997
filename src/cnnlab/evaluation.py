"""Evaluating runs from their folders: each member alone, and their ensemble, optionally with
test-time augmentation.

An ensemble averages the members' softmax probabilities (AlexNet's Section 6: averaging the
predictions of several CNNs); with TTA each member's probabilities are first averaged over
its views (flips, or AlexNet's ten crops; see ``cnnlab.data.tta``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

from cnnlab.data import Batches, ImageDataset, load_dataset
from cnnlab.data.tta import TTA_MODES, tta_padding, tta_views
from cnnlab.errors import CnnlabError
from cnnlab.train.evaluate import EvalResult, metrics_from_probs, predict_probs
from cnnlab.train.loop import Run, resolve_device
from cnnlab.train.run import load_run


@torch.no_grad()
def predict_probs_tta(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    mode: str,
    crop_size: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities averaged over the TTA views of each batch (float32, CPU), and the
    labels. ``mode`` "none" is plain evaluation."""
    if mode not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {mode!r}; expected one of {', '.join(TTA_MODES)}")
    was_training = model.training
    model.eval()
    probs, labels = [], []
    for x, y in batches:
        views = tta_views(x, mode, crop_size)
        p = torch.stack([torch.softmax(_logits(model(v)).float(), dim=1) for v in views]).mean(0)
        probs.append(p.cpu())
        labels.append(y.cpu())
    model.train(was_training)
    return torch.cat(probs), torch.cat(labels)


def _logits(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output  # GoogLeNet-style (main, aux...)


@dataclass
class MemberResult:
    """One row of an evaluation report."""

    name: str  # run folder, or "ensemble"
    result: EvalResult
    probs: torch.Tensor  # (N, classes) averaged softmax, float32
    labels: torch.Tensor  # (N,)
    classes: list[str]  # class names in label order


def run_dataset(run: Run, split: str, *, data: str | None = None, data_root: str | None = None) -> ImageDataset:
    """A split of the run's dataset (or ``data``), with the validation hold-out the run trained with."""
    config = run.config
    return load_dataset(data or config.data, split, data_root or config.data_root, val_size=config.val_size, seed=config.seed)


def evaluate_runs(
    runs: Sequence[str | os.PathLike],
    *,
    data: str | None = None,
    split: str = "test",
    data_root: str | None = None,
    device: str = "auto",
    batch_size: int = 500,
    tta: str = "none",
    weights: str = "best",
) -> list[tuple[str, EvalResult]]:
    """(name, result) for each run, then ("ensemble", result) when there are several."""
    return [(m.name, m.result) for m in evaluate_members(
        runs, data=data, split=split, data_root=data_root, device=device, batch_size=batch_size, tta=tta, weights=weights
    )]


def evaluate_members(
    runs: Sequence[str | os.PathLike],
    *,
    data: str | None = None,
    split: str = "test",
    data_root: str | None = None,
    device: str = "auto",
    batch_size: int = 500,
    tta: str = "none",
    weights: str = "best",
) -> list[MemberResult]:
    """Like :func:`evaluate_runs`, keeping each member's probabilities (for the ensemble,
    confusion matrices and per-class tables). ``tta``: "none", "flip", "center", "10crop";
    the crop size of "center" and "10crop" is each model's ``default_input_size``."""
    if not runs:
        raise CnnlabError("no runs to evaluate; give one or more run folders")
    if tta not in TTA_MODES:
        raise CnnlabError(f"unknown test-time augmentation {tta!r}; expected one of {', '.join(TTA_MODES)}")
    dev = resolve_device(device)
    loaded = [load_run(r, weights=weights) for r in runs]
    data = data or loaded[0].config.data
    classes = loaded[0].data_info["classes"]
    for r in loaded[1:]:
        if r.data_info["classes"] != classes:
            raise CnnlabError(f"{r.path} was trained on other classes than {loaded[0].path}; cannot ensemble them")
    dataset = run_dataset(loaded[0], split, data=data, data_root=data_root)
    if list(dataset.classes) != list(classes):
        raise CnnlabError(f"{data} has classes {list(dataset.classes)[:5]}..., the run was trained on {classes[:5]}...")
    report: list[MemberResult] = []
    for r in loaded:
        model = r.model.to(dev)
        pad = r.data_info.get("pad", 0)
        crop = tuple(getattr(model, "default_input_size", dataset.image_size)[-2:])
        h, w = dataset.image_size[1] + 2 * pad, dataset.image_size[2] + 2 * pad
        extra = tta_padding(tta, (h, w), crop)
        batches = Batches(dataset, batch_size, device=dev, pad=pad + extra)
        if tta == "none":
            probs, labels = predict_probs(model, batches)
        else:
            probs, labels = predict_probs_tta(model, batches, tta, crop)
        report.append(MemberResult(str(r.path), metrics_from_probs(probs, labels, len(classes)), probs, labels, classes))
        model.to("cpu")
    if len(loaded) > 1:
        probs = torch.stack([m.probs for m in report]).mean(0)
        labels = report[0].labels
        report.append(MemberResult("ensemble", metrics_from_probs(probs, labels, len(classes)), probs, labels, classes))
    return report


def per_class_rows(classes: Sequence[str], results: Sequence[tuple[str, EvalResult]]) -> tuple[list[str], list[list[str]]]:
    """A per-class accuracy table: one row per class (with its number of test images), one
    column per result; the headers and the rows as strings."""
    headers = ["class", "images"] + [Path(name).name for name, _ in results]  # run folder names, not paths
    counts = results[0][1].confusion.sum(1).tolist()
    rows = []
    for i, name in enumerate(classes):
        rows.append([name, f"{counts[i]:,}"] + [f"{r.per_class_acc[i]:.2%}" for _, r in results])
    return headers, rows


def confusion_rows(classes: Sequence[str], confusion: torch.Tensor) -> tuple[list[str], list[list[str]]]:
    """The confusion matrix as a table: rows are true classes, columns predicted ones."""
    short = [c[:8] for c in classes]
    headers = ["true \\ predicted"] + short + ["total"]
    rows = [[classes[i]] + [str(int(v)) for v in confusion[i]] + [str(int(confusion[i].sum()))] for i in range(len(classes))]
    return headers, rows
