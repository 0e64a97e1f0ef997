"""`cnnlab train`: wiring over cnnlab.training.

Every TrainConfig field has a flag (generated below from the dataclass's types and the
library's choice lists), and ``--set key=value`` takes any of them by name. Training never
plots: this command draws ``curves.png`` after every epoch and at the end.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
from pathlib import Path
from typing import Any, Callable

import click

from cnnlab.cli.common import cli, console, parse_options
from cnnlab.data.augment import PRESETS
from cnnlab.errors import CnnlabError
from cnnlab.training.config import CHOICES, TrainConfig, build_config, parse_setting, setting_types
from cnnlab.training.device import resolve_device
from cnnlab.training.distributed import is_writer_process, launched_by_torchrun
from cnnlab.training.launch import launch, worker_args
from cnnlab.training.loop import fit
from cnnlab.training.run import default_run_dir

# Help for each setting's flag, in TrainConfig's order. model, data, model_options and
# recipe have their own argument and options (MODEL, --data, --option, --recipe).
HELP: dict[str, str] = {
    "data_root": "Data root (else $CNNLAB_DATA, else ~/.cache/cnnlab).",
    "val_size": "Validation images held out of the training split.  [default: the dataset's]",
    "train_subset": "Train on a seeded random subset of this many training images.",
    "weights": "Start from these weights: a .pth/.safetensors path, URL, run folder, or torchvision (the model's default published file).",
    "num_classes": "Classes of the model: auto (the dataset's); another number than the weights' gives a new, zero classifier.",
    "freeze": "backbone: train only the classifier (linear probe; the frozen backbone stays in eval mode, BN statistics kept).",
    "backbone_lr_scale": "Fine-tuning: the backbone's learning rate as a fraction of the head's, e.g. 0.1.",
    "epochs": "Passes over the training split.",
    "batch_size": "Training images per step.",
    "eval_batch_size": "Images per batch when evaluating.",
    "optimizer": "Optimizer.",
    "lr": "Peak learning rate (after warmup; one-cycle's maximum).",
    "momentum": "SGD momentum (Adam's beta1).",
    "nesterov": "Nesterov momentum for SGD.",
    "weight_decay": "L2 weight decay coefficient (decoupled for adamw).",
    "schedule": "Learning-rate schedule.",
    "step_size": "step schedule: decay every this fraction of training.",
    "milestones": "multistep decay points as fractions of training, e.g. 0.5,0.75.",
    "gamma": "Decay factor of the step, multistep and plateau schedules.",
    "patience": "plateau schedule: epochs without a better validation accuracy before decaying.",
    "warmup": "Epochs of linear learning-rate warmup (fractions allowed).",
    "label_smoothing": "Label smoothing of the cross-entropy, in [0, 1).",
    "loss": "ce: softmax cross-entropy; mse: squared error of softmax vs one-hot.",
    "augment": f"Augmentation preset for training batches: {', '.join(PRESETS)}.",
    "data_mode": "auto: in memory when the decoded images fit --memory-budget, else streamed from the files.",
    "memory_budget": "Memory the in-memory path may use, e.g. 8GB.  [default: a quarter of RAM]",
    "workers": "Streaming: image-decoding worker processes.  [default: half the cores, 1 to 8]",
    "crop_size": "Training crop side of the ImageNet presets.  [default: 224; streaming: the model's input]",
    "image_size": "Resize the dataset's images (shorter side, centre crop) to this side, for a model built for another size.",
    "auto_augment": "trivialaugment: one random operation per training image (TrivialAugment wide).",
    "random_erase": "Probability of erasing a random rectangle of each training image.",
    "mixup_alpha": "Mixup's Beta(alpha, alpha); 0: off.",
    "cutmix_alpha": "CutMix's Beta(alpha, alpha); 0: off (with mixup: one of the two per batch).",
    "norm_bias_decay": "Weight decay on normalisation layers and biases too (--no-norm-bias-decay: not).",
    "norm_lr_scale": "Normalisation layers' learning rate as a multiple of the rest's (their decay per step unchanged).",
    "grad_clip": "Clip the gradients' global L2 norm to this.",
    "ema_decay": "Keep an exponential moving average of the weights with this decay (ema.safetensors).",
    "ema_every": "Optimizer steps between EMA updates.",
    "lookahead": "At each EMA update, set the weights back to the EMA (lookahead; the decay ramps with progress cubed).",
    "pad": "Zero padding of input images.  [default: what fits the model's input size]",
    "seed": "Seed of initialisation, hold-out, subset and batch order.",
    "device": "Device (auto: CUDA, else MPS, else CPU).",
    "threads": "CPU threads for torch.  [default: one per idle core]",
    "amp": "Mixed precision: auto (bf16/fp16 where native and measured faster), on, off (fp32); --amp alone: on.  [default: auto]",
    "channels_last": "Channels-last memory format.  [default: whichever a short probe measures faster]",
    "deterministic": "Deterministic kernels (exact resume on GPU).",
    "accum_steps": "Gradient accumulation: micro-batches per optimizer step.",
    "reference_batch": "Global batch the lr is given for; another global batch scales lr (linear scaling rule).",
    "sync_bn": "SyncBatchNorm over the global batch (distributed runs on CUDA).",
    "compile": "torch.compile the model for training.",
    "tensorboard": "Write TensorBoard event files to <run>/tensorboard.",
    "dist_timeout": "Seconds a rank waits for the others before stopping (distributed runs).",
    "eval_test_every_epoch": "Evaluate the test split every epoch (else only after the last).",
    "out": "Run folder (default runs/<model>-<data>-<time>).",
}
OWN_OPTIONS = ("model", "data", "model_options", "recipe")  # settings with an argument of their own


class _AutoCount(click.ParamType):
    """A positive integer, or "auto" (None: let the library decide)."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if value is None or (isinstance(value, str) and value.lower() == "auto"):
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            self.fail(f"expected a number of classes or auto, got {value!r}", param, ctx)


