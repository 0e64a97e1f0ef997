"""The training loop: config in, run folder and history out.

One epoch (:func:`train_one_epoch`): shuffled batches (already on the device, augmented as
whole batches), the learning rate set from the schedule at every step, loss, backward, step.
After each epoch (:func:`fit`): validation and test error, a row in ``metrics.csv``, ``last``
(and maybe ``best``) weights and ``state.pt``, all written atomically. Resuming restores
weights, optimizer, schedule, RNG and history from the last completed epoch, so the resumed
run ends with the same weights as an uninterrupted one.

Training never plots: the caller draws ``curves.png`` from the history (``cnnlab train`` does).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import torch
from torch import nn

from cnnlab.data import Batches, ImageDataset, get_dataset_spec, load_dataset, random_subset
from cnnlab.data.augment import get_preset
from cnnlab.data.image import fit_padding
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model, get_model_info, split_outputs
from cnnlab.training.checkpoint import TrainingState, load_checkpoint, save_checkpoint
from cnnlab.training.config import TrainConfig
from cnnlab.training.device import autocast, resolve_device, rng_state, seed_everything, set_rng_state
from cnnlab.training.evaluate import EvalResult, evaluate_model
from cnnlab.training.optim import LossFn, loss_with_aux, make_loss, make_optimizer
from cnnlab.training.progress import TrainProgress
from cnnlab.training.run import Run, data_info, open_run, start_run, write_metrics
from cnnlab.training.schedule import Plateau, lr_at

# Called after every epoch with (epoch, record); raising StopTraining ends the run cleanly.
EpochCallback = Callable[[int, dict], None]


class StopTraining(Exception):
    """Raised by a callback to stop after the current epoch (its checkpoint is written)."""


@dataclass
class Setup:
    """What :func:`fit` trains with, built from a config by :func:`prepare`."""

    config: TrainConfig
    device: torch.device
    model: nn.Module
    train: Batches
    val: Batches | None  # None when the config holds out no validation images
    test: Batches
    optimizer: torch.optim.Optimizer
    plateau: Plateau
    loss_fn: LossFn
    lr_at: Callable[[int], float]  # the schedule's learning rate at a global step (before plateau)
    generator: torch.Generator  # shuffling and augmentation; saved in every checkpoint
    data_info: dict  # data.json
    sizes: tuple[int, int, int]  # train, val, test images

    def lr(self, step: int) -> float:
        return self.lr_at(step) * self.plateau.factor


@dataclass
class EpochStats:
    """One pass over the training batches, measured in train mode."""

    loss: float  # mean training loss over the epoch's images
    acc: float  # fraction of them classified right (before each step)
    lr: float  # the last step's learning rate
    images: int
    seconds: float


def load_splits(config: TrainConfig) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    """(train, val, test) of the config's dataset, train cut to ``train_subset`` if set."""
    train = load_dataset(config.data, "train", config.data_root, val_size=config.val_size, seed=config.seed)
    val = load_dataset(config.data, "val", config.data_root, val_size=config.val_size, seed=config.seed)
    test = load_dataset(config.data, "test", config.data_root)
    if config.train_subset is not None:
        if not 0 < config.train_subset <= len(train):
            raise CnnlabError(f"train_subset must be in [1, {len(train)}], got {config.train_subset}")
        train = random_subset(train, config.train_subset, seed=config.seed + 1)  # not the hold-out's seed
    return train, val, test


