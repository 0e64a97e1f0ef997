"""Evaluating runs from their folders: each member alone, and their ensemble.

An ensemble averages the members' softmax probabilities (AlexNet's Section 6: averaging the
predictions of several CNNs)."""

from __future__ import annotations

import os

import torch

from cnnlab.data import Batches, load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.train.evaluate import EvalResult, metrics_from_probs, predict_probs
from cnnlab.train.loop import resolve_device
from cnnlab.train.run import load_run


def evaluate_runs(
    runs: list[str | os.PathLike],
    *,
    data: str | None = None,
    split: str = "test",
    data_root: str | None = None,
    device: str = "auto",
    batch_size: int = 500,
) -> list[tuple[str, EvalResult]]:
    """(name, result) for each run, then ("ensemble", result) when there are several."""
    dev = resolve_device(device)
    loaded = [load_run(r) for r in runs]
    data = data or loaded[0].config.data
    classes = loaded[0].data_info["classes"]
    for r in loaded[1:]:
        if r.data_info["classes"] != classes:
            raise CnnlabError(f"{r.path} was trained on other classes than {loaded[0].path}; cannot ensemble them")
    dataset = load_dataset(data, split, data_root)
    report, all_probs, labels = [], [], None
    for r in loaded:
        r.model.to(dev)
        batches = Batches(dataset, batch_size, device=dev, pad=r.data_info.get("pad", 0))
        probs, labels = predict_probs(r.model, batches)
        all_probs.append(probs)
        report.append((str(r.path), metrics_from_probs(probs, labels)))
    if len(loaded) > 1:
        report.append(("ensemble", metrics_from_probs(torch.stack(all_probs).mean(0), labels)))
    return report