_AUTO_COUNT = _AutoCount()


def setting_option(name: str) -> Callable:
    """The click option of TrainConfig field ``name``: its type from the dataclass, its
    choices from the library; None (not given) leaves the recipe's value."""
    flag = "--" + name.replace("_", "-")
    kind = setting_types()[name]
    if isinstance(kind, types.UnionType):  # int | None: an int flag, left out for None
        kind = next(a for a in kind.__args__ if a is not type(None))
    if name == "num_classes":  # "auto" (None): the dataset's
        return click.option(flag, type=_AUTO_COUNT, metavar="N|auto", help=HELP[name])
    if name == "amp":  # once a bool flag: a bare --amp still means on
        return click.option(flag, type=click.Choice(CHOICES[name]), is_flag=False, flag_value="on", help=HELP[name])
    if name in CHOICES:
        return click.option(flag, type=click.Choice(CHOICES[name]), help=HELP[name])
    if kind is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", default=None, help=HELP[name])
    if kind in (int, float):
        return click.option(flag, type=kind, help=HELP[name])
    if name in ("out", "data_root"):
        return click.option(flag, type=click.Path(file_okay=name == "out"), help=HELP[name])
    metavar = "A,B,..." if name == "milestones" else None
    return click.option(flag, metavar=metavar, help=HELP[name])  # parsed by parse_setting


def setting_options(fn: Callable) -> Callable:
    for name in reversed(list(HELP)):
        fn = setting_option(name)(fn)
    return fn


def collect_settings(flags: dict[str, Any], pairs: tuple[str, ...]) -> dict[str, Any]:
    """Flag values that were given, then ``--set`` pairs (a setting may come from one only)."""
    settings = {k: v for k, v in flags.items() if v is not None}
    if isinstance(settings.get("milestones"), str):
        settings["milestones"] = parse_setting(f"milestones={settings['milestones']}")[1]
    for pair in pairs:
        key, value = parse_setting(pair)
        if key in OWN_OPTIONS:
            raise click.UsageError(f"--set {key}=...: give the {key} as MODEL, --data, --option or --recipe")
        if key in settings:
            raise click.UsageError(f"{key} is given twice (a flag and --set {pair}); give it once")
        settings[key] = value
    return settings


