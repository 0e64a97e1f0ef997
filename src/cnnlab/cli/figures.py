"""`cnnlab viz kernels|neuron|boundary|hog`: the lectures' figures that need no trained run.

Hand-designed kernels on an image, a single sigmoid neuron, perceptron vs MLP decision
regions, and the histogram of oriented gradients that learned features replaced. Wiring over
cnnlab.viz.kernels / neuron / hog, cnnlab.training.toy and cnnlab.analysis.hog.
"""

from __future__ import annotations

from pathlib import Path

import click

from cnnlab.cli.common import data_root_option, out_option, save_figure
from cnnlab.cli.viz import viz_command
from cnnlab.data.files import safe_name
from cnnlab.data.toy import TOY_DATASETS

_OUT = out_option()
_DATA_ROOT = data_root_option()


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
    save_figure(fig, out, Path(f"{safe_name(Path(image).stem)}-kernels.png"))


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

    save_figure(plot_neuron(w1, w2, bias=bias, extent=extent), out, Path("neuron.png"))


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
    save_figure(fig, out, Path(f"boundary-{name}.png"))


@viz_command.command("hog")
@click.argument("image")
@click.option("--data", default=None, help="Dataset to take IMAGE from when IMAGE is SPLIT:INDEX (e.g. mnist, with test:0).")
@click.option("--size", type=click.IntRange(min=8), default=None,
              help="Resize the shorter side to N and centre-crop N x N first.  [default: keep the image's size]")
@click.option("--cell", type=click.IntRange(min=2), default=8, show_default=True, help="Pixels per cell side.")
@click.option("--block", type=click.IntRange(min=1), default=2, show_default=True, help="Cells per block side.")
@click.option("--orientations", type=click.IntRange(min=2), default=9, show_default=True, help="Bins over 0-180 degrees.")
@click.option("--gray/--colour", default=False, show_default=True, help="Gradients of the luminance, or of the strongest colour channel.")
@_DATA_ROOT
@_OUT
def viz_hog(image, data, size, cell, block, orientations, gray, data_root, out) -> None:
    """An image next to its histogram of oriented gradients (Dalal & Triggs 2005).

    IMAGE is an image file, or SPLIT:INDEX with --data (IMAGE-hog.png here)."""
    import re

    from cnnlab.analysis.hog import HogParams, hog_dimension
    from cnnlab.data import SPLITS, load_dataset
    from cnnlab.data.image import decode_image, resize_and_crop, to_uint8_tensor
    from cnnlab.errors import CnnlabError
    from cnnlab.viz.hog import plot_hog

    pick = re.fullmatch(rf"({'|'.join(SPLITS)}):(\d+)", image)
    if pick and not Path(image).exists():
        if data is None:
            raise click.UsageError(f"{image} names a dataset image: give --data (e.g. --data mnist)")
        dataset = load_dataset(data, pick[1], data_root)
        index = int(pick[2])
        if index >= len(dataset):
            raise CnnlabError(f"{image}: the {pick[1]} split of {data} has {len(dataset):,} images")
        pixels, stem, what = dataset.images[index], f"{data}-{pick[1]}-{index}", f"{data} {pick[1]} image {index}"
        if size:
            from PIL import Image

            pixels = to_uint8_tensor(resize_and_crop(Image.fromarray(pixels.permute(1, 2, 0).squeeze(-1).numpy()), (size, size)))
    else:
        img = decode_image(Path(image), 3)
        if size:
            img = resize_and_crop(img, (size, size))
        pixels, stem, what = to_uint8_tensor(img), Path(image).stem, Path(image).name
    if gray and pixels.shape[0] == 3:
        pixels = (0.299 * pixels[0] + 0.587 * pixels[1] + 0.114 * pixels[2]).round().byte()[None]
    params = HogParams(orientations=orientations, cell=cell, block=block)
    dim = hog_dimension(tuple(pixels.shape[-2:]), params)
    click.echo(f"{what}: {pixels.shape[-1]}x{pixels.shape[-2]}, {params.describe()}: {dim:,} features")
    save_figure(plot_hog(pixels, params, title=what), out, Path(f"{safe_name(stem)}-hog.png"))
