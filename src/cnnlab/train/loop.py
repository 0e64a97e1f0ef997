"""The training loop: config in, run folder and history out.

One epoch: shuffled batches (already on the device, augmented as whole batches), the
learning rate set from the schedule at every step, loss, backward, step. After each epoch:
validation and test error, a row in ``metrics.csv``, ``last`` (and maybe ``best``) weights and
``state.pt``, all written atomically. ``--resume`` restores weights, optimizer, schedule, RNG
and history from the last completed epoch, so the resumed run ends with the same weights as
an uninterrupted one.

Training never plots: the caller draws ``curves.png`` from the history.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data import Batches, ImageDataset, get_dataset_spec, load_dataset
from cnnlab.data.augment import get_preset
from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.models import create_model
from cnnlab.train.checkpoint import (
    atomic_write_text,
    load_state,
    load_weights,
    save_state,
    save_weights,
)
from cnnlab.train.config import TrainConfig
from cnnlab.train.evaluate import EvalResult, autocast_for, evaluate_model
from cnnlab.train.progress import TrainProgress
from cnnlab.train.schedule import Plateau, lr_at

AUX_WEIGHT = 0.3  # GoogLeNet (Szegedy et al. 2015, Sec. 5): auxiliary losses weighted by 0.3

# Called after every epoch with (epoch, record); raising StopTraining ends the run cleanly.
EpochCallback = Callable[[int, dict], None]


class StopTraining(Exception):
    """Raised by a callback to stop after the current epoch (its checkpoint is written)."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CnnlabError("--device cuda was asked for, but no CUDA device is available; use --device auto or cpu")
    return torch.device(name)


def fit_padding(image_size: Sequence[int], model_input: Sequence[int]) -> int:
    """Zero padding that brings the images to the model's canonical size, when that is a
    small symmetric pad (MNIST 28x28 -> LeNet-5 32x32: 2); otherwise 0 (the model must take
    the images as they are)."""
    dh, dw = model_input[-2] - image_size[-2], model_input[-1] - image_size[-1]
    if dh == dw and dh > 0 and dh % 2 == 0 and dh <= 8:
        return dh // 2
    return 0


@dataclass
class Run:
    """A run folder and what is in it."""

    path: Path
    config: TrainConfig
    history: list[dict] = field(default_factory=list)
    data_info: dict = field(default_factory=dict)
    model: nn.Module | None = None

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}

    @property
    def test_accuracy(self) -> float:
        return 1.0 - self.final.get("test_top1_err", float("nan"))


def default_run_dir(config: TrainConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    data = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(config.data).name if ":" in config.data else config.data)
    return Path("runs") / f"{config.model}-{data}-{stamp}"


def _prepare_run_dir(path: Path, resume: bool) -> None:
    if path.exists() and not path.is_dir():
        raise CnnlabError(f"output path {path} exists and is not a folder")
    if not resume and (path / "config.json").exists():
        raise CnnlabError(f"{path} already holds a run; pass --resume {path} to continue it, or choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise CnnlabError(f"cannot write to output folder {path}: {e.strerror}") from None


def _loss_fn(config: TrainConfig, num_classes: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if config.loss == "ce":
        return lambda logits, y: F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)

    def mse(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # Squared error between the softmax output and the one-hot target, summed over
        # classes and averaged over the batch (the lectures' sum-of-squares error).
        target = F.one_hot(y, num_classes).to(logits.dtype)
        return ((F.softmax(logits, dim=1) - target) ** 2).sum(1).mean()

    return mse


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=config.weight_decay
        )
    betas = (config.momentum, 0.999)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, betas=betas, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, betas=betas, weight_decay=config.weight_decay)


