"""Evaluation: one prediction loop (:func:`predict_probs`) that every caller uses (validation
in the loop, ``cnnlab eval``, TTA, ensembles, ``predict``, the experiments); top-k error,
per-class accuracy and the confusion matrix from its probabilities.

An ensemble averages the members' softmax probabilities (AlexNet's Section 6: averaging the
predictions of several CNNs); with TTA each member's probabilities are first averaged over
its views (flips, or AlexNet's ten crops; see ``cnnlab.data.tta``).

Without a run (:func:`evaluate_weights`): a registered model with weights, scored on an
image-folder dataset whose files are cut as the weights expect (``cnnlab.training.predict``'s
:class:`~cnnlab.training.predict.WeightsCrop`, the crop ``predict`` feeds). Weights with
ImageNet-1k's 1,000 outputs are scored on a dataset of ImageNet classes by wnid: only the
outputs of the dataset's classes are kept (:class:`ClassSubset`), so the softmax is over those
classes, the usual way ImageNet weights are scored on Imagenette.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data import Batches, ImageDataset, load_dataset
from cnnlab.data.datasets import get_dataset_spec
from cnnlab.data.shards import ShardBatches, ShardSplit, shard_split
from cnnlab.data.stream import (
    FileDataset,
    StreamBatches,
    default_workers,
    eval_transform,
    file_split,
    fit_transform,
    plan_data,
)
from cnnlab.data.synsets import dataset_wnids, imagenet_classes, imagenet_indices
from cnnlab.data.tta import TTA_MODES, tta_padding, tta_views
from cnnlab.errors import CnnlabError
from cnnlab.models import get_model_info, main_output, split_outputs
from cnnlab.training.data import resized
from cnnlab.training.device import autocast, resolve_device
from cnnlab.training.progress import EvalProgress
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
    on_batch: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities (N, classes) in float32 on the CPU and the labels (N,), in eval
    mode, averaged over the TTA views of each batch (``tta`` "none": the batch itself;
    ``crop_size`` for "center" and "10crop"). ``amp``: bf16 autocast. ``on_batch``: called
    with each batch's image count once it is scored (a progress bar)."""
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
        if on_batch is not None:
            on_batch(len(y))
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
    """A split of the run's dataset (or ``data``), with the validation hold-out the run trained
    with, resized as it trained (``image_size``)."""
    config = run.config
    dataset = load_dataset(data or config.data, split, data_root or config.data_root, val_size=config.val_size, seed=config.seed)
    return resized(dataset, config.image_size) if config.image_size is not None else dataset


EvalSplit = ImageDataset | FileDataset | ShardSplit


def streams(run: Run, data: str, data_root: str | None, stream: bool | None) -> bool:
    """Whether to evaluate ``data`` streamed: as asked (``stream`` True or False), else when
    the run was trained streamed (its evaluation crops then match) or the dataset does not
    fit the run's memory budget (``cnnlab.data.stream.plan_data``)."""
    if stream is not None:
        return stream
    if run.data_info.get("mode") == "stream":
        return True
    return plan_data(data, data_root, mode="auto", memory_budget=run.config.memory_budget).mode == "stream"


def run_split(run: Run, split: str, *, data: str | None = None, data_root: str | None = None,
              stream: bool | None = False) -> EvalSplit:
    """A split of the run's dataset (or ``data``) held in memory, or as files or shards to
    stream (see :func:`streams`), normalised and sized as the run was trained."""
    config, info = run.config, run.data_info
    data, root = data or config.data, data_root or config.data_root
    if not streams(run, data, root, stream):
        return run_dataset(run, split, data=data, data_root=root)
    size = {"mean": tuple(info["mean"]), "std": tuple(info["std"]), "image_size": tuple(info["image_size"])}
    if data.startswith("shards:"):
        return shard_split(data[len("shards:"):], split, **size)
    return file_split(data, root, split, val_size=config.val_size, seed=config.seed, **size)