def prepare(config: TrainConfig) -> Setup:
    """Seed, load the data, build the model, batches, optimizer, loss and schedule."""
    device = resolve_device(config.device)
    generator = seed_everything(config.seed, deterministic=config.deterministic, threads=config.threads)
    # Check names before the (slower) data loading: unknown model, dataset or option fail first.
    spec = get_dataset_spec(config.data)
    get_preset(config.augment)
    with torch.device("meta"):
        create_model(config.model, num_classes=len(spec.classes), **config.model_options)
    train_set, val_set, test_set = load_splits(config)
    model = create_model(config.model, num_classes=train_set.num_classes, in_chans=train_set.image_size[0], **config.model_options)
    pad = config.pad if config.pad is not None else fit_padding(train_set.image_size, get_model_info(model).input_size)
    model.to(device=device, memory_format=torch.channels_last if config.channels_last else torch.contiguous_format)

    def batches(dataset: ImageDataset, train_mode: bool) -> Batches:
        return Batches(
            dataset, config.batch_size if train_mode else config.eval_batch_size, device=device, shuffle=train_mode,
            pad=pad, augment=get_preset(config.augment, dataset) if train_mode else None, generator=generator,
            channels_last=config.channels_last,
        )

    train, val, test = batches(train_set, True), batches(val_set, False) if len(val_set) else None, batches(test_set, False)
    schedule = partial(
        lr_at, schedule=config.schedule, peak=config.lr, total_steps=len(train) * config.epochs,
        warmup_steps=round(config.warmup * len(train)), step_size=config.step_size, milestones=config.milestones,
        gamma=config.gamma,
    )
    optimizer = make_optimizer(
        model.parameters(), name=config.optimizer, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )
    return Setup(
        config=config, device=device, model=model, train=train, val=val, test=test, optimizer=optimizer, plateau=Plateau(config.gamma, config.patience),
        loss_fn=make_loss(config.loss, num_classes=train_set.num_classes, label_smoothing=config.label_smoothing),
        lr_at=schedule, generator=generator, data_info=data_info(train_set, pad),
        sizes=(len(train_set), len(val_set), len(test_set)),
    )


