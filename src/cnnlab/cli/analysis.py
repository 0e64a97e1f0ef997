"""`cnnlab summary`, `conv`, `chart`: wiring over cnnlab.analysis."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console

from cnnlab.analysis.format import MEMORY_DTYPES, OPTIMIZER_STATES
from cnnlab.analysis.table import FORMATS
from cnnlab.cli.common import cli


def _analysis_console() -> Console:
    # A table wider than a pipe's default 80 columns stays readable in files and pagers.
    return Console() if sys.stdout.isatty() else Console(width=170)


@cli.command("summary")
@click.argument("model")
@click.option("--input", "input_size", default=None, metavar="CxHxW",
              help="Input size, e.g. 3x224x224.  [default: the size the model's paper uses]")
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="Fold modules nested deeper than this level into one row per block.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batch size of the training-memory estimate (counts are per image).")
@click.option("--dtype", type=click.Choice(MEMORY_DTYPES), default="float32", show_default=True,
              help="Storage type for memory in MB.")
@click.option("--optimizer", type=click.Choice(list(OPTIMIZER_STATES)), default="momentum", show_default=True,
              help="Optimizer state in the training estimate: 0, 1 or 2 values per weight.")
@click.option("--video", default=None, metavar="WxH@FPS", help="Add the compute a real-time stream needs, e.g. 1920x1080@30.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--weights", default=None, metavar="SOURCE",
              help="Also check that these weights (path, URL, run folder, torchvision) fit MODEL, keys and shapes; "
                   "the counts are the same with any weights.")
def summary_command(model, input_size, depth, batch_size, dtype, optimizer, video, fmt, weights) -> None:
    """Per-layer table: output shape, parameters, MACs, activations, receptive field; then totals.

    MODEL is a registered name (see `cnnlab models`). Counts are for one image; the model is
    built on PyTorch's meta device (no memory, no weights), so even the largest take seconds.
    Counting rules: docs/analysis.md.
    """
    import json

    import torch

    from cnnlab.analysis import summary, video_compute
    from cnnlab.analysis.format import summary_csv, summary_dict, summary_markdown, summary_renderable

    if weights is not None:
        from cnnlab.models.weights import check_fit

        tensors, row = check_fit(model, weights)
        detail = f" ({row.tag}, top-1 {row.top1:.2f}%, resize {row.preprocess.resize}, crop {row.preprocess.crop}, " \
                 f"{row.preprocess.interpolation})" if row else ""
        click.echo(f"weights {weights}: all {tensors} tensors fit {model}{detail}", err=True)
    try:
        s = summary(model, input_size, batch_size=batch_size, dtype=getattr(torch, dtype), depth=depth, optimizer=optimizer)
        v = video_compute(s, video) if video else None
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    if fmt == "table":
        console = _analysis_console()
        console.print(summary_renderable(s, v, width=console.width))
    elif fmt == "markdown":
        click.echo(summary_markdown(s, v), nl=False)
    elif fmt == "csv":
        click.echo(summary_csv(s), nl=False)
    else:
        click.echo(json.dumps(summary_dict(s, v), indent=2))


@cli.group("conv")
def conv_command() -> None:
    """Convolution arithmetic with the working shown: sizes, parameters, pooling, receptive fields."""


@conv_command.command("layer")
@click.argument("input_hwc", metavar="HxWxC")
@click.option("--filters", "-k", type=click.IntRange(min=1), required=True, help="Number of filters K.")
@click.option("--kernel", "-f", type=click.IntRange(min=1), required=True, help="Filter size F (F x F).")
@click.option("--stride", "-s", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--padding", "-p", default="0", show_default=True, help="Zero padding P per side, or 'same'.")
@click.option("--dilation", "-d", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--groups", "-g", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--no-bias", is_flag=True, help="Filters without a bias term.")
def conv_layer_command(input_hwc, filters, kernel, stride, padding, dilation, groups, no_bias) -> None:
    """Output size, parameters and MACs of one convolution layer.

    HxWxC is height x width x channels, the lectures' notation: `cnnlab conv layer 32x32x3 -k 10 -f 5 -p 2`.
    """
    from cnnlab.analysis import conv_layer

    try:
        hwc = [int(v) for v in input_hwc.lower().split("x")]
        pad = padding if padding == "same" else int(padding)
        layer = conv_layer(hwc, filters, kernel, stride=stride, padding=pad, dilation=dilation, groups=groups, bias=not no_bias)
    except ValueError as e:
        raise click.UsageError(f"{e} (input {input_hwc!r} must be HxWxC such as 32x32x3; padding an integer or 'same')") from None
    for line in layer.explain():
        click.echo(line)


@conv_command.command("pool")
@click.argument("matrix")
@click.option("--size", type=click.IntRange(min=1), default=2, show_default=True, help="Window size (size x size).")
@click.option("--stride", type=click.IntRange(min=1), default=None, help="Step between windows.  [default: the size]")
@click.option("--mode", type=click.Choice(["max", "avg"]), default="max", show_default=True)
def conv_pool_command(matrix, size, stride, mode) -> None:
    """Max or average pooling of a small matrix, window by window.

    MATRIX: rows separated by ';', e.g. `cnnlab conv pool "1 1 2 4; 5 6 7 8; 3 2 1 0; 1 2 3 4"`.
    """
    from cnnlab.analysis.conv_arith import parse_matrix, pool2d

    try:
        rows = parse_matrix(matrix)
        result = pool2d(rows, size, stride=stride, mode=mode)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    width = max(len(f"{v:g}") for r in rows for v in r)
    click.echo("input:")
    for r in rows:
        click.echo("  " + " ".join(f"{v:>{width}g}" for v in r))
    for line in result.explain():
        click.echo(line)
    click.echo("output:")
    for r in result.output:
        click.echo("  " + " ".join(f"{v:>{width}g}" for v in r))


@conv_command.command("field")
@click.argument("layers", nargs=-1, required=True)
def conv_field_command(layers) -> None:
    """Receptive field of a stack of layers, with the working.

    Each layer is KERNEL[sSTRIDE][pPADDING][dDILATION]: `cnnlab conv field 3 3 3` (three 3x3 convs), `cnnlab conv field 3 3 2s2 3 3 2s2` (VGG's first blocks).
    """
    from cnnlab.analysis import StackWorking, stack_working
    from cnnlab.analysis.table import to_rich

    try:
        working = stack_working(layers)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    cols = StackWorking.COLUMNS
    _analysis_console().print(to_rich(cols, working.rows(), right=StackWorking.NUMERIC, wrap=cols[-1:], boxed=False))
    if working.closed_form():
        click.echo(working.closed_form())
    click.echo("jump: input pixels between neighbouring units (the product of the strides so far); "
               "start: centre of the first unit's field, in input pixels (padding moves it left).")


@cli.group("chart")
def chart_command() -> None:
    """Charts over the model zoo."""


@chart_command.command("accuracy-vs-compute")
@click.option("--out", default="accuracy_vs_compute.png", show_default=True, type=click.Path(dir_okay=False),
              help="PNG (or PDF, SVG) to write.")
@click.option("--models", "pattern", default="*", show_default=True, help="Shell pattern of model names, e.g. 'resnet*'.")
@click.option("--dataset", default="ImageNet", show_default=True, help="Only accuracies reported on this dataset.")
def chart_accuracy_command(out, pattern, dataset) -> None:
    """Bubble chart: reported top-1 accuracy vs GMACs, bubble area = parameters."""
    from cnnlab.analysis.chart import accuracy_vs_compute_points
    from cnnlab.models import list_models
    from cnnlab.viz.charts import accuracy_vs_compute

    names = list_models(pattern)
    if not names:
        raise click.UsageError(f"no model matches {pattern!r}; run `cnnlab models` to list them")
    points = accuracy_vs_compute_points(names, dataset=dataset)
    try:
        fig = accuracy_vs_compute(points, dataset=dataset)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    click.echo(f"wrote {out} ({len(points)} models)")
