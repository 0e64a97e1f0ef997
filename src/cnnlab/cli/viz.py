"""`cnnlab viz ...`: wiring over cnnlab.viz."""

from __future__ import annotations

from pathlib import Path

import click

from cnnlab.cli.common import (
    cli,
    data_root_option,
    device_option,
    invert_option,
    out_option,
    save_figure,
    split_option,
    weights_option,
)
from cnnlab.data.files import safe_name


@cli.group("viz")
def viz_command() -> None:
    """Figures that look inside networks; each writes a PNG (under the run folder, or --out)."""


def _parse_ints(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers such as 0,1,2, got {text!r}", param_hint=what) from None


_OUT = out_option()
_WEIGHTS = weights_option()
_DATA_ROOT = data_root_option()


@viz_command.command("filters")
@click.argument("run", type=click.Path())
@click.option("--max", "max_kernels", type=click.IntRange(min=1), default=96, show_default=True, help="Kernels to draw at most.")
@_WEIGHTS
@_OUT
def viz_filters(run, max_kernels, weights, out) -> None:
    """First convolution layer's kernels as images.

    Colour for RGB inputs, grayscale otherwise, each kernel scaled to its own range (RUN/filters.png)."""
    from cnnlab.training.run import load_run
    from cnnlab.viz.activations import first_conv
    from cnnlab.viz.filters import plot_filters

    loaded = load_run(run, weights=weights)
    name, conv = first_conv(loaded.model)
    fig = plot_filters(conv.weight, layer=name, max_kernels=max_kernels,
                       title=f"{loaded.config.model} on {loaded.config.data} ({loaded.path.name})")
    save_figure(fig, out, loaded.path / "filters.png")


@viz_command.command("patches")
@click.argument("run", type=click.Path())
@click.option("--layer", "-l", required=True, help="Layer name as in `cnnlab summary MODEL` (e.g. features.c3, layer2.0).")
@click.option("--channels", "-c", default=None, help="Comma-separated channels.  [default: the first 8]")
@split_option()
@click.option("--limit", type=click.IntRange(min=1), default=10000, show_default=True,
              help="Search N images of the split (a seeded random sample when the split is larger).")
@click.option("--top", "k", type=click.IntRange(min=1, max=25), default=9, show_default=True, help="Patches per channel.")
@_DATA_ROOT
@_WEIGHTS
@_OUT
def viz_patches(run, layer, channels, split, limit, k, data_root, weights, out) -> None:
    """Top-9 dataset patches per channel (Zeiler & Fergus).

    For each chosen channel of LAYER, the nine dataset images that excite it most (maximum over
    positions), each cropped to the winning unit's receptive field (RUN/patches-LAYER.png)."""
    from cnnlab.data import load_dataset, random_subset
    from cnnlab.training.run import load_run
    from cnnlab.viz.patches import oversized_field_note, plot_top_patches, top_patches

    loaded = load_run(run, weights=weights)
    chosen = _parse_ints(channels, "--channels")
    dataset = load_dataset(loaded.config.data, split, data_root or loaded.config.data_root)
    if limit < len(dataset):  # a seeded random sample: image folders are sorted by class
        dataset = random_subset(dataset, limit, seed=0)
    images, labels = dataset.images, dataset.labels
    try:
        field, patches = top_patches(loaded.model, layer, images, labels, loaded.data_info, channels=chosen, k=k)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    note = oversized_field_note(field, layer, images.shape[-2:], int(loaded.data_info.get("pad", 0)))
    if note:
        click.echo(note)
    fig = plot_top_patches(patches, field, layer=layer, classes=loaded.data_info["classes"],
                           title=f"{loaded.config.model} on {loaded.config.data}, {len(images):,} {split} images")
    save_figure(fig, out, loaded.path / f"patches-{safe_name(layer)}.png")


@viz_command.command("activations")
@click.argument("run", type=click.Path())
@click.argument("image")
@click.option("--layer", "-l", required=True, help="Layer name as in `cnnlab summary MODEL` (e.g. features.c1).")
@click.option("--channels", "-c", default=None, help="Comma-separated channels.  [default: the first 64]")
@invert_option(help="Invert a grayscale image file (as in `cnnlab predict`).")
@_DATA_ROOT
@_WEIGHTS
@_OUT
def viz_activations(run, image, layer, channels, invert, data_root, weights, out) -> None:
    """Feature maps of one layer for one image.

    IMAGE is an image file, or SPLIT:INDEX of the run's dataset such as test:0
    (RUN/activations-LAYER-IMAGE.png)."""
    from cnnlab.training.run import load_run
    from cnnlab.viz.activations import feature_maps, input_image, padded_image, plot_activations

    loaded = load_run(run, weights=weights)
    info = loaded.data_info
    picked = input_image(image, data=loaded.config.data, data_root=data_root or loaded.config.data_root, data_info=info,
                         invert=invert)
    maps = feature_maps(loaded.model, layer, picked.pixels, info)
    try:
        fig = plot_activations(padded_image(picked.pixels, int(info.get("pad", 0))), maps, layer=layer,
                               channels=_parse_ints(channels, "--channels"),
                               title=f"{loaded.config.model} on {loaded.config.data}: {picked.description}")
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    save_figure(fig, out, loaded.path / f"activations-{safe_name(layer)}-{safe_name(picked.stem)}.png")


@viz_command.command("curves")
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--x", "x", type=click.Choice(["epoch", "time"]), default="epoch", show_default=True,
              help="Against epochs, or wall time from each run's start (time to accuracy).")
