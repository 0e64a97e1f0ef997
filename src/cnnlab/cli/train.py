"""`cnnlab train`: wiring over cnnlab.training."""

from __future__ import annotations

from pathlib import Path

import click

from cnnlab.cli.common import cli, console, parse_options


@cli.command()
@click.argument("model", required=False)
@click.option("--data", "-d", default=None, help="Dataset name (mnist, fashion-mnist, ...).  [default: mnist]")
@click.option("--recipe", "-r", default=None, help="Named recipe (TOML) to start from; default <model>-<data> if one ships.")
@click.option("--epochs", type=int, help="Passes over the training split.")
@click.option("--batch-size", type=int, help="Training images per step.")
@click.option("--lr", type=float, help="Peak learning rate.")
@click.option("--optimizer", type=click.Choice(["sgd", "adam", "adamw"]))
@click.option("--momentum", type=float, help="SGD momentum (Adam's beta1).")
@click.option("--nesterov/--no-nesterov", default=None, help="Nesterov momentum for SGD.")
@click.option("--weight-decay", type=float, help="L2 weight decay coefficient.")
@click.option("--schedule", type=click.Choice(["constant", "step", "multistep", "plateau", "cosine", "onecycle"]))
@click.option("--milestones", help="multistep decay points as fractions of training, e.g. 0.5,0.75.")
@click.option("--warmup", type=float, help="Epochs of linear learning-rate warmup.")
@click.option("--label-smoothing", type=float)
@click.option("--loss", type=click.Choice(["ce", "mse"]))
@click.option("--augment", help="Augmentation preset for training batches (none, mnist, ...).")
@click.option("--val-size", type=int, help="Validation images held out of the training split.")
@click.option("--seed", type=int)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]))
@click.option("--threads", type=int, help="CPU threads for torch (default: one per core).")
@click.option("--amp/--no-amp", default=None, help="bf16 autocast.")
@click.option("--channels-last/--no-channels-last", default=None)
@click.option("--option", "-o", "options", multiple=True, help="Model option key=value (e.g. -o activation=relu).")
@click.option("--data-root", type=click.Path(file_okay=False), help="Data root (else $CNNLAB_DATA, else ~/.cache/cnnlab).")
@click.option("--out", type=click.Path(), help="Run folder (default runs/<model>-<data>-<time>).")
@click.option("--resume", type=click.Path(), help="Continue the run in this folder from its last checkpoint.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def train(model, data, recipe, options, resume, quiet, milestones, **settings) -> None:
    """Train MODEL on a dataset; writes a run folder (config, metrics.csv, checkpoints, curves.png)."""
    from cnnlab.api import train as run_training
    from cnnlab.train.config import TrainConfig, build_config

    if resume:
        if model or data or recipe or options or any(v is not None for v in settings.values()):
            raise click.UsageError("--resume continues a run with its saved config; give no model, data or settings")
        config = TrainConfig.load(Path(resume) / "config.json") if (Path(resume) / "config.json").is_file() else TrainConfig()
    else:
        if not model:
            raise click.UsageError("missing MODEL (see `cnnlab models`)")
        if milestones:
            settings["milestones"] = tuple(float(m) for m in milestones.split(","))
        model_options = parse_options(options)
        if model_options:
            settings["model_options"] = model_options
        config = build_config(model, data or "mnist", recipe=recipe, **settings)
    run = run_training(config, resume=resume, quiet=quiet)
    final = run.final
    out = console()
    out.print(
        f"[bold]{run.config.model} on {run.config.data}[/bold]: test top-1 error {final['test_top1_err']:.2%} "
        f"(accuracy {1 - final['test_top1_err']:.2%}), top-5 error {final['test_top5_err']:.2%}, "
        f"{final['elapsed_s']:.1f}s"
    )
    out.print(f"run folder: {run.path}  (curves: {run.path / 'curves.png'})")