@cli.command("train")
@click.argument("model", required=False)
@click.option("--data", "-d", default=None, help="Dataset name (mnist, fashion-mnist, ...).  [default: mnist]")
@click.option("--recipe", "-r", default=None, help="Named recipe (TOML) to start from; default <model>-<data> if one ships.")
@setting_options
@click.option("--option", "-o", "options", multiple=True, help="Model option key=value (e.g. -o activation=relu).")
@click.option("--set", "pairs", multiple=True, metavar="KEY=VALUE",
              help="Any training setting by its name, e.g. --set gamma=0.5 --set val_size=none (repeatable).")
@click.option("--resume", type=click.Path(), help="Continue the run in this folder from its last checkpoint.")
@click.option("--nproc", type=click.IntRange(min=1), default=None,
              help="Processes (one per GPU, or CPU ranks) on this node, started through torchrun's launcher.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def train_command(model, data, recipe, options, pairs, resume, nproc, quiet, **flags) -> None:
    """Train MODEL on a dataset; writes a run folder (config, metrics.csv, checkpoints, curves.png).

    Several processes: --nproc N on one node, or `torchrun --nproc-per-node N -m cnnlab train ...`
    (and torchrun's rendezvous for several nodes); --batch-size is then per process."""
    from cnnlab.viz.curves import write_run_curves  # matplotlib: imported only when training

    settings = collect_settings(flags, pairs)
    if nproc is not None and launched_by_torchrun() and int(os.environ["LOCAL_WORLD_SIZE"]) != nproc:
        raise click.UsageError(f"--nproc {nproc} inside a torchrun worker of {os.environ['LOCAL_WORLD_SIZE']}; give one or the other")
    if resume:
        if model or data or recipe or options or settings:
            raise click.UsageError("--resume continues a run with its saved config; give no model, data or settings")
        config, run_dir = TrainConfig(), Path(resume)
        if nproc and nproc > 1 and (run_dir / "config.json").is_file():
            config = TrainConfig.load(run_dir / "config.json")  # for the launcher: the run's device
    else:
        if not model:
            raise click.UsageError("missing MODEL (see `cnnlab models`)")
        if options:
            settings["model_options"] = parse_options(options)
        unset = {k: None for k, v in settings.items() if v is None}  # --set key=none: drop the recipe's value
        config = build_config(model, data or "mnist", recipe=recipe, **settings)
        run_dir = Path(config.out) if config.out else default_run_dir(config)
        # The folder is fixed here, so that the curves can be drawn after every epoch.
        config = dataclasses.replace(config, **unset, out=str(run_dir))
    writer = is_writer_process()
    try:
        if nproc and nproc > 1 and not launched_by_torchrun():
            # The config is checked above, once; the workers (rank 0 writes) do the rest.
            argv = list(click.get_current_context().find_root().obj["argv"])
            if not resume and "out" not in settings:
                argv += ["--out", str(run_dir)]  # every rank names the same folder
            launch(worker_args(argv), nproc=nproc, device=resolve_device(config.device))
            return
        run = fit(config, resume=resume, quiet=quiet, callbacks=[lambda epoch, record: write_run_curves(run_dir)])
    except CnnlabError as e:
        if getattr(e, "reported_by_rank0", False):
            sys.exit(1)  # rank 0 prints the line; the other ranks stop quietly
        raise
    # The curves are drawn after each committed epoch (the callback), and here once more when
    # missing (a resumed finished run), only after fit succeeded: a refused or failed command
    # never touches a run's curves.png.
    if not writer:
        return
    metrics, curves = run_dir / "metrics.csv", run_dir / "curves.png"
    if metrics.is_file() and (not curves.is_file() or curves.stat().st_mtime < metrics.stat().st_mtime):
        write_run_curves(run_dir)
    final = run.final
    out = console()
    out.print(
        f"[bold]{run.config.model} on {run.config.data}[/bold]: test top-1 error {final['test_top1_err']:.2%} "
        f"(accuracy {1 - final['test_top1_err']:.2%}), top-5 error {final['test_top5_err']:.2%}, "
        f"{final['elapsed_s']:.1f}s"
    )
    out.print(f"run folder: {run.path}  (curves: {run.path / 'curves.png'})")