@click.option("--target", "targets", type=str, multiple=True, metavar="ACC",
              help="A test accuracy (0.9, 90 or 90%; repeatable): drawn as a line, and each run's time and epoch to reach it printed.")
@_OUT
def viz_curves(runs, x, targets, out) -> None:
    """Loss, error and learning rate per epoch, or against wall time (--x time).

    Several runs are overlaid (RUN/curves.png for one run, curves.png here for several).
    With --target, one line per run and target says when the run first reached that test
    accuracy (the weights' or the EMA weights')."""
    from cnnlab.viz.curves import best_test_accuracy, first_reaching, plot_curves, run_histories

    accuracies = [_parse_accuracy(target) for target in targets]
    histories = run_histories(runs)
    title = histories[0][0] if len(runs) == 1 else f"{len(runs)} runs"
    default = Path(runs[0]) / "curves.png" if len(runs) == 1 else Path("curves.png")
    if x == "time":
        default = default.with_name("curves-time.png")
    width = max(len(name) for name, _ in histories)
    for accuracy in accuracies:
        for name, history in histories:
            hit = first_reaching(history, accuracy)
            if hit is None:
                best = best_test_accuracy(history)
                seen = f"best {100 * best:.2f}%" if best is not None else "no test evaluation"
                click.echo(f"{name:<{width}}  {100 * accuracy:g}% not reached ({seen}, {len(history)} epochs)")
            else:
                row, which = hit
                elapsed = row.get("elapsed_s")
                when = f"{elapsed:,.0f} s from the start" if isinstance(elapsed, (int, float)) else "no wall time recorded"
                click.echo(f"{name:<{width}}  {100 * accuracy:g}% first at epoch {row['epoch']}, {when} ({which})")
    save_figure(plot_curves(histories, title=title, x=x, targets=accuracies), out, default)


def _parse_accuracy(text: str) -> float:
    """--target's accuracy: a fraction (0.9) or a percentage (90, 90%)."""
    raw = text.strip().removesuffix("%")
    try:
        value = float(raw)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an accuracy; expected e.g. 0.9, 90 or 90%", param_hint="--target") from None
    fraction = value / 100 if (text.strip().endswith("%") or value > 1) else value
    if not 0.0 < fraction <= 1.0:
        raise click.BadParameter(f"{text!r} is not an accuracy between 0 and 100%", param_hint="--target")
    return fraction


@viz_command.command("confusion")
@click.argument("run", type=click.Path())
@split_option()
@device_option()
@_OUT
def viz_confusion(run, split, device, out) -> None:
    """Confusion matrix heat map of a run.

    Evaluates RUN on a split of its dataset (RUN/confusion-SPLIT.png)."""
    from cnnlab.training.evaluate import evaluate
    from cnnlab.training.run import load_run
    from cnnlab.viz.confusion import plot_confusion

    loaded = load_run(run)
    result = evaluate(loaded, split=split, device=device)
    fig = plot_confusion(result.confusion, loaded.data_info["classes"], title=f"{loaded.path.name}, {split} split")
    save_figure(fig, out, loaded.path / f"confusion-{split}.png")
