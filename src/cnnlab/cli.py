"""The `cnnlab` command line. Wiring only: each command calls the library's functions.

Every command turns cnnlab's own errors (bad model, dataset, file, shape) into one line on
stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from cnnlab.errors import CnnlabError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="cnnlab")
def cli() -> None:
    """cnnlab: build, inspect, train and understand convolutional networks."""


# --- models and training (Foundation) ---------------------------------------------------


def _parse_options(pairs: tuple[str, ...]) -> dict:
    """``-o key=value`` pairs; values are Python literals (3, 0.5, True, (64, 32)) or strings."""
    options = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"expected key=value, got {pair!r}", param_hint="-o/--option")
        key, text = pair.split("=", 1)
        try:
            options[key.strip()] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[key.strip()] = text
    return options


def _console() -> Console:
    # Piped output (a file, `less`) gets wide lines rather than rich's 80-column default.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


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
        model_options = _parse_options(options)
        if model_options:
            settings["model_options"] = model_options
        config = build_config(model, data or "mnist", recipe=recipe, **settings)
    run = run_training(config, resume=resume, quiet=quiet)
    final = run.final
    console = _console()
    console.print(
        f"[bold]{run.config.model} on {run.config.data}[/bold]: test top-1 error {final['test_top1_err']:.2%} "
        f"(accuracy {1 - final['test_top1_err']:.2%}), top-5 error {final['test_top5_err']:.2%}, "
        f"{final['elapsed_s']:.1f}s"
    )
    console.print(f"run folder: {run.path}  (curves: {run.path / 'curves.png'})")


@cli.command()
@click.argument("pattern", default="*")
@click.option("--macs/--no-macs", default=True, help="Count MACs at each model's input size (meta device, no weights).")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "csv"]), default="table")
def models(pattern: str, macs: bool, fmt: str) -> None:
    """List registered models matching PATTERN (shell-style: 'resnet*') with parameters and MACs."""
    from cnnlab.models import get_model_info, list_models

    names = list_models(pattern)
    if not names:
        raise CnnlabError(f"no model matches {pattern!r}; run `cnnlab models` to list all")
    rows = []
    with Progress(TextColumn("counting {task.fields[name]}"), BarColumn(), MofNCompleteColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("models", total=len(names), name="")
        for name in names:
            progress.update(task, name=name)
            info = get_model_info(name)
            params, gmacs = _count(name, info.input_size, macs)
            top1 = f"{info.reported.top1:.1f}" if info.reported and info.reported.top1 else ""
            dataset = info.reported.dataset if info.reported else ""
            # In a table, the paper's authors and year; the full title in markdown and CSV.
            paper = _short_citation(info.paper) if fmt == "table" else info.paper
            params_text = str(params) if fmt == "csv" else f"{params:,}"
            rows.append([name, info.family, params_text, gmacs, "x".join(map(str, info.input_size)), top1, dataset, paper])
            progress.advance(task)
    headers = ["model", "family", "parameters", "GMACs", "input", "top-1 %", "on", "paper"]
    _print_rows(headers, rows, fmt, title=f"{len(rows)} models (GMACs at the input size; top-1 as reported)")


def _short_citation(paper: str) -> str:
    """'He, Zhang, Ren, Sun 2016, Deep residual ...' -> 'He et al. 2016'."""
    match = re.match(r"^(.*?)\b((?:19|20)\d\d)\b", paper)
    if not match:
        return paper.split(",")[0]
    authors = [a.strip() for a in re.split(r",|&|\band\b", match.group(1)) if a.strip()]
    if len(authors) > 2:
        return f"{authors[0]} et al. {match.group(2)}"
    return f"{' & '.join(authors)} {match.group(2)}"


def _count(name: str, input_size, with_macs: bool) -> tuple[int, str]:
    import torch

    from cnnlab.models import create_model

    try:
        from cnnlab.analysis import profile
    except ImportError:
        profile = None
    if with_macs and profile is not None:
        params, macs = profile(name, input_size)
        return params, f"{macs / 1e9:.3f}"
    with torch.device("meta"):
        model = create_model(name)
    return sum(p.numel() for p in model.parameters()), ""


def _print_rows(headers: list[str], rows: list[list[str]], fmt: str, *, title: str = "") -> None:
    if fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(rows)
        return
    if fmt == "markdown":
        click.echo("| " + " | ".join(headers) + " |")
        click.echo("|" + "|".join("---" for _ in headers) + "|")
        for row in rows:
            click.echo("| " + " | ".join(row) + " |")
        return
    table = Table(title=title, title_justify="left")
    for h in headers:
        numeric = h in ("parameters", "GMACs", "top-1 %")
        table.add_column(h, justify="right" if numeric else "left", no_wrap=True, overflow="ellipsis")
    for row in rows:
        table.add_row(*row)
    _console().print(table)


@cli.command("eval")
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--data", "-d", default=None, help="Dataset (default: the run's own).")
@click.option("--split", default="test", type=click.Choice(["train", "val", "trainval", "test"]))
@click.option("--data-root", type=click.Path(file_okay=False))
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda", "mps"]))
@click.option("--batch-size", default=500, type=int)
@click.option("--tta", default="none", show_default=True, type=click.Choice(["none", "flip", "center", "10crop"]),
              help="Test-time augmentation: average softmax over mirrors, or AlexNet's 10 crops at the model's input size.")
@click.option("--weights", default="best", show_default=True, type=click.Choice(["best", "last"]))
@click.option("--per-class", is_flag=True, help="Also print per-class accuracy and the confusion table.")
@click.option("--confusion", "confusion_png", type=click.Path(dir_okay=False), default=None,
              help="Write the confusion matrix heat map (of the ensemble, or the only run) to this PNG.")
def eval_cmd(runs, data, split, data_root, device, batch_size, tta, weights, per_class, confusion_png) -> None:
    """Top-1/top-5 error of one run, or of several runs and their ensemble (averaged probabilities)."""
    from cnnlab.evaluation import confusion_rows, evaluate_members, per_class_rows

    members = evaluate_members(list(runs), data=data, split=split, data_root=data_root, device=device,
                               batch_size=batch_size, tta=tta, weights=weights)
    report = [(m.name, m.result) for m in members]
    rows = [[name, f"{r.top1_err:.2%}", f"{r.top5_err:.2%}", f"{r.loss:.4f}", f"{r.num_images:,}"] for name, r in report]
    title = f"{split} split" + (f", TTA {tta}" if tta != "none" else "")
    _print_rows(["run", "top-1 error", "top-5 error", "loss", "images"], rows, "table", title=title)
    classes = members[0].classes
    if per_class:
        headers, rows = per_class_rows(classes, report)
        _print_rows(headers, rows, "table", title="per-class accuracy")
        headers, rows = confusion_rows(classes, report[-1][1].confusion)
        _print_rows(headers, rows, "table", title=f"confusion matrix of {report[-1][0]} (rows: true class)")
    if confusion_png:
        from cnnlab.viz.confusion import plot_confusion
        from cnnlab.viz.curves import save_figure

        name = report[-1][0] if len(report) > 1 else Path(report[0][0]).name
        fig = plot_confusion(report[-1][1].confusion, classes, title=name)
        save_figure(fig, confusion_png)
        click.echo(f"wrote {confusion_png}")


@cli.command()
@click.argument("run", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--top", "-k", default=5, show_default=True, help="Classes to show per image.")
@click.option("--invert", type=click.Choice(["auto", "yes", "no"]), default="auto", show_default=True,
              help="Invert grayscale images (auto: when the dataset is light-on-dark and the image is not).")
def predict(run, images, top, invert) -> None:
    """Classify image files (PNG, JPEG, ...) with a trained run; prints the top classes."""
    from cnnlab.predict import predict_images
    from cnnlab.train.run import load_run

    loaded = load_run(run)
    console = _console()
    for p in predict_images(loaded, [Path(i) for i in images], k=top, invert=invert):
        console.print(f"[bold]{p.path}[/bold]")
        for name, prob in p.top:
            bar = "█" * round(prob * 30)
            console.print(f"  {name:>12}  {prob:7.2%}  {bar}")


# --- analysis: summary, conv, chart -------------------------------------------------------


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
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True,
              help="Storage type for memory in MB.")
@click.option("--optimizer", type=click.Choice(["sgd", "momentum", "adam"]), default="momentum", show_default=True,
              help="Optimizer state in the training estimate: 0, 1 or 2 values per weight.")
@click.option("--video", default=None, metavar="WxH@FPS", help="Add the compute a real-time stream needs, e.g. 1920x1080@30.")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "csv", "json"]), default="table", show_default=True)
def summary_command(model, input_size, depth, batch_size, dtype, optimizer, video, fmt) -> None:
    """Per-layer table: output shape, parameters, MACs, activations, receptive field; then totals.

    MODEL is a registered name (see `cnnlab models`). Counts are for one image; the model is
    built on PyTorch's meta device (no memory, no weights), so even the largest take seconds.
    Counting rules: docs/analysis.md.
    """
    import json

    import torch

    from cnnlab.analysis import summary, video_compute
    from cnnlab.analysis.format import summary_dict, summary_markdown, summary_renderable

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
        click.echo(s.to_csv(), nl=False)
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
    from cnnlab.analysis import pool2d

    try:
        rows = ast.literal_eval(matrix) if matrix.strip().startswith("[") else [
            [float(v) for v in row.replace(",", " ").split()] for row in matrix.split(";") if row.strip()
        ]
        result = pool2d(rows, size, stride=stride, mode=mode)
    except (ValueError, SyntaxError) as e:
        raise click.UsageError(f"{e}; MATRIX is rows separated by ';', e.g. \"1 2; 3 4\", or a Python list of lists") from None
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
    from cnnlab.analysis import LayerSpec, field_of_stack, stacked_field

    try:
        specs = [LayerSpec.parse(t) for t in layers]
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    table = Table(box=None, header_style="bold")
    for col in ("layer", "kernel", "field r", "jump j", "start", "working: r_out = r_in + (k - 1) * dilation * j_in"):
        table.add_column(col, justify="right" if col in ("field r", "jump j", "start") else "left")
    r_in, j_in = 1, 1
    for i, (spec, f) in enumerate(zip(specs, field_of_stack(specs)), start=1):
        working = f"{r_in:g} + ({spec.kernel} - 1) * {spec.dilation} * {j_in:g} = {f.size[0]:g}"
        table.add_row(str(i), str(spec), f"{f.size[0]:g}", f"{f.jump[0]:g}", f"{f.start[0]:g}", working)
        r_in, j_in = f.size[0], f.jump[0]
    _analysis_console().print(table)
    uniform = len({(s.kernel, s.stride, s.dilation) for s in specs}) == 1 and specs[0].stride == specs[0].dilation == 1
    if uniform:
        n, L = specs[0].kernel, len(specs)
        click.echo(f"closed form for {L} stacked {n}x{n} stride-1 layers: 1 + L(n - 1) = 1 + {L}*({n} - 1) = {stacked_field(L, n)}")
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


# --- data and evaluation -------------------------------------------------------------------


@cli.command("data")
@click.argument("dataset")
@click.option("--data-root", type=click.Path(file_okay=False), help="Data root (else $CNNLAB_DATA, else ~/.cache/cnnlab).")
@click.option("--val-size", type=click.IntRange(min=0), default=None, help="Validation hold-out size.  [default: the dataset's]")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the hold-out, the folds and the samples.")
@click.option("--folds", type=click.IntRange(min=2), default=None, help="Show the sizes of k-fold cross-validation splits of trainval.")
@click.option("--grid", "grid_png", type=click.Path(dir_okay=False), default=None,
              help="PNG of sample images, one row per class.  [default: <dataset>-samples.png]")
@click.option("--no-grid", is_flag=True, help="Do not write the sample grid.")
@click.option("--per-class", type=click.IntRange(min=1), default=8, show_default=True, help="Sample images per class in the grid.")
def data_command(dataset, data_root, val_size, seed, folds, grid_png, no_grid, per_class) -> None:
    """Describe DATASET: classes, image size, channel mean/std, split sizes, a grid of samples.

    DATASET is a registered name (mnist, fashion-mnist, cifar10, cifar100, cifar10-jpeg) or
    folder:/path/to/root for any image folder laid out as root/train/<class>/*.jpg.
    """
    import re

    import torch

    from cnnlab.data import get_dataset_spec, kfold_indices, load_dataset

    spec = get_dataset_spec(dataset)
    train = load_dataset(dataset, "train", data_root, val_size=val_size, seed=seed)
    val = load_dataset(dataset, "val", data_root, val_size=val_size, seed=seed)
    test = load_dataset(dataset, "test", data_root)
    c, h, w = train.image_size
    click.echo(f"{dataset}: {spec.description}")
    click.echo(f"  source       {train.source}" + (f"  |  {test.source}" if test.source != train.source else ""))
    click.echo(f"  images       {c}x{h}x{w} (channels x height x width), uint8")
    click.echo(f"  classes      {train.num_classes}: {', '.join(train.classes[:20])}{' ...' if train.num_classes > 20 else ''}")
    click.echo(f"  mean         {', '.join(f'{m:.4f}' for m in train.mean)}  (per channel, [0, 1], training split)")
    click.echo(f"  std          {', '.join(f'{v:.4f}' for v in train.std)}")
    click.echo(f"  splits       train {len(train):,} / val {len(val):,} (seed {seed}) / test {len(test):,}"
               f"  (trainval {len(train) + len(val):,})")
    counts = [torch.bincount(d.labels, minlength=train.num_classes) for d in (train, val, test)]
    rows = [[name, *(f"{int(k[i]):,}" for k in counts)] for i, name in enumerate(train.classes)]
    if train.num_classes <= 20:
        _print_rows(["class", "train", "val", "test"], rows, "table", title="images per class")
    if folds:
        trainval = len(train) + len(val)
        sizes = [(len(tr), len(va)) for tr, va in kfold_indices(trainval, folds, seed=seed)]
        _print_rows(["fold", "train", "validation"], [[str(i + 1), f"{a:,}", f"{b:,}"] for i, (a, b) in enumerate(sizes)],
                    "table", title=f"{folds}-fold cross-validation of trainval")
        click.echo(f"  (in Python: cnnlab.data.kfold_indices({trainval}, {folds}, seed={seed}) gives the index pairs)")
    if not no_grid:
        from cnnlab.viz.curves import save_figure
        from cnnlab.viz.samples import plot_sample_grid

        out = grid_png or re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset).strip("_") + "-samples.png"
        fig = plot_sample_grid(train.images, train.labels, train.classes, per_class=per_class, seed=seed,
                               title=f"{dataset}: {per_class} random training images per class")
        save_figure(fig, out)
        click.echo(f"sample grid: {out}")



# --- scratch: NumPy backpropagation --------------------------------------------------------


@cli.command("scratch-train")
@click.option("--model", "model_name", type=click.Choice(["mlp", "lenet5"]), default="mlp", show_default=True)
@click.option("--data", "dataset", default="mnist", show_default=True, help="a 10-class 1x28x28 dataset")
@click.option("--epochs", type=int, default=None, help="default: the model's recipe")
@click.option("--batch-size", type=int, default=None, help="images per step; default: the model's recipe")
@click.option("--lr", type=float, default=None, help="learning rate; default: the model's recipe")
@click.option("--momentum", type=float, default=None, help="default: the model's recipe")
@click.option("--weight-decay", type=float, default=None, help="L2 coefficient alpha; default: the model's recipe")
@click.option("--seed", type=int, default=0, show_default=True, help="initialisation and batch order")
@click.option("--data-root", type=click.Path(file_okay=False), default=None, help="default: $CNNLAB_DATA or ~/.cache/cnnlab")
def scratch_train(model_name, dataset, epochs, batch_size, lr, momentum, weight_decay, seed, data_root) -> None:
    """Train the NumPy backpropagation engine (cnnlab.scratch) on the full training set; test on the test set."""
    import numpy as np

    from cnnlab.data import load_dataset
    from cnnlab.scratch import MODELS
    from cnnlab.scratch.fit import RECIPES, fit, limit_blas_threads, standardise
    from cnnlab.train.progress import TrainProgress

    recipe = RECIPES[model_name]
    train, test = load_dataset(dataset, "trainval", data_root), load_dataset(dataset, "test", data_root)
    if tuple(train.images.shape[1:]) != (1, 28, 28):
        raise click.BadParameter(f"the scratch models take 1x28x28 images; {dataset} has {tuple(train.images.shape[1:])}")
    x_train, x_test = standardise(train.images.numpy(), test.images.numpy())
    model = MODELS[model_name](num_classes=len(train.classes), seed=seed).astype(np.float32)
    limit_blas_threads(1)  # see its docstring: many small products, faster on one thread
    epochs = recipe.epochs if epochs is None else epochs
    with TrainProgress(epochs) as progress:
        progress.log(f"scratch {model_name}: {model.num_params():,} parameters, {len(x_train):,} training images")
        fit(
            model,
            (x_train, train.labels.numpy()),
            (x_test, test.labels.numpy()),
            epochs=epochs,
            batch_size=recipe.batch_size if batch_size is None else batch_size,
            lr=recipe.lr if lr is None else lr,
            momentum=recipe.momentum if momentum is None else momentum,
            weight_decay=recipe.weight_decay if weight_decay is None else weight_decay,
            seed=seed,
            progress=progress,
        )


# --- viz and experiments --------------------------------------------------------------------
@cli.group("viz")
def viz_command() -> None:
    """Figures that look inside networks; each writes a PNG (under the run folder, or --out)."""


def _save_viz(fig, out: str | None, default: Path) -> None:
    from cnnlab.viz.curves import save_figure

    path = save_figure(fig, Path(out) if out else default)
    click.echo(f"wrote {path}")


def _parse_ints(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers such as 0,1,2, got {text!r}", param_hint=what) from None


def _safe_name(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


_OUT = click.option("--out", type=click.Path(dir_okay=False), default=None, help="PNG to write.  [default: see above]")
_WEIGHTS = click.option("--weights", default="best", show_default=True, type=click.Choice(["best", "last"]))


@viz_command.command("filters")
@click.argument("run", type=click.Path())
@click.option("--max", "max_kernels", type=click.IntRange(min=1), default=96, show_default=True, help="Kernels to draw at most.")
@_WEIGHTS
@_OUT
def viz_filters(run, max_kernels, weights, out) -> None:
    """First convolution layer's kernels as images.

    Colour for RGB inputs, grayscale otherwise, each kernel scaled to its own range (RUN/filters.png)."""
    from cnnlab.train.run import load_run
    from cnnlab.viz.activations import first_conv
    from cnnlab.viz.filters import plot_filters

    loaded = load_run(run, weights=weights)
    name, conv = first_conv(loaded.model)
    fig = plot_filters(conv.weight, layer=name, max_kernels=max_kernels,
                       title=f"{loaded.config.model} on {loaded.config.data} ({loaded.path.name})")
    _save_viz(fig, out, loaded.path / "filters.png")


@viz_command.command("patches")
@click.argument("run", type=click.Path())
@click.option("--layer", "-l", required=True, help="Layer name as in `cnnlab summary MODEL` (e.g. features.c3, layer2.0).")
@click.option("--channels", "-c", default=None, help="Comma-separated channels.  [default: the first 8]")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "trainval", "test"]))
@click.option("--limit", type=click.IntRange(min=1), default=10000, show_default=True,
              help="Search N images of the split (a seeded random sample when the split is larger).")
@click.option("--top", "k", type=click.IntRange(min=1, max=25), default=9, show_default=True, help="Patches per channel.")
@click.option("--data-root", type=click.Path(file_okay=False), default=None)
@_WEIGHTS
@_OUT
def viz_patches(run, layer, channels, split, limit, k, data_root, weights, out) -> None:
    """Top-9 dataset patches per channel (Zeiler & Fergus).

    For each chosen channel of LAYER, the nine dataset images that excite it most (maximum over
    positions), each cropped to the winning unit's receptive field (RUN/patches-LAYER.png)."""
    from cnnlab.data import load_dataset
    from cnnlab.train.run import load_run
    from cnnlab.viz.patches import plot_top_patches, top_patches

    loaded = load_run(run, weights=weights)
    chosen = _parse_ints(channels, "--channels")
    dataset = load_dataset(loaded.config.data, split, data_root or loaded.config.data_root)
    if limit < len(dataset):  # a seeded random sample: image folders are sorted by class
        import torch

        dataset = dataset.subset(torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:limit].sort().values)
    images, labels = dataset.images, dataset.labels
    try:
        field, patches = top_patches(loaded.model, layer, images, labels, loaded.data_info, channels=chosen, k=k)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    seen = [s + 2 * int(loaded.data_info.get("pad", 0)) for s in images.shape[-2:]]
    if any(f > s for f, s in zip(field.size, seen)):
        click.echo(f"note: {layer}'s receptive field ({field.describe()}) is larger than the {seen[0]}x{seen[1]} input, "
                   "so each patch holds the whole image, placed where the unit looks")
    fig = plot_top_patches(patches, field, layer=layer, classes=loaded.data_info["classes"],
                           title=f"{loaded.config.model} on {loaded.config.data}, {len(images):,} {split} images")
    _save_viz(fig, out, loaded.path / f"patches-{_safe_name(layer)}.png")


@viz_command.command("activations")
@click.argument("run", type=click.Path())
@click.argument("image")
@click.option("--layer", "-l", required=True, help="Layer name as in `cnnlab summary MODEL` (e.g. features.c1).")
@click.option("--channels", "-c", default=None, help="Comma-separated channels.  [default: the first 64]")
@click.option("--invert", type=click.Choice(["auto", "yes", "no"]), default="auto", show_default=True,
              help="Invert a grayscale image file (as in `cnnlab predict`).")
@click.option("--data-root", type=click.Path(file_okay=False), default=None)
@_WEIGHTS
@_OUT
def viz_activations(run, image, layer, channels, invert, data_root, weights, out) -> None:
    """Feature maps of one layer for one image.

    IMAGE is an image file, or SPLIT:INDEX of the run's dataset such as test:0
    (RUN/activations-LAYER-IMAGE.png)."""
    import re

    from cnnlab.data import load_dataset
    from cnnlab.predict import image_to_tensor
    from cnnlab.train.run import load_run
    from cnnlab.viz.activations import find_layer, layer_output, model_input, padded_image, plot_activations

    loaded = load_run(run, weights=weights)
    info = loaded.data_info
    size = tuple(info["image_size"])
    pick = re.fullmatch(r"(train|val|trainval|test):(\d+)", image)
    if pick and not Path(image).exists():
        dataset = load_dataset(loaded.config.data, pick[1], data_root or loaded.config.data_root)
        index = int(pick[2])
        if index >= len(dataset):
            raise click.BadParameter(f"{image}: the {pick[1]} split has {len(dataset):,} images", param_hint="IMAGE")
        pixels, what = dataset.images[index], f"{pick[1]} image {index} (class {info['classes'][int(dataset.labels[index])]})"
    else:
        dark = size[0] == 1 and info["mean"][0] < 0.5
        pixels, what = image_to_tensor(Path(image), size, invert=invert, dark_background=dark), Path(image).name
    module = find_layer(loaded.model, layer)
    device = next(loaded.model.parameters()).device
    maps = layer_output(loaded.model, module, model_input(pixels[None], info).to(device))[0].float().cpu()
    try:
        fig = plot_activations(padded_image(pixels, int(info.get("pad", 0))), maps, layer=layer,
                               channels=_parse_ints(channels, "--channels"),
                               title=f"{loaded.config.model} on {loaded.config.data}: {what}")
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    stem = _safe_name(image if pick else Path(image).stem)
    _save_viz(fig, out, loaded.path / f"activations-{_safe_name(layer)}-{stem}.png")


@viz_command.command("curves")
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@_OUT
def viz_curves(runs, out) -> None:
    """Loss, error and learning rate per epoch.

    Several runs are overlaid (RUN/curves.png for one run, curves.png here for several)."""
    from cnnlab.train.run import read_history
    from cnnlab.viz.curves import plot_curves

    histories = []
    for run in runs:
        metrics = Path(run) / "metrics.csv"
        if not metrics.is_file():
            raise CnnlabError(f"{run} has no metrics.csv (is it a run folder from `cnnlab train`?)")
        histories.append((Path(run).name, read_history(metrics)))
    title = histories[0][0] if len(runs) == 1 else f"{len(runs)} runs"
    _save_viz(plot_curves(histories, title=title), out, Path(runs[0]) / "curves.png" if len(runs) == 1 else Path("curves.png"))


@viz_command.command("confusion")
@click.argument("run", type=click.Path())
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "trainval", "test"]))
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda", "mps"]))
@_OUT
def viz_confusion(run, split, device, out) -> None:
    """Confusion matrix heat map of a run.

    Evaluates RUN on a split of its dataset (RUN/confusion-SPLIT.png)."""
    from cnnlab.api import evaluate
    from cnnlab.train.run import load_run
    from cnnlab.viz.confusion import plot_confusion

    loaded = load_run(run)
    result = evaluate(loaded, split=split, device=device)
    fig = plot_confusion(result.confusion, loaded.data_info["classes"], title=f"{loaded.path.name}, {split} split")
    _save_viz(fig, out, loaded.path / f"confusion-{split}.png")


@viz_command.command("kernels")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--kernel", "-k", "kernels", multiple=True,
              help='Extra kernel, rows separated by ";": -k "1,0,-1;2,0,-2;1,0,-1" (repeatable).')
@click.option("--no-defaults", is_flag=True, help="Skip the 5x5 blur and the edge detector.")
@_OUT
def viz_kernels(image, kernels, no_defaults, out) -> None:
    """Hand-designed kernels applied to an image.

    The 5x5 blur of 0.04s, the edge detector [[0,-1/4,0],[-1/4,1,-1/4],[0,-1/4,0]] and any
    --kernel, each output with a colour bar (IMAGE-kernels.png here)."""
    from cnnlab.viz.kernels import DEFAULT_KERNELS, load_gray, parse_kernel, plot_kernels

    chosen = [] if no_defaults else list(DEFAULT_KERNELS)
    for i, text in enumerate(kernels, start=1):
        try:
            chosen.append((f"kernel {i}" if len(kernels) > 1 else "your kernel", parse_kernel(text)))
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--kernel") from None
    if not chosen:
        raise click.UsageError("no kernels: give --kernel or drop --no-defaults")
    fig = plot_kernels(load_gray(image), chosen, title=f"Hand-designed kernels on {Path(image).name}")
    _save_viz(fig, out, Path(f"{_safe_name(Path(image).stem)}-kernels.png"))


@viz_command.command("neuron")
@click.option("--w1", type=float, default=1.0, show_default=True, help="Weight of input z1.")
@click.option("--w2", type=float, default=2.0, show_default=True, help="Weight of input z2.")
@click.option("--bias", "-b", type=float, default=0.0, show_default=True)
@click.option("--extent", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
              help="Plot z1 and z2 over [-extent, extent].")
@_OUT
def viz_neuron(w1, w2, bias, extent, out) -> None:
    """A sigmoid neuron's output as surface and contours.

    x(z1, z2) = 1 / (1 + exp(-w1 z1 - w2 z2 - b)) (neuron.png here)."""
    from cnnlab.viz.neuron import plot_neuron

    _save_viz(plot_neuron(w1, w2, bias=bias, extent=extent), out, Path("neuron.png"))


@viz_command.command("boundary")
@click.option("--dataset", "name", type=click.Choice(["xor", "moons", "circles", "blobs"]), default="xor", show_default=True)
@click.option("--hidden", default="0,8,32x32", show_default=True,
              help="Classifiers to compare, comma-separated; each its hidden widths joined by 'x' (0: perceptron).")
@click.option("--points", type=click.IntRange(min=4), default=400, show_default=True)
@click.option("--noise", type=click.FloatRange(min=0), default=0.15, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=1500, show_default=True, help="Full-batch Adam steps per classifier.")
@click.option("--seed", type=int, default=0, show_default=True)
@_OUT
def viz_boundary(name, hidden, points, noise, steps, seed, out) -> None:
    """Perceptron vs MLP decision regions on 2-D toy data.

    Trains each classifier for a second or so, then colours the plane by its predicted class
    (boundary-DATASET.png here)."""
    from cnnlab.data.toy import make_toy
    from cnnlab.viz.neuron import describe_hidden, fit_toy_classifier, plot_decision_regions

    try:
        layouts = [tuple(int(w) for w in item.split("x") if int(w) > 0) for item in hidden.replace(" ", "").split(",") if item]
    except ValueError:
        raise click.BadParameter(f"expected e.g. 0,8,32x32 (0: no hidden layer), got {hidden!r}", param_hint="--hidden") from None
    if not layouts:
        raise click.BadParameter("give at least one classifier, e.g. 0,8", param_hint="--hidden")
    x, y = make_toy(name, points, noise=noise, seed=seed)
    classifiers = [(describe_hidden(h), fit_toy_classifier(x, y, h, steps=steps, seed=seed)) for h in layouts]
    fig = plot_decision_regions(classifiers, x, y, title=f"{name}: {points} points; decision regions after {steps} Adam steps")
    _save_viz(fig, out, Path(f"boundary-{name}.png"))


@cli.command("experiment")
@click.argument("name", required=False)
@click.option("--quick", is_flag=True, help="The ~1-2 minute variant (fewer images, epochs and seeds).")
@click.option("--out", default="results", show_default=True, type=click.Path(file_okay=False), help="Writes OUT/NAME/.")
@click.option("--seeds", type=click.IntRange(min=1), help="Seeds (independent runs) per setting; default depends on the experiment and mode.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True)
@click.option("--data-root", type=click.Path(file_okay=False), help="Data root (else $CNNLAB_DATA, else ~/.cache/cnnlab).")
@click.option("--threads", type=click.IntRange(min=1), help="torch CPU threads (1 is fastest on a busy shared machine).")
def experiment_command(name, quick, out, seeds, device, data_root, threads) -> None:
    """Run the lecture experiment NAME and write OUT/NAME/{report.md,metrics.json,*.png}.

    Without NAME, list the experiments and their claims."""
    import json

    import torch

    from cnnlab.experiments import EXPERIMENTS, Settings, run_experiment

    if not name:
        table = Table("experiment", "claim", box=None, show_header=True)
        for key in sorted(EXPERIMENTS):
            table.add_row(key, EXPERIMENTS[key].claim)
        _console().print(table)
        return
    if threads:
        torch.set_num_threads(threads)
    folder = run_experiment(name, Settings(quick=quick, seeds=seeds, device=device, data_root=data_root), out=out)
    verdicts = json.loads((folder / "metrics.json").read_text())["verdicts"]
    for v in verdicts:
        click.echo(f"{'HELD' if v['held'] else 'DID NOT HOLD'}: {v['claim']} ({v['measured']})")
    click.echo(f"wrote {folder}/report.md")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, printing cnnlab errors as one line."""
    try:
        cli.main(args=argv, prog_name="cnnlab", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except CnnlabError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
