"""The training loop: config in, run folder and history out.

One epoch (:func:`train_one_epoch`): shuffled batches (already on the device, augmented as
whole batches), the learning rate set from the schedule at every step, loss, backward, step.
After each epoch (:func:`fit`): validation and test error, a row in ``metrics.csv``, ``last``
(and maybe ``best``) weights and ``state.pt``, all written atomically. Resuming restores
weights, optimizer, schedule, RNG and history from the last completed epoch, so the resumed
run ends with the same weights as an uninterrupted one.

The same loop runs in one process and in each rank of a distributed run
(``cnnlab.training.distributed``): there, every rank trains on its part of each epoch's
batches through DistributedDataParallel, evaluation is sharded and gathered, and rank 0
alone writes. Gradient accumulation (``accum_steps``) adds several micro-batches' gradients
into one optimizer step; the global batch, per-rank batch x world size x accumulation steps,
sets the learning rate by the linear scaling rule when it differs from the recipe's.

Training never plots: the caller draws ``curves.png`` from the history (``cnnlab train`` does).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from cnnlab.data import Batches, data_root, get_dataset_spec
from cnnlab.data.augment import get_preset
from cnnlab.data.batches import prepare_batch
from cnnlab.data.image import fit_padding
from cnnlab.errors import CnnlabError
from cnnlab.models import get_model_info, split_outputs
from cnnlab.training.checkpoint import TrainingState, save_checkpoint
from cnnlab.training.config import TrainConfig
from cnnlab.training.data import load_data, make_batches
from cnnlab.training.device import (
    Precision,
    autocast,
    choose_precision,
    choose_threads,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
)
from cnnlab.training.distributed import (
    SINGLE,
    Scaling,
    World,
    all_max,
    all_sum,
    check_equal_steps,
    check_sync_bn,
    collective,
    evaluate_sharded,
    from_writer,
    gather_objects,
    join_world,
    rank_seed,
    scale_lr,
    wrap_model,
)
from cnnlab.training.evaluate import EvalResult
from cnnlab.training.extras import StepExtras, ema_metrics, resume_extras
from cnnlab.training.finetune import build_model, with_weight_options
from cnnlab.training.optim import (
    LossFn,
    keep_frozen_in_eval,
    loss_with_aux,
    make_loss,
    make_optimizer,
    parameter_groups,
)
from cnnlab.training.progress import TrainProgress
from cnnlab.training.run import (
    Run,
    RunFolder,
    data_info,
    interrupted_message,
    open_run,
    resume_state,
    write_metrics,
)
from cnnlab.training.schedule import Plateau, lr_at
from cnnlab.training.tensorboard import TensorBoardLog
from cnnlab.training.validate import check_input_fits, check_model_options

# Called after every epoch with (epoch, record); raising StopTraining ends the run cleanly.
WHITEN_IMAGES = 5000  # training images a data-initialised first layer is computed from
EpochCallback = Callable[[int, dict], None]


class StopTraining(Exception):
    """Raised by a callback to stop after the current epoch (its checkpoint is written)."""


@dataclass
class Setup:
    """What :func:`fit` trains with, built from a config by :func:`prepare`."""

    config: TrainConfig
    device: torch.device
    model: nn.Module  # the network itself: what is saved, evaluated and returned
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
    world: World = SINGLE
    scaling: Scaling | None = None  # global batch and the learning rate it implies
    step_model: nn.Module | None = None  # what a training step calls: DDP and/or compiled model; None: model
    scaler: torch.amp.GradScaler | None = None  # fp16 loss scaling; disabled (a pass-through) otherwise
    extras: StepExtras | None = None  # mixup/cutmix, gradient clipping, EMA (cnnlab.training.extras)
    data_note: str = ""  # in memory or streamed, and why (cnnlab.training.data)
    precision: Precision | None = None  # autocast dtype and memory layout, and why; None: fp32 NCHW
    threads_note: str = ""  # the CPU thread count and why

    def lr(self, step: int) -> float:
        return self.lr_at(step) * self.plateau.factor

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch: micro-batches / accumulation steps, rounded up."""
        return -(-len(self.train) // self.config.accum_steps)


@dataclass
class EpochStats:
    """One pass over the training batches, measured in train mode."""

    loss: float  # mean training loss over the epoch's images
    acc: float  # fraction of them classified right (before each step)
    lr: float  # the last step's learning rate
    images: int
    seconds: float


def prepare(config: TrainConfig, *, world: World = SINGLE, device: torch.device | None = None) -> Setup:
    """Seed, load the data, build the model, batches, optimizer, loss and schedule, for this
    rank of ``world`` on ``device`` (default: the config's device, one process). The model is
    not wrapped yet (:func:`fit` does that after a resume has loaded its weights)."""
    device = resolve_device(config.device) if device is None else device
    check_sync_bn(world, device, config.sync_bn)
    threads, threads_note = choose_threads(config.threads) if device.type == "cpu" else (config.threads, "")
    generator = seed_everything(config.seed, deterministic=config.deterministic, threads=threads)
    # Check names before the (slower) data loading: unknown model, dataset or option fail first.
    spec = get_dataset_spec(config.data)
    get_preset(config.augment)
    check_model_options(config.model, config.model_options, num_classes=len(spec.classes_at(data_root(config.data_root))))
    data = load_data(config, input_size=get_model_info(config.model).input_size[-1])  # in memory or streamed
    train_set, val_set, test_set = data.train, data.val, data.test
    # Built with its weights, new head and frozen backbone when fine-tuning (cnnlab.training.finetune).
    model, head = build_model(config, num_classes=train_set.num_classes, in_chans=train_set.image_size[0])
    pad = config.pad if config.pad is not None else fit_padding(train_set.image_size, get_model_info(model).input_size)
    check_input_fits(config.model, config.model_options, num_classes=train_set.num_classes,
                     image_size=train_set.image_size, pad=pad, data=config.data)
    # Precision and layout for this machine and model (a cached probe where both are open);
    # rank 0 decides for all ranks, so that every rank runs the same arithmetic.
    input_shape = (train_set.image_size[0], *(s + 2 * pad for s in train_set.image_size[1:]))
    precision = from_writer(world, lambda: choose_precision(
        config.amp, config.channels_last, device, model, input_shape=input_shape, num_classes=train_set.num_classes,
        family=config.model,
    ), what="choosing the precision")
    model.to(device=device, memory_format=torch.channels_last if precision.channels_last else torch.contiguous_format)
    layout_config = dataclasses.replace(config, channels_last=precision.channels_last)  # what the batches are built for
    if world.rank:  # every rank starts from the same weights; augmentation and dropout differ per rank
        generator.manual_seed(rank_seed(config.seed, world.rank))
        torch.manual_seed(rank_seed(config.seed, world.rank))

    def batches(dataset, train_mode: bool) -> Batches:
        return make_batches(layout_config, dataset, train=train_mode, device=device, pad=pad, generator=generator,
                            rank=world.rank, world_size=world.world_size)

    train, val, test = batches(train_set, True), batches(val_set, False) if len(val_set) else None, batches(test_set, False)
    # A first layer set from the training images (airbench's whitening); not over loaded weights
    # (a resume loads its checkpoint after this).
    if hasattr(model, "init_whitening") and isinstance(train, Batches) and config.weights is None:
        model.init_whitening(prepare_batch(train.images[:WHITEN_IMAGES], dtype=train.dtype, pad=pad, augment=None,
                                           generator=generator, mean=train.mean, std=train.std, channels_last=False))
    scaling = scale_lr(
        config.lr, batch_size=config.batch_size, world_size=world.world_size, accum_steps=config.accum_steps,
        reference_batch=config.reference_batch, warmup=config.warmup, epochs=config.epochs, schedule=config.schedule,
    )
    steps = -(-len(train) // config.accum_steps)  # optimizer steps per epoch
    schedule = partial(
        lr_at, schedule=config.schedule, peak=scaling.lr, total_steps=steps * config.epochs,
        warmup_steps=round(scaling.warmup * steps), step_size=config.step_size, milestones=config.milestones,
        gamma=config.gamma,
    )
    optimizer = make_optimizer(
        parameter_groups(model, weight_decay=config.weight_decay, norm_bias_decay=config.norm_bias_decay,
                         head=head, backbone_lr_scale=config.backbone_lr_scale, norm_lr_scale=config.norm_lr_scale), name=config.optimizer, lr=scaling.lr, momentum=config.momentum, nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )
    return Setup(
        config=config, device=device, model=model, train=train, val=val, test=test, optimizer=optimizer, plateau=Plateau(config.gamma, config.patience),
        loss_fn=make_loss(config.loss, num_classes=train_set.num_classes, label_smoothing=config.label_smoothing),
        lr_at=schedule, generator=generator, data_info={**data_info(train_set, pad), "mode": data.mode},  # mode: how eval crops it when streamed
        sizes=(len(train_set), len(val_set), len(test_set)), world=world, scaling=scaling,
        # fp16 autocast needs loss scaling (Micikevicius et al. 2018); bf16 and fp32 do not, and
        # a disabled scaler is a pass-through, so every precision runs the same step.
        scaler=torch.amp.GradScaler(device.type, enabled=precision.scaled),
        extras=StepExtras(config, model, num_classes=train_set.num_classes, generator=generator, total_steps=steps * config.epochs)
        if StepExtras.needed(config) else None,
        data_note=data.note, precision=precision, threads_note=threads_note,
    )


# Called after each optimizer step (rank 0, --tensorboard) with the global step (0-based).
StepCallback = Callable[..., None]


HOST_READ_EVERY = 32  # steps between host reads of the training loss on an accelerator


def train_one_epoch(
    model: nn.Module,
    batches: Batches,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    *,
    lr: Callable[[int], float],
    epoch: int,
    amp: bool | torch.dtype | None = False,  # the autocast dtype (Precision.dtype); True: bf16
    progress: TrainProgress | None = None,
    accum_steps: int = 1,
    scaler: torch.amp.GradScaler | None = None,
    world: World = SINGLE,
    on_step: StepCallback | None = None,
    extras: StepExtras | None = None,
    read_every: int | None = None,
) -> EpochStats:
    """One pass over ``batches`` (epoch ``epoch``, 0-based); ``lr(step)`` gives the learning
    rate of each global optimizer step. Auxiliary heads (GoogLeNet) add to the loss; a loss
    that is not finite stops training with the step and learning rate that caused it.

    ``accum_steps`` micro-batches make one optimizer step; each micro-batch's loss is weighted
    by its share of the step's images, so k micro-batches of B images step like one batch of
    kB (up to float rounding). Under DDP (``model`` has ``no_sync``) gradients are all-reduced
    on a step's last micro-batch only. The returned statistics cover every rank of ``world``.
    ``read_every``: batches between host reads of the loss (default: 1 on a CPU or with
    ``on_step``, else :data:`HOST_READ_EVERY`, so a GPU's queue is not drained every step)."""
    model.train()
    keep_frozen_in_eval(model)  # a linear probe's frozen backbone: eval mode (cnnlab.training.finetune)
    check_equal_steps(world, len(batches))
    scaler = scaler if scaler is not None else torch.amp.GradScaler(enabled=False)  # a pass-through
    if progress is not None:  # rank 0's batches stand for all ranks' (the same count each)
        progress.start_epoch(epoch + 1, batches.num_images * world.world_size)
    t0 = time.perf_counter()
    loss_sum = 0.0
    correct = seen = 0
    step_lr = 0.0
    n_batches, size, total = len(batches), batches.batch_size, batches.num_images
    steps_per_epoch = -(-n_batches // accum_steps)
    step_images = size
    optimizer.zero_grad(set_to_none=True)
    last_finite: float | None = None  # the last batch's loss, for the message if one is not finite
    # Reading a loss on the host waits for the device. On a CPU that costs nothing; on a GPU it
    # would stall the queue every step, so the batches' losses and hits stay on the device and
    # are read together every `read_every` steps (the finite check then names the exact step,
    # up to that many steps late; nothing has been saved meanwhile).
    pending: list[tuple[int, int, float, Tensor, Tensor]] = []  # (batch, images, lr, loss*n, hits)
    auto_read = read_every is None
    read_every = 1 if read_every is None else read_every

    def read_pending() -> None:
        nonlocal loss_sum, correct, seen, last_finite
        if not pending:
            return
        losses = torch.stack([p[3] for p in pending]).double().tolist()
        hits = torch.stack([p[4] for p in pending]).tolist()
        for (i, n, at_lr, _, _), batch_loss, batch_correct in zip(pending, losses, hits):
            check_finite_loss(batch_loss / n, last_finite, epoch=epoch, step=i, lr=at_lr)
            last_finite = batch_loss / n
            loss_sum += batch_loss
            correct += batch_correct
            seen += n
            if progress is not None:
                progress.advance(n * world.world_size, batch_loss * world.world_size, batch_correct * world.world_size)
            if on_step is not None and (i == n_batches - 1 or (i + 1) % accum_steps == 0):
                step = epoch * steps_per_epoch + i // accum_steps
                on_step(step, loss=batch_loss / n, lr=at_lr, images=step_images * world.world_size)
        pending.clear()

    for i, (x, y) in enumerate(batches):
        first = i - i % accum_steps  # the step's first and last micro-batch
        last = min(first + accum_steps, n_batches) - 1
        step = epoch * steps_per_epoch + i // accum_steps
        if i == first:
            step_lr = lr(step)
            for group in optimizer.param_groups:
                group["lr"] = step_lr * group.get("lr_scale", 1.0)  # the backbone's share in fine-tuning; norm_lr_scale
            step_images = min(total, (last + 1) * size) - first * size  # every batch but the pass's last is full
        no_sync = i != last and hasattr(model, "no_sync")
        with model.no_sync() if no_sync else contextlib.nullcontext():
            x, target = extras.mix(x, y) if extras is not None else (x, y)  # soft targets under mixup/cutmix
            with autocast(x.device, amp):
                logits, aux = split_outputs(model(x))
                loss = loss_with_aux(loss_fn, logits, aux, target)
            n = len(y)
            scaler.scale(loss * (n / step_images) if step_images != n else loss).backward()
        if i == last:
            if extras is not None:
                extras.clip(optimizer, scaler)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if extras is not None:
                extras.after_step()  # EMA of the weights
        if auto_read and i == 0 and on_step is None and x.device.type != "cpu":
            read_every = HOST_READ_EVERY
        pending.append((i, n, step_lr, loss.detach().double() * n, (logits.detach().argmax(1) == y).sum()))
        if len(pending) >= read_every:
            read_pending()
    read_pending()
    seconds = all_max(world, time.perf_counter() - t0)
    loss_total, correct, seen = all_sum(world, [float(loss_sum), correct, seen])
    return EpochStats(loss_total / max(seen, 1), correct / max(seen, 1), step_lr, int(seen), seconds)


def fit(
    config: TrainConfig,
    *,
    resume: str | os.PathLike | None = None,
    callbacks: Sequence[EpochCallback] = (),
    quiet: bool = False,
) -> Run:
    """Train ``config.model`` on ``config.data`` into a run folder (``config.out``, else
    ``runs/<model>-<data>-<time>``), or continue the run in ``resume``; returns the Run with
    its path, history and model. ``callbacks`` are called after each epoch's checkpoint, on
    rank 0 (a StopTraining there stops every rank). ``cnnlab.train`` is this function.

    Started by torchrun, each rank calls it: they join one process group, rank 0 writes."""
    t_start = time.perf_counter()
    if resume is None:
        config = with_weight_options(config)  # recorded in config.json: eval rebuilds the same layout
    device_name, timeout = config.device, config.dist_timeout
    if resume is not None and (Path(resume) / "config.json").is_file():
        saved = TrainConfig.load(Path(resume) / "config.json")  # the run's own device and timeout
        device_name, timeout = saved.device, saved.dist_timeout
    with join_world(device_name, timeout_s=timeout) as (world, device):
        return _fit(config, world, device, resume=resume, callbacks=callbacks, quiet=quiet, t_start=t_start)


def resolved_choices(config: TrainConfig, setup: Setup, device: torch.device) -> TrainConfig:
    """``config`` with what was chosen for this machine written in: precision, layout, threads.

    ``--amp auto``, an unset ``channels_last`` and an unset thread count are decided by
    measurement and by the machine's load (cnnlab.training.device); config.json records the
    decision, so that a resume (or a rerun from the folder's config) continues with the same
    arithmetic instead of deciding again, possibly otherwise. The run header says why."""
    precision = setup.precision
    changes: dict = {}
    if precision is not None:
        changes.update(amp="off" if precision.dtype is None else "on", channels_last=precision.channels_last)
    if device.type == "cpu" and config.threads is None:
        changes["threads"] = torch.get_num_threads()
    return dataclasses.replace(config, **changes)


def _fit(
    config: TrainConfig, world: World, device: torch.device, *, resume: str | os.PathLike | None,
    callbacks: Sequence[EpochCallback], quiet: bool, t_start: float,
) -> Run:
    writer = world.is_writer
    run_dir, config = from_writer(world, lambda: open_run(config, resume), what="opening the run folder")
    setup = prepare(config, world=world, device=device)
    if resume is None:
        config = resolved_choices(config, setup, device)
    folder = RunFolder(run_dir, config, setup.data_info, resume=resume is not None)  # nothing on disk yet
    with (
        own_run_folder(world, folder),
        TrainProgress(config.epochs, quiet=quiet or not writer) as progress,
        open(run_dir / "train.log" if writer else os.devnull, "a") as log,
    ):
        state = restore(setup, run_dir) if resume is not None else TrainingState()
        ema_warning = resume_extras(setup.extras, world, run_dir, state.epoch) if resume is not None else None
        setup.step_model = step_module(setup)  # DDP broadcasts rank 0's (maybe resumed) weights here
        elapsed_before = state.history[-1]["elapsed_s"] if state.history else 0.0  # wall time of earlier sessions
        run = Run(run_dir, config, state.history, setup.data_info, setup.model)
        tensorboard = TensorBoardLog(run_dir, start_step=state.epoch * setup.steps_per_epoch) if config.tensorboard and writer else None
        first_line = header(setup, run_dir)
        progress.log(first_line)
        log.write(first_line + "\n")
        log.flush()  # on disk now, not after the first epoch
        if state.epoch:
            progress.log(f"resuming after epoch {state.epoch}")
        if ema_warning:
            progress.log(ema_warning)
        if setup.precision is not None and setup.precision.warning:
            progress.log(setup.precision.warning)
            log.write(setup.precision.warning + "\n")
        amp = setup.precision.dtype if setup.precision is not None else None  # autocast dtype; None: fp32
        try:
            for epoch in range(state.epoch, config.epochs):
                setup.train.set_epoch(epoch)
                with collective(world, f"training epoch {epoch + 1}"):
                    stats = train_one_epoch(
                        setup.step_model, setup.train, setup.optimizer, setup.loss_fn, lr=setup.lr, epoch=epoch,
                        amp=amp, progress=progress, accum_steps=config.accum_steps, scaler=setup.scaler, extras=setup.extras,
                        world=world, on_step=tensorboard.step if tensorboard else None,
                    )
                val = evaluate_sharded(setup.model, setup.val, world, amp=amp) if setup.val is not None else None  # a rank may hold 0 val batches
                last = epoch == config.epochs - 1
                test = (evaluate_sharded(setup.model, setup.test, world, amp=amp)
                        if config.eval_test_every_epoch or last else None)
                record = epoch_record(epoch, setup.steps_per_epoch, stats, val, test)
                record.update(ema_metrics(setup.extras, setup.val, setup.test if test is not None else None, world, amp=amp))
                record["elapsed_s"] = elapsed_before + time.perf_counter() - t_start
                state.history.append(record)
                if config.schedule == "plateau" and val is not None:
                    setup.plateau.update(val.top1_acc)
                score = val.top1_acc if val is not None else stats.acc
                is_best, state.best_val, state.epoch = score > state.best_val, max(state.best_val, score), epoch + 1
                rng = gather_objects(world, rng_state(setup.generator))  # every rank's, for an exact resume
                if writer:
                    save_epoch(run_dir, setup, state, is_best=is_best, rng=rng)  # the EMA commits with it
                    progress.log(epoch_line(record, config.epochs))
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    if tensorboard is not None:
                        tensorboard.epoch(record)
                if from_writer(world, lambda: run_callbacks(callbacks, epoch + 1, record), what="waiting for rank 0's callbacks"):
                    break
        except KeyboardInterrupt:
            progress.log(interrupted_message(run_dir))
            raise
        finally:
            if tensorboard is not None:
                tensorboard.close()
    return run


# --- the run folder's lifecycle and a loss that is not finite (issue 17) ---------------------


class NonFiniteLoss(CnnlabError):
    """The training loss became NaN or infinite: the run stops; its last checkpoint is kept."""


def check_finite_loss(loss: float, last_finite: float | None, *, epoch: int, step: int, lr: float) -> None:
    """Stop with one line when ``loss`` (a batch's mean loss) is NaN or infinite: where
    (epoch and step, 1-based), the last finite loss, and the learning rate to lower."""
    if math.isfinite(loss):
        return
    last = f"{last_finite:.4g}" if last_finite is not None else "none yet"
    raise NonFiniteLoss(
        f"the loss became {loss} at epoch {epoch + 1}, step {step + 1} (last finite loss {last}); "
        f"the learning rate {lr:g} is probably too high: lower it (--lr) and train again"
    )


@contextlib.contextmanager
def own_run_folder(world: World, folder: RunFolder) -> Iterator[RunFolder]:
    """Rank 0 claims the run folder (:class:`~cnnlab.training.run.RunFolder`: created now,
    locked, checked, config.json written) and every rank learns whether it could; leaving,
    rank 0 releases it, removing what it wrote when no checkpoint was committed."""
    from_writer(world, folder.claim, what="claiming the run folder")
    try:
        yield folder
    except NonFiniteLoss as e:
        if world.is_writer:
            folder.release(failed=True)
        raise NonFiniteLoss(f"{e}; {folder.kept()}") from None
    except BaseException:
        if world.is_writer:
            folder.release(failed=True)
        raise
    if world.is_writer:
        folder.release(failed=False)


def restore(setup: Setup, run_dir: Path) -> TrainingState:
    """Resume: rank 0 loads the newest good checkpoint and sends its state (the other ranks
    need no copy of the run folder); the optimizer, schedule and RNG continue from it. A folder
    with no completed epoch starts from epoch 0 (a warning says so)."""
    state = from_writer(setup.world, lambda: resume_state(run_dir, setup.model), what="loading the checkpoint")
    if state.epoch:
        setup.optimizer.load_state_dict(state.optimizer)
        setup.plateau.load_state_dict(state.plateau)
        set_rng_state(rank_rng_state(state.rng, setup.world), setup.generator)
    return state


def run_callbacks(callbacks: Sequence[EpochCallback], epoch: int, record: dict) -> bool:
    """Call each callback; True when one raised StopTraining (the run then stops)."""
    try:
        for callback in callbacks:
            callback(epoch, record)
    except StopTraining:
        return True
    return False


def step_module(setup: Setup) -> nn.Module:
    """What a training step calls: the model, under DDP in a distributed run (SyncBatchNorm
    with ``sync_bn``), compiled with ``compile``. Saving and evaluation use ``setup.model``."""
    module = wrap_model(setup.model, setup.world, setup.device, sync_bn=setup.config.sync_bn)
    if setup.config.compile:
        module = torch.compile(module)
    return module


def rank_rng_state(saved: dict, world: World) -> dict:
    """This rank's RNG state out of a checkpoint's (one per rank; older runs saved one dict)."""
    ranks = saved["ranks"] if "ranks" in saved else [saved]
    if len(ranks) != world.world_size:
        raise CnnlabError(
            f"this run was trained by {len(ranks)} process(es) and is resumed by {world.world_size}; "
            f"resume it with {len(ranks)} (its global batch and data order depend on the number)"
        )
    return ranks[world.rank]


def save_epoch(run_dir: os.PathLike, setup: Setup, state: TrainingState, *, is_best: bool, rng: list[dict]) -> None:
    """Save the epoch just finished: weights, optimizer, plateau, every rank's RNG state
    (``rng``, in rank order), the EMA's weights and counters (one transaction), history,
    metrics.csv."""
    state.optimizer = setup.optimizer.state_dict()
    state.plateau = setup.plateau.state_dict()
    state.rng = {"ranks": rng}
    extra = setup.extras.weights(epoch=state.epoch) if setup.extras is not None else None
    save_checkpoint(run_dir, setup.model, state, model_name=setup.config.model, is_best=is_best, extra_weights=extra)
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
    """The run's first log line: model, data sizes, iterations, device, processes, global batch
    and learning rate (after the linear scaling rule), folder."""
    c = setup.config
    params = sum(p.numel() for p in setup.model.parameters())
    n_train, n_val, n_test = setup.sizes
    world = setup.world
    scaling = setup.scaling or scale_lr(c.lr, batch_size=c.batch_size, world_size=world.world_size,
                                        accum_steps=c.accum_steps, reference_batch=c.reference_batch,
                                        warmup=c.warmup, epochs=c.epochs, schedule=c.schedule)
    extras = [setup.data_note, check_sync_bn(world, setup.device, c.sync_bn), "torch.compile" if c.compile else "",
              f"precision {setup.precision.describe()}" if setup.precision is not None else "", setup.threads_note]
    if world.world_size > 1 and n_train % world.world_size:
        extras.append(f"{n_train % world.world_size} image(s) of each epoch's order left out so the ranks' shares are equal")
    return (
        f"{c.model} ({params:,} parameters) on {c.data}: {n_train:,} train / {n_val:,} val / {n_test:,} test images, "
        f"batch {c.batch_size} = {setup.steps_per_epoch:,} iterations per epoch, {c.epochs} epoch{'s' if c.epochs != 1 else ''}, "
        f"device {setup.device.type}, {world.describe()}, "
        f"{scaling.describe(per_rank=c.batch_size, world_size=world.world_size, accum_steps=c.accum_steps, lr=c.lr)}, "
        + "".join(f"{e}, " for e in extras if e)
        + f"run folder {run_dir}"
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