def train_one_epoch(
    model: nn.Module,
    batches: Batches,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    *,
    lr: Callable[[int], float],
    epoch: int,
    amp: bool = False,
    progress: TrainProgress | None = None,
) -> EpochStats:
    """One pass over ``batches`` (epoch ``epoch``, 0-based); ``lr(step)`` gives the learning
    rate of each global step. Auxiliary heads (GoogLeNet) add to the loss; a loss that is not
    finite stops training with the step and learning rate that caused it."""
    model.train()
    if progress is not None:
        progress.start_epoch(epoch + 1, batches.num_images)
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = seen = 0
    step_lr = 0.0
    for i, (x, y) in enumerate(batches):
        step_lr = lr(epoch * len(batches) + i)
        for group in optimizer.param_groups:
            group["lr"] = step_lr
        with autocast(x.device, amp):
            logits, aux = split_outputs(model(x))
            loss = loss_with_aux(loss_fn, logits, aux, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n = len(y)
        batch_loss = float(loss.detach()) * n
        batch_correct = int((logits.detach().argmax(1) == y).sum())
        if not math.isfinite(batch_loss):
            raise CnnlabError(
                f"the loss became {batch_loss / n} at epoch {epoch + 1}, iteration {i + 1}; lower the learning rate (now {step_lr:g})"
            )
        loss_sum += batch_loss
        correct += batch_correct
        seen += n
        if progress is not None:
            progress.advance(n, batch_loss, batch_correct)
    return EpochStats(float(loss_sum) / max(seen, 1), correct / max(seen, 1), step_lr, seen, time.perf_counter() - t0)


def fit(
    config: TrainConfig,
    *,
    resume: str | os.PathLike | None = None,
    callbacks: Sequence[EpochCallback] = (),
    quiet: bool = False,
) -> Run:
    """Train ``config.model`` on ``config.data`` into a run folder (``config.out``, else
    ``runs/<model>-<data>-<time>``), or continue the run in ``resume``; returns the Run with
    its path, history and model. ``callbacks`` are called after each epoch's checkpoint.
    ``cnnlab.train`` is this function."""
    t_start = time.perf_counter()
    run_dir, config = open_run(config, resume)
    setup = prepare(config)
    if resume is not None:
        state = load_checkpoint(run_dir, setup.model)
        setup.optimizer.load_state_dict(state.optimizer)
        setup.plateau.load_state_dict(state.plateau)
        set_rng_state(state.rng, setup.generator)
    else:
        state = TrainingState()
        start_run(run_dir, config, setup.data_info)
    elapsed_before = state.history[-1]["elapsed_s"] if state.history else 0.0  # wall time of earlier sessions
    run = Run(run_dir, config, state.history, setup.data_info, setup.model)
    with TrainProgress(config.epochs, quiet=quiet) as progress, open(run_dir / "train.log", "a") as log:
        first_line = header(setup, run_dir)
        progress.log(first_line)
        log.write(first_line + "\n")
        if state.epoch:
            progress.log(f"resuming after epoch {state.epoch}")
        try:
            for epoch in range(state.epoch, config.epochs):
                stats = train_one_epoch(setup.model, setup.train, setup.optimizer, setup.loss_fn, lr=setup.lr,
                                        epoch=epoch, amp=config.amp, progress=progress)
                val = evaluate_model(setup.model, setup.val, amp=config.amp) if setup.val else None
                last = epoch == config.epochs - 1
                test = evaluate_model(setup.model, setup.test, amp=config.amp) if config.eval_test_every_epoch or last else None
                record = epoch_record(epoch, len(setup.train), stats, val, test)
                record["elapsed_s"] = elapsed_before + time.perf_counter() - t_start
                state.history.append(record)
                if config.schedule == "plateau" and val is not None:
                    setup.plateau.update(val.top1_acc)
                score = val.top1_acc if val is not None else stats.acc
                is_best, state.best_val, state.epoch = score > state.best_val, max(state.best_val, score), epoch + 1
                save_epoch(run_dir, setup, state, is_best=is_best)
                progress.log(epoch_line(record, config.epochs))
                log.write(json.dumps(record) + "\n")
                log.flush()
                for callback in callbacks:
                    callback(epoch + 1, record)
        except StopTraining:
            pass
        except KeyboardInterrupt:
            progress.log(f"interrupted; {len(state.history)} epoch(s) are saved in {run_dir}; "
                         f"continue with: cnnlab train --resume {run_dir}")
            raise
    return run


def save_epoch(run_dir: os.PathLike, setup: Setup, state: TrainingState, *, is_best: bool) -> None:
    """Save the epoch just finished: weights, optimizer, plateau, RNG, history, metrics.csv."""
    state.optimizer = setup.optimizer.state_dict()
    state.plateau = setup.plateau.state_dict()
    state.rng = rng_state(setup.generator)
    save_checkpoint(run_dir, setup.model, state, model_name=setup.config.model, is_best=is_best)
    write_metrics(run_dir, state.history)


def epoch_record(epoch: int, steps_per_epoch: int, stats: EpochStats, val: EvalResult | None, test: EvalResult | None) -> dict:
    """One row of metrics.csv (without ``elapsed_s``), in its column order."""
    record = {
        "epoch": epoch + 1,
        "iterations": (epoch + 1) * steps_per_epoch,
        "train_loss": stats.loss,
        "train_acc": stats.acc,
        "lr": stats.lr,
        "images_per_s": stats.images / stats.seconds,
        "epoch_time_s": stats.seconds,
    }
    for prefix, result in (("val", val), ("test", test)):
        nan = float("nan")
        record[f"{prefix}_loss"] = result.loss if result else nan
        record[f"{prefix}_top1_err"] = result.top1_err if result else nan
        record[f"{prefix}_top5_err"] = result.top5_err if result else nan
    return record


def header(setup: Setup, run_dir: os.PathLike) -> str:
    """The run's first log line: model, data sizes, iterations, device, folder."""
    c = setup.config
    params = sum(p.numel() for p in setup.model.parameters())
    n_train, n_val, n_test = setup.sizes
    return (
        f"{c.model} ({params:,} parameters) on {c.data}: {n_train:,} train / {n_val:,} val / {n_test:,} test images, "
        f"batch {c.batch_size} = {len(setup.train):,} iterations per epoch, {c.epochs} epochs, "
        f"device {setup.device.type}, run folder {run_dir}"
    )


def epoch_line(record: dict, epochs: int) -> str:
    """One compact line per epoch for the terminal (all columns are in metrics.csv)."""
    parts = [f"epoch {record['epoch']}/{epochs}", f"loss {record['train_loss']:.4f}", f"train acc {record['train_acc']:.2%}"]
    for split in ("val", "test"):
        err = record.get(f"{split}_top1_err", float("nan"))
        if not math.isnan(err):
            parts.append(f"{split} err {err:.2%} (top-5 {record[f'{split}_top5_err']:.2%})")
    parts += [f"lr {record['lr']:.3g}", f"{record['images_per_s']:,.0f} img/s", f"{record['epoch_time_s']:.1f}s"]
    return "  ".join(parts)