def split_batches(dataset: EvalSplit, batch_size: int, *, device: torch.device, pad: int, crops: str = "fit",
                  workers: int | None = None) -> Batches | StreamBatches | ShardBatches:
    """Evaluation batches of a split in memory or streamed. A streamed image is cut by the
    in-memory folder policy (``crops`` "fit": shorter side to the run's size, centre crop:
    the pixels the in-memory path holds, hence its numbers) or, for a run trained streamed,
    by its validation crop (``crops`` "eval": resize to size / 0.875, centre crop)."""
    if isinstance(dataset, ImageDataset):
        return Batches(dataset, batch_size, device=device, pad=pad)
    channels, size = dataset.image_size[0], dataset.image_size[-1]
    transform = (eval_transform if crops == "eval" else fit_transform)(size, channels=channels)
    if isinstance(dataset, ShardSplit):
        return ShardBatches(dataset.shards, batch_size, transform=transform, mean=dataset.mean, std=dataset.std,
                            device=device, pad=pad, workers=default_workers() if workers is None else workers)
    return StreamBatches(dataset, batch_size, transform=transform, device=device, pad=pad, workers=workers)


def evaluate(
    run_or_model: Run | nn.Module | str | os.PathLike,
    *,
    data: str | None = None,
    split: str = "test",
    data_root: str | None = None,
    batch_size: int = 1000,
    device: str = "auto",
    pad: int | None = None,
    stream: bool | None = False,
) -> EvalResult:
    """Top-1/top-5 error, per-class accuracy and confusion matrix of a run (folder or Run) or
    a model on a dataset split. A run remembers its dataset; a bare model needs ``data``.
    ``stream``: a run's split streamed (True), in memory (False) or as it fits (None)."""
    if isinstance(run_or_model, (str, os.PathLike)):
        run_or_model = load_run(run_or_model)
    dev = resolve_device(device)
    if isinstance(run_or_model, Run):
        run = run_or_model
        dataset = run_split(run, split, data=data, data_root=data_root, stream=stream)
        pad = run.data_info.get("pad", 0) if pad is None else pad
        batches = split_batches(dataset, batch_size, device=dev, pad=pad, crops=crop_policy(run))
        model = run.model
    else:
        model = run_or_model
        if data is None:
            raise CnnlabError("evaluate(model) needs data=<dataset name>")
        batches = Batches(load_dataset(data, split, data_root), batch_size, device=dev, pad=pad or 0)
    model.to(dev)
    return evaluate_model(model, batches)


def crop_policy(run: Run) -> str:
    """How streamed evaluation crops this run's images: as its validation did."""
    return "eval" if run.data_info.get("mode") == "stream" else "fit"


@dataclass
class MemberResult:
    """One row of an evaluation report."""

    name: str  # run folder, or "ensemble"
    result: EvalResult
    probs: torch.Tensor  # (N, classes) averaged softmax, float32
    labels: torch.Tensor  # (N,)
    classes: list[str]  # class names in label order


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
    stream: bool | None = False,
    workers: int | None = None,
    progress: bool = False,
) -> list[MemberResult]:
    """Each run's result on a split, keeping its probabilities (for the ensemble, confusion
    matrices and per-class tables), then the ensemble's when there are several. ``tta``: one
    of TTA_MODES; the crop size of "center" and "10crop" is each model's input size (its
    ModelInfo). ``stream``: read the split streamed by ``workers`` decoding processes (True),
    in memory (False), or streamed when it does not fit the memory budget or the run was
    trained streamed (None); the same images give the same numbers either way. ``progress``:
    a live bar on stderr per run (a 6-view TTA of a CIFAR run takes minutes on a CPU)."""
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
    dataset = run_split(loaded[0], split, data=data, data_root=data_root, stream=stream)
    if list(dataset.classes) != list(classes):
        raise CnnlabError(f"{data} has classes {list(dataset.classes)[:5]}..., the run was trained on {classes[:5]}...")
    report: list[MemberResult] = []
    for r in loaded:
        model = r.model.to(dev)
        pad = r.data_info.get("pad", 0)
        crop = tuple(get_model_info(model).input_size[-2:])
        h, w = dataset.image_size[1] + 2 * pad, dataset.image_size[2] + 2 * pad
        batches = split_batches(dataset, batch_size, device=dev, pad=pad + tta_padding(tta, (h, w), crop),
                                crops=crop_policy(r), workers=workers)
        what = Path(r.path).name + (f", TTA {tta}" if tta != "none" else "")  # short: the bar fits 80 columns
        with EvalProgress(what, len(dataset), quiet=not progress) as bar:
            probs, labels = predict_probs(model, batches, tta=tta, crop_size=crop, on_batch=bar.advance)
        report.append(MemberResult(str(r.path), metrics_from_probs(probs, labels, len(classes)), probs, labels, classes))
        model.to("cpu")
    if len(loaded) > 1:
        probs = torch.stack([m.probs for m in report]).mean(0)
        labels = report[0].labels
        report.append(MemberResult("ensemble", metrics_from_probs(probs, labels, len(classes)), probs, labels, classes))
    return report