def _split_logits(output) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Main logits and auxiliary logits (GoogLeNet returns a named tuple in training)."""
    if isinstance(output, tuple):
        return output[0], tuple(o for o in output[1:] if o is not None)
    return output, ()


def _write_metrics(path: Path, history: list[dict]) -> None:
    if not history:
        return
    columns = list(history[0].keys())
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


def _rng_state(generator: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["data"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def data_info(dataset: ImageDataset, pad: int) -> dict:
    """What later commands (eval, predict, viz) need to feed the model like in training."""
    return {
        "name": dataset.name,
        "classes": list(dataset.classes),
        "image_size": list(dataset.image_size),
        "mean": list(dataset.mean),
        "std": list(dataset.std),
        "pad": pad,
    }


def train(
    config: TrainConfig,
    *,
    resume: str | os.PathLike | None = None,
    callbacks: Sequence[EpochCallback] = (),
    quiet: bool = False,
) -> Run:
    """Train ``config.model`` on ``config.data``; returns the run with its history and model."""
    t_start = time.perf_counter()
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.json").is_file():
            raise CheckpointError(f"{run_dir} is not a run folder (no config.json); nothing to resume")
        config = TrainConfig.load(run_dir / "config.json")
    else:
        run_dir = Path(config.out) if config.out else default_run_dir(config)
        config.out = str(run_dir)
    _prepare_run_dir(run_dir, resume is not None)

    device = resolve_device(config.device)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    if config.deterministic:
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)

    # Check names before the (slower) data loading: unknown model, dataset or option fail first.
    spec = get_dataset_spec(config.data)
    get_preset(config.augment)
    with torch.device("meta"):
        create_model(config.model, num_classes=len(spec.classes), **config.model_options)

    train_set = load_dataset(config.data, "train", config.data_root, val_size=config.val_size, seed=config.seed)
    val_set = load_dataset(config.data, "val", config.data_root, val_size=config.val_size, seed=config.seed)
    test_set = load_dataset(config.data, "test", config.data_root)
    if config.train_subset is not None:
        if not 0 < config.train_subset <= len(train_set):
            raise CnnlabError(f"train_subset must be in [1, {len(train_set)}], got {config.train_subset}")
        pick = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(config.seed + 1))
        train_set = train_set.subset(pick[: config.train_subset].sort().values)
    channels = train_set.image_size[0]
    model = create_model(config.model, num_classes=train_set.num_classes, in_chans=channels, **config.model_options)
    pad = config.pad if config.pad is not None else fit_padding(train_set.image_size, model.default_input_size)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)

    def batches(dataset: ImageDataset, train_mode: bool) -> Batches:
        return Batches(
            dataset,
            config.batch_size if train_mode else config.eval_batch_size,
            device=device,
            shuffle=train_mode,
            pad=pad,
            augment=get_preset(config.augment, dataset) if train_mode else None,
            generator=generator,
            channels_last=config.channels_last,
        )

    train_batches = batches(train_set, True)
    val_batches = batches(val_set, False) if len(val_set) else None
    test_batches = batches(test_set, False)
    optimizer = make_optimizer(config, model)
    plateau = Plateau(config.gamma, config.patience)
    loss_fn = _loss_fn(config, train_set.num_classes)
    steps_per_epoch = len(train_batches)
    total_steps = steps_per_epoch * config.epochs

    history: list[dict] = []
    start_epoch = 0
    best_val = -math.inf
    if resume is not None:
        if not (run_dir / "last.safetensors").is_file():
            raise CheckpointError(f"{run_dir} has no completed epoch to resume from (no last.safetensors)")
        load_weights(model, run_dir / "last.safetensors")
        state = load_state(run_dir / "state.pt")
        optimizer.load_state_dict(state["optimizer"])
        plateau.load_state_dict(state["plateau"])
        _set_rng_state(state["rng"], generator)
        history = list(state["history"])
        start_epoch = int(state["epoch"])
        best_val = float(state["best_val"])
    else:
        config.save(run_dir / "config.json")
        atomic_write_text(run_dir / "data.json", json.dumps(data_info(train_set, pad), indent=2) + "\n")

    elapsed_before = history[-1]["elapsed_s"] if history else 0.0  # wall time of earlier sessions
    run = Run(run_dir, config, history, data_info(train_set, pad), model)
    log_path = run_dir / "train.log"
    params = sum(p.numel() for p in model.parameters())
    header = (
        f"{config.model} ({params:,} parameters) on {config.data}: {len(train_set):,} train / {len(val_set):,} val / "
        f"{len(test_set):,} test images, batch {config.batch_size} = {steps_per_epoch:,} iterations per epoch, "
        f"{config.epochs} epochs, device {device.type}, run folder {run_dir}"
    )
    with TrainProgress(config.epochs, quiet=quiet) as progress, open(log_path, "a") as log:
        progress.log(header)
        log.write(header + "\n")
        if start_epoch:
            progress.log(f"resuming after epoch {start_epoch}")
        try:
            for epoch in range(start_epoch, config.epochs):
                record = _train_epoch(
                    model, train_batches, optimizer, loss_fn, config, plateau, progress, epoch, steps_per_epoch, total_steps, device
                )
                val = evaluate_model(model, val_batches, amp=config.amp) if val_batches else None
                test = (
                    evaluate_model(model, test_batches, amp=config.amp)
                    if config.eval_test_every_epoch or epoch == config.epochs - 1
                    else None
                )
                record.update(_eval_columns("val", val))
                record.update(_eval_columns("test", test))
                record["elapsed_s"] = elapsed_before + time.perf_counter() - t_start
                history.append(record)
                if config.schedule == "plateau" and val is not None:
                    plateau.update(val.top1_acc)
                score = val.top1_acc if val is not None else record["train_acc"]
                is_best = score > best_val
                best_val = max(best_val, score)
                _checkpoint(run_dir, model, optimizer, plateau, generator, history, epoch + 1, best_val, is_best, config)
                progress.log(epoch_line(record, config.epochs))
                log.write(json.dumps(record) + "\n")
                log.flush()
                for callback in callbacks:
                    callback(epoch + 1, record)
        except StopTraining:
            pass
        except KeyboardInterrupt:
            done = len(history)
            progress.log(f"interrupted; {done} epoch(s) are saved in {run_dir}; continue with: cnnlab train --resume {run_dir}")
            raise
    return run


def _eval_columns(prefix: str, result: EvalResult | None) -> dict:
    if result is None:
        return {f"{prefix}_loss": float("nan"), f"{prefix}_top1_err": float("nan"), f"{prefix}_top5_err": float("nan")}
    return {f"{prefix}_loss": result.loss, f"{prefix}_top1_err": result.top1_err, f"{prefix}_top5_err": result.top5_err}


def epoch_line(record: dict, epochs: int) -> str:
    """One compact line per epoch for the terminal (all columns are in metrics.csv)."""
    parts = [f"epoch {record['epoch']}/{epochs}", f"loss {record['train_loss']:.4f}", f"train acc {record['train_acc']:.2%}"]
    for split in ("val", "test"):
        err = record.get(f"{split}_top1_err", float("nan"))
        if not math.isnan(err):
            parts.append(f"{split} err {err:.2%} (top-5 {record[f'{split}_top5_err']:.2%})")
    parts += [f"lr {record['lr']:.3g}", f"{record['images_per_s']:,.0f} img/s", f"{record['epoch_time_s']:.1f}s"]
    return "  ".join(parts)


def _train_epoch(
    model: nn.Module,
    batches: Batches,
    optimizer: torch.optim.Optimizer,
    loss_fn,
    config: TrainConfig,
    plateau: Plateau,
    progress: TrainProgress,
    epoch: int,
    steps_per_epoch: int,
    total_steps: int,
    device: torch.device,
) -> dict:
    model.train()
    progress.start_epoch(epoch + 1, batches.num_images)
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = 0
    seen = 0
    lr = config.lr
    for i, (x, y) in enumerate(batches):
        step = epoch * steps_per_epoch + i
        lr = lr_at(config, step, total_steps, steps_per_epoch) * plateau.factor
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast_for(device, config.amp):
            logits, aux = _split_logits(model(x))
            loss = loss_fn(logits, y)
            for a in aux:
                loss = loss + AUX_WEIGHT * loss_fn(a, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n = len(y)
        batch_loss = float(loss.detach()) * n
        batch_correct = int((logits.detach().argmax(1) == y).sum())
        if not math.isfinite(batch_loss):
            raise CnnlabError(
                f"the loss became {batch_loss / n} at epoch {epoch + 1}, iteration {i + 1}; lower the learning rate (now {lr:g})"
            )
        loss_sum += batch_loss
        correct += batch_correct
        seen += n
        progress.advance(n, batch_loss, batch_correct)
    seconds = time.perf_counter() - t0
    return {
        "epoch": epoch + 1,
        "iterations": (epoch + 1) * steps_per_epoch,
        "train_loss": float(loss_sum) / max(seen, 1),
        "train_acc": correct / max(seen, 1),
        "lr": lr,
        "images_per_s": seen / seconds,
        "epoch_time_s": seconds,
    }


def _checkpoint(run_dir, model, optimizer, plateau, generator, history, epoch, best_val, is_best, config) -> None:
    meta = {"model": config.model, "epoch": str(epoch)}
    save_weights(model, run_dir / "last.safetensors", meta)
    if is_best:
        save_weights(model, run_dir / "best.safetensors", meta)
    save_state(
        {
            "epoch": epoch,
            "optimizer": optimizer.state_dict(),
            "plateau": plateau.state_dict(),
            "rng": _rng_state(generator),
            "history": history,
            "best_val": best_val,
        },
        run_dir / "state.pt",
    )
    _write_metrics(run_dir / "metrics.csv", history)
