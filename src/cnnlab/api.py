"""The public functions behind ``cnnlab.train``, ``cnnlab.evaluate``: wiring of the layers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from torch import nn

from cnnlab.data import Batches, load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.evaluation import run_dataset
from cnnlab.train.config import TrainConfig
from cnnlab.train.evaluate import EvalResult, evaluate_model
from cnnlab.train.loop import EpochCallback, Run, resolve_device
from cnnlab.train.loop import train as _train_loop
from cnnlab.train.run import load_run
from cnnlab.viz.curves import plot_curves, save_figure


def train(
    config: TrainConfig,
    *,
    resume: str | os.PathLike | None = None,
    callbacks: Sequence[EpochCallback] = (),
    quiet: bool = False,
) -> Run:
    """Train per ``config``; writes the run folder including ``curves.png``; returns the Run."""
    try:
        run = _train_loop(config, resume=resume, callbacks=callbacks, quiet=quiet)
    finally:
        target = Path(resume) if resume is not None else (Path(config.out) if config.out else None)
        if target is not None and (target / "metrics.csv").is_file():
            write_curves(target)
    write_curves(run.path)
    return run


def write_curves(run_dir: Path) -> Path:
    from cnnlab.train.run import read_history

    history = read_history(run_dir / "metrics.csv")
    config = TrainConfig.load(run_dir / "config.json")
    fig = plot_curves([(run_dir.name, history)], title=f"{config.model} on {config.data} ({run_dir.name})")
    return save_figure(fig, run_dir / "curves.png")


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