class ClassSubset(nn.Module):
    """The logits of some of a model's outputs, in the order given: a 1000-class ImageNet
    model scored on a dataset of some of its classes (label ``i`` is output ``indices[i]``)."""

    def __init__(self, model: nn.Module, indices: Sequence[int]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("indices", torch.tensor(list(indices), dtype=torch.int64), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return main_output(self.model(x)).index_select(1, self.indices)


def dataset_outputs(outputs: int, data: str, data_root: str | None, classes: Sequence[str]) -> tuple[list[int] | None, str]:
    """Which of a model's ``outputs`` score dataset ``data``'s ``classes`` (None: all, output i
    = label i), and how, in words. 1,000 outputs are ImageNet-1k's: the dataset's class folders
    must be ImageNet wnids (one error line otherwise); any other count must equal the
    dataset's class count."""
    if outputs == len(imagenet_classes()):
        indices = imagenet_indices(dataset_wnids(data, data_root), what=data)
        if indices == list(range(outputs)):
            return None, f"scored over ImageNet's {outputs:,} classes"
        return indices, f"scored over the {len(indices)} ImageNet classes of {data}"
    if outputs != len(classes):
        raise CnnlabError(f"the weights have {outputs} outputs but {data} has {len(classes)} classes; expected "
                          f"{len(classes)}, or ImageNet's {len(imagenet_classes()):,} for a dataset of ImageNet wnids")
    return None, f"the weights' {outputs} outputs taken as {data}'s classes in label order"


@dataclass
class WeightsResult:
    """``cnnlab eval MODEL --weights SOURCE``: the result and how it was obtained."""

    member: MemberResult  # name: the model and its weights
    preprocessing: str  # where the image preprocessing came from
    scoring: str  # which outputs were scored, in words ("scored over the 10 ImageNet classes of imagenette")


def evaluate_weights(
    name: str,
    weights: str,
    *,
    data: str,
    split: str = "test",
    data_root: str | None = None,
    device: str = "auto",
    batch_size: int = 500,
    tta: str = "none",
    workers: int | None = None,
) -> WeightsResult:
    """Top-1/top-5 error of registered model ``name`` with ``weights`` (a file, URL, run
    folder, or ``"torchvision"``) on a split of image-folder dataset ``data``, its files read
    by ``workers`` decoding processes and cut as the weights expect (their resize, crop,
    filter, mean and std; see :func:`cnnlab.training.predict.open_predictor`). Which outputs
    are scored: :func:`dataset_outputs`. ``tta`` "center"/"10crop" cut their views from the
    weights' resized square (256 for a 224 crop), "flip" mirrors the crop."""
    from cnnlab.training.predict import WeightsCrop, open_predictor

    if tta not in TTA_MODES:
        raise CnnlabError(f"unknown test-time augmentation {tta!r}; expected one of {', '.join(TTA_MODES)}")
    if get_dataset_spec(data).files is None:
        raise CnnlabError(f"eval with --weights reads image files, and {data} has none; give an image-folder "
                          "dataset (imagenet, imagenette, folder:PATH)")
    predictor = open_predictor(name, weights=weights)
    model, c, pre = predictor.model, predictor.channels, predictor.preprocess
    crop = (pre.crop, pre.crop)
    cut = replace(pre, crop=max(pre.resize, pre.crop)) if tta in ("center", "10crop") else pre
    dataset = file_split(data, data_root, split, mean=pre.mean[:c], std=pre.std[:c], image_size=(c, cut.crop, cut.crop))
    indices, scoring = dataset_outputs(len(predictor.classes), data, data_root, dataset.classes)
    scored = model if indices is None else ClassSubset(model, indices)
    dev = resolve_device(device)
    batches = StreamBatches(dataset, batch_size, transform=WeightsCrop(c, cut), device=dev, workers=workers)
    probs, labels = predict_probs(scored.to(dev), batches, tta=tta, crop_size=crop)
    scored.to("cpu")
    classes = list(dataset.classes)
    member = MemberResult(predictor.label, metrics_from_probs(probs, labels, len(classes)), probs, labels, classes)
    return WeightsResult(member, predictor.note, scoring)


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
