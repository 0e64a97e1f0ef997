"""Evaluation: class probabilities over a split, then top-k error, per-class accuracy and the
confusion matrix from them. Ensembles average the members' probabilities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn


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


def autocast_for(device: torch.device, enabled: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


@torch.no_grad()
def predict_probs(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *, amp: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities (N, classes) in float32 and the labels (N,), in eval mode."""
    was_training = model.training
    model.eval()
    probs, labels = [], []
    for x, y in batches:
        with autocast_for(x.device, amp):
            logits = model(x)
        probs.append(F.softmax(logits.float(), dim=1).cpu())
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


def evaluate_model(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *, amp: bool = False
) -> EvalResult:
    probs, labels = predict_probs(model, batches, amp=amp)
    return metrics_from_probs(probs, labels)
