"""`cnnlab viz ...`: wiring over cnnlab.viz."""

from __future__ import annotations

from pathlib import Path

import click

from cnnlab.cli.common import cli, device_option, invert_option, split_option, weights_option
from cnnlab.data.files import safe_name
from cnnlab.data.toy import TOY_DATASETS


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


_OUT = click.option("--out", type=click.Path(dir_okay=False), default=None, help="PNG to write.  [default: see above]")
_WEIGHTS = weights_option()
_DATA_ROOT = click.option("--data-root", type=click.Path(file_okay=False), default=None,
                          help="Data root (else the run's, else $CNNLAB_DATA, else ~/.cache/cnnlab).")


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
    _save_viz(fig, out, loaded.path / "filters.png")


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
    _save_viz(fig, out, loaded.path / f"patches-{safe_name(layer)}.png")


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
    _save_viz(fig, out, loaded.path / f"activations-{safe_name(layer)}-{safe_name(picked.stem)}.png")


@viz_command.command("curves")
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@_OUT
def viz_curves(runs, out) -> None:
    """Loss, error and learning rate per epoch.

    Several runs are overlaid (RUN/curves.png for one run, curves.png here for several)."""
    from cnnlab.viz.curves import plot_curves, run_histories

    histories = run_histories(runs)
    title = histories[0][0] if len(runs) == 1 else f"{len(runs)} runs"
    _save_viz(plot_curves(histories, title=title), out, Path(runs[0]) / "curves.png" if len(runs) == 1 else Path("curves.png"))


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
    from cnnlab.viz.kernels import chosen_kernels, load_gray, plot_kernels

    try:
        chosen = chosen_kernels(kernels, defaults=not no_defaults)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--kernel") from None
    fig = plot_kernels(load_gray(image), chosen, title=f"Hand-designed kernels on {Path(image).name}")
    _save_viz(fig, out, Path(f"{safe_name(Path(image).stem)}-kernels.png"))


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
@click.option("--dataset", "name", type=click.Choice(TOY_DATASETS), default="xor", show_default=True)
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
    from cnnlab.training.toy import fit_toy_classifier, parse_hidden_layouts
    from cnnlab.viz.neuron import describe_hidden, plot_decision_regions

    try:
        layouts = parse_hidden_layouts(hidden)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--hidden") from None
    x, y = make_toy(name, points, noise=noise, seed=seed)
    classifiers = [(describe_hidden(h), fit_toy_classifier(x, y, h, steps=steps, seed=seed)) for h in layouts]
    fig = plot_decision_regions(classifiers, x, y, title=f"{name}: {points} points; decision regions after {steps} Adam steps")
    _save_viz(fig, out, Path(f"boundary-{name}.png"))
