"""Evaluation: one prediction loop (:func:`predict_probs`) that every caller uses (validation
in the loop, ``cnnlab eval``, TTA, ensembles, ``predict``, the experiments); top-k error,
per-class accuracy and the confusion matrix from its probabilities.

An ensemble averages the members' softmax probabilities (AlexNet's Section 6: averaging the
predictions of several CNNs); with TTA each member's probabilities are first averaged over
its views (flips, or AlexNet's ten crops; see ``cnnlab.data.tta``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data import Batches, ImageDataset, load_dataset
from cnnlab.data.tta import TTA_MODES, tta_padding, tta_views
from cnnlab.errors import CnnlabError
from cnnlab.models import get_model_info, split_outputs
from cnnlab.training.device import autocast, resolve_device
from cnnlab.training.run import Run, load_run


@dataclass
class EvalResult:
    top1_err: float  # fraction of images whose true class is not the top prediction
    top5_err: float  # ... not among the five most probable (all classes if fewer than 5)
    loss: float  # mean cross-entropy of the averaged probabilities
    per_class_acc: list[float]
    confusion: torch.Tensor  # (true, predicted) counts, int64
    num_images: int

    @property
    def top1_acc(self) -> float:
        return 1.0 - self.top1_err

    def to_dict(self) -> dict:
        return {
            "top1_err": self.top1_err,
            "top5_err": self.top5_err,
            "top1_acc": self.top1_acc,
            "loss": self.loss,
            "per_class_acc": self.per_class_acc,
            "num_images": self.num_images,
        }


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    amp: bool = False,
    tta: str = "none",
    crop_size: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities (N, classes) in float32 on the CPU and the labels (N,), in eval
    mode, averaged over the TTA views of each batch (``tta`` "none": the batch itself;
    ``crop_size`` for "center" and "10crop"). ``amp``: bf16 autocast."""
    if tta not in TTA_MODES:
        raise CnnlabError(f"unknown test-time augmentation {tta!r}; expected one of {', '.join(TTA_MODES)}")
    was_training = model.training
    model.eval()
    probs, labels = [], []
    for x, y in batches:
        views = []
        for view in tta_views(x, tta, crop_size):
            with autocast(x.device, amp):
                logits, _ = split_outputs(model(view))
            views.append(F.softmax(logits.float(), dim=1))
        p = views[0] if len(views) == 1 else torch.stack(views).mean(0)
        probs.append(p.cpu())
        labels.append(y.cpu())
    model.train(was_training)
    return torch.cat(probs), torch.cat(labels)


def metrics_from_probs(probs: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> EvalResult:
    num_classes = num_classes or probs.shape[1]
    k = min(5, probs.shape[1])
    topk = probs.topk(k, dim=1).indices
    top1 = topk[:, 0]
    correct1 = top1 == labels
    correct5 = (topk == labels.unsqueeze(1)).any(dim=1)
    confusion = torch.bincount(labels * num_classes + top1, minlength=num_classes**2).view(num_classes, num_classes)
    per_class = confusion.diag().double() / confusion.sum(1).clamp(min=1).double()
    nll = -probs.gather(1, labels.unsqueeze(1)).clamp(min=1e-12).log().mean()
    n = len(labels)
    return EvalResult(
        top1_err=1.0 - correct1.double().mean().item() if n else float("nan"),
        top5_err=1.0 - correct5.double().mean().item() if n else float("nan"),
        loss=float(nll),
        per_class_acc=[float(a) for a in per_class],
        confusion=confusion,
        num_images=n,
    )


def evaluate_model(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *, amp: bool = False) -> EvalResult:
    probs, labels = predict_probs(model, batches, amp=amp)
    return metrics_from_probs(probs, labels)


def run_dataset(run: Run, split: str, *, data: str | None = None, data_root: str | None = None) -> ImageDataset:
    """A split of the run's dataset (or ``data``), with the validation hold-out the run trained with."""
    config = run.config
    return load_dataset(data or config.data, split, data_root or config.data_root, val_size=config.val_size, seed=config.seed)


def evaluate(
    run_or_model: Run | nn.Module | str | os.PathLike,
    *,
    data: str | None = None,
    split: str = "test",
    data_root: str | None = None,
    batch_size: int = 1000,
    device: str = "auto",
    pad: int | None = None,
) -> EvalResult:
    """Top-1/top-5 error, per-class accuracy and confusion matrix of a run (folder or Run) or
    a model on a dataset split. A run remembers its dataset; a bare model needs ``data``."""
    if isinstance(run_or_model, (str, os.PathLike)):
        run_or_model = load_run(run_or_model)
    if isinstance(run_or_model, Run):
        model = run_or_model.model
        dataset = run_dataset(run_or_model, split, data=data, data_root=data_root)
        pad = run_or_model.data_info.get("pad", 0) if pad is None else pad
    else:
        model = run_or_model
        if data is None:
            raise CnnlabError("evaluate(model) needs data=<dataset name>")
        dataset = load_dataset(data, split, data_root)
    dev = resolve_device(device)
    model.to(dev)
    return evaluate_model(model, Batches(dataset, batch_size, device=dev, pad=pad or 0))


@dataclass
class MemberResult:
    """One row of an evaluation report."""

    name: str  # run folder, or "ensemble"
    result: EvalResult
    probs: torch.Tensor  # (N, classes) averaged softmax, float32
    labels: torch.Tensor  # (N,)
    classes: list[str]  # class names in label order


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
    members = evaluate_members(
        runs, data=data, split=split, data_root=data_root, device=device, batch_size=batch_size, tta=tta, weights=weights
    )
    return [(m.name, m.result) for m in members]


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
    confusion matrices and per-class tables). ``tta``: one of TTA_MODES; the crop size of
    "center" and "10crop" is each model's input size (its ModelInfo)."""
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
        crop = tuple(get_model_info(model).input_size[-2:])
        h, w = dataset.image_size[1] + 2 * pad, dataset.image_size[2] + 2 * pad
        batches = Batches(dataset, batch_size, device=dev, pad=pad + tta_padding(tta, (h, w), crop))
        probs, labels = predict_probs(model, batches, tta=tta, crop_size=crop)
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
