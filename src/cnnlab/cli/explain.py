"""`cnnlab viz gradcam|saliency|occlusion|integrated-gradients|maximize`: why a network
decided and what a unit wants to see.

Wiring over cnnlab.analysis.attribution / feature_vis and their figures in cnnlab.viz.
"""

from __future__ import annotations

import sys

import click

from cnnlab.cli.common import data_root_option, invert_option, out_option, save_figure, split_option, weights_option
from cnnlab.cli.viz import viz_command
from cnnlab.data.files import safe_name

_OUT = out_option()
_DATA_ROOT = data_root_option()
_CLASS = click.option("--class", "cls", default=None, help="Class to explain, by index or name.  [default: the top class]")
_TOP = click.option("--top", type=click.IntRange(min=1, max=20), default=5, show_default=True, help="Classes listed.")


def _class_index(cls: str | None, classes: list[str]) -> int | None:
    if cls is None:
        return None
    if cls in classes:
        return classes.index(cls)
    if cls.lstrip("-").isdigit() and 0 <= int(cls) < len(classes):
        return int(cls)
    raise click.BadParameter(f"{cls!r} is neither a class name nor an index 0..{len(classes) - 1} "
                             f"(classes: {', '.join(classes[:12])}{', ...' if len(classes) > 12 else ''})", param_hint="--class")


def _explain(method: str, run: str, image: str, *, cls, top, invert, data_root, weights, out, **params) -> None:
    """Shared by the four attribution commands: load, preprocess as the run did, attribute, print, draw."""
    from cnnlab.analysis.attribution import attribute
    from cnnlab.training.run import load_run
    from cnnlab.viz.activations import input_image, model_input, padded_image
    from cnnlab.viz.attribution import plot_attribution

    loaded = load_run(run, weights=weights)
    info = loaded.data_info
    classes = list(info["classes"])
    picked = input_image(image, data=loaded.config.data, data_root=data_root or loaded.config.data_root, data_info=info,
                         invert=invert)
    x = model_input(picked.pixels[None], info)
    bar = None
    if method == "occlusion":
        bar = click.progressbar(length=1, label="occluding", file=sys.stderr)

        def progress(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - bar.pos)
        params["progress"] = progress
    result = attribute(loaded.model, x, method, target=_class_index(cls, classes), **params)
    if bar is not None:
        bar.render_finish()
    values, indices = result.probabilities.topk(min(top, len(classes)))
    click.echo(f"{loaded.config.model} on {loaded.config.data}: {picked.description}")
    click.echo("top classes:")
    for rank, (v, i) in enumerate(zip(values.tolist(), indices.tolist()), start=1):
        click.echo(f"  {rank}. {classes[i]}  {v:.4f}")
    click.echo(f"explained: {classes[result.target]} (p = {float(result.probabilities[result.target]):.4f}), {result.describe()}")
    fig = plot_attribution(padded_image(picked.pixels, int(info.get("pad", 0))), result, classes=classes, top=top,
                           title=f"{loaded.config.model} on {loaded.config.data} ({loaded.path.name}): {picked.description}")
    save_figure(fig, out, loaded.path / f"{method}-{safe_name(picked.stem)}.png")


def _attribution_command(name: str, summary: str, extra: list | None = None):
    def wrap(fn):
        for option in reversed([_CLASS, _TOP, invert_option(help="Invert a grayscale image file (as in `cnnlab predict`)."),
                                _DATA_ROOT, weights_option(), _OUT] + (extra or [])):
            fn = option(fn)
        fn = click.argument("run", type=click.Path())(click.argument("image")(fn))
        fn.__doc__ = summary
        return viz_command.command(name)(fn)

    return wrap


@_attribution_command("gradcam", """Grad-CAM heat map of one image (Selvaraju et al. 2017).

    IMAGE is an image file or SPLIT:INDEX (test:0). The default layer is the last spatial layer
    the class score depends on (ViT: the last block's tokens on the patch grid). Writes
    RUN/gradcam-IMAGE.png.""",
    [click.option("--layer", "-l", default=None, help="Layer name as in `cnnlab summary MODEL`.  [default: chosen]")])
def viz_gradcam(run, image, cls, top, invert, data_root, weights, out, layer) -> None:
    _explain("gradcam", run, image, cls=cls, top=top, invert=invert, data_root=data_root, weights=weights, out=out, layer=layer)


@_attribution_command("saliency", """Saliency map: |d class score / d pixel| (Simonyan et al. 2014).

    IMAGE is an image file or SPLIT:INDEX (test:0). Writes RUN/saliency-IMAGE.png.""")
def viz_saliency(run, image, cls, top, invert, data_root, weights, out) -> None:
    _explain("saliency", run, image, cls=cls, top=top, invert=invert, data_root=data_root, weights=weights, out=out)


@_attribution_command("occlusion", """Occlusion sensitivity (Zeiler & Fergus 2014, Fig. 7).

    A grey square (the training mean colour) slides over the image; each pixel shows the drop
    in the class probability when covered. IMAGE is an image file or SPLIT:INDEX. Writes
    RUN/occlusion-IMAGE.png.""",
    [click.option("--window", type=click.IntRange(min=1), default=None, help="Square side in pixels.  [default: a seventh of the image]"),
     click.option("--stride", type=click.IntRange(min=1), default=None, help="Pixels between squares.  [default: half the window]")])
def viz_occlusion(run, image, cls, top, invert, data_root, weights, out, window, stride) -> None:
    _explain("occlusion", run, image, cls=cls, top=top, invert=invert, data_root=data_root, weights=weights, out=out,
             window=window, stride=stride)


@_attribution_command("integrated-gradients", """Integrated gradients from the mean image (Sundararajan et al. 2017).

    Signed: red pixels raise the class score, blue lower it; the map sums to score(image) -
    score(baseline). IMAGE is an image file or SPLIT:INDEX. Writes RUN/integrated-gradients-IMAGE.png.""",
    [click.option("--steps", type=click.IntRange(min=1), default=32, show_default=True, help="Points on the path.")])
def viz_integrated_gradients(run, image, cls, top, invert, data_root, weights, out, steps) -> None:
    _explain("integrated-gradients", run, image, cls=cls, top=top, invert=invert, data_root=data_root, weights=weights,
             out=out, steps=steps)


@viz_command.command("maximize")
@click.argument("run", type=click.Path())
@click.option("--layer", "-l", required=True, help="Layer name as in `cnnlab summary MODEL` (e.g. features.c3).")
@click.option("--channel", "-c", "channel", default=None, help="Channel, or comma-separated channels.  [default: the first 8]")
@click.option("--steps", type=click.IntRange(min=1), default=256, show_default=True, help="Adam steps on the image.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.05, show_default=True)
@click.option("--jitter", type=click.FloatRange(min=0, max=0.5), default=0.06, show_default=True,
              help="Random translation per step, as a fraction of the side.")
@click.option("--rotate", type=click.FloatRange(min=0), default=5.0, show_default=True, help="Random rotation, +- degrees.")
@click.option("--scale", type=click.FloatRange(min=0, max=0.5), default=0.05, show_default=True, help="Random scale, +- fraction.")
@click.option("--fourier/--pixels", default=True, show_default=True, help="Decorrelated 1/f Fourier parametrisation, or raw pixels.")
@click.option("--tv", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Total-variation penalty weight.")
@click.option("--patches/--no-patches", default=True, show_default=True, help="Draw the top-9 dataset patches beside each image.")
@split_option()
@click.option("--limit", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Images searched for patches (and for the colour statistics).")
@click.option("--seed", type=int, default=0, show_default=True)
@_DATA_ROOT
@weights_option()
@_OUT
def viz_maximize(run, layer, channel, steps, lr, jitter, rotate, scale, fourier, tv, patches, split, limit, seed,
                 data_root, weights, out) -> None:
    """Activation maximisation (Erhan et al. 2009) with Olah et al. 2017's regularisers.

    For each channel of LAYER, the image that maximises its mean activation (jitter, rotation,
    scale, 1/f Fourier and decorrelated colour), beside the top-9 dataset patches of the same
    unit (RUN/maximize-LAYER.png)."""
    from cnnlab.analysis.feature_vis import (
        Regularisers,
        channel_activation,
        colour_basis,
        maximize,
    )
    from cnnlab.data import load_dataset, random_subset
    from cnnlab.training.run import load_run
    from cnnlab.viz.activations import model_input
    from cnnlab.viz.feature_vis import plot_maximized
    from cnnlab.viz.patches import top_patches

    loaded = load_run(run, weights=weights)
    info = loaded.data_info
    try:
        chosen = [int(v) for v in channel.replace(" ", "").split(",") if v] if channel else None
    except ValueError:
        raise click.BadParameter(f"expected a channel or comma-separated channels such as 0,1,2, got {channel!r}",
                                 param_hint="--channel") from None
    size = tuple(info["image_size"])
    dataset = None
    if patches or size[0] == 3:
        dataset = load_dataset(loaded.config.data, split, data_root or loaded.config.data_root)
        if limit < len(dataset):
            dataset = random_subset(dataset, limit, seed=0)
    found = None
    if patches:
        try:
            _, found = top_patches(loaded.model, layer, dataset.images, dataset.labels, info, channels=chosen)
        except ValueError as e:
            raise click.UsageError(str(e)) from None
        chosen = list(found)
    chosen = chosen if chosen is not None else list(range(8))
    reg = Regularisers(jitter=jitter, rotate=rotate, scale=scale, fourier=fourier, tv=tv)
    colour = colour_basis(dataset.images) if size[0] == 3 else None
    bar = click.progressbar(length=steps, label="maximising", file=sys.stderr)
    images = maximize(loaded.model, layer, chosen, image_size=size, mean=info["mean"], std=info["std"],
                      pad=int(info.get("pad", 0)), steps=steps, lr=lr, regularisers=reg, colour=colour, seed=seed,
                      progress=lambda done, total: bar.update(1))
    bar.render_finish()
    reached = channel_activation(loaded.model, layer, model_input((images * 255).round().to("cpu").byte(), info), chosen)
    click.echo(f"{loaded.config.model} on {loaded.config.data}, {layer}: mean activation of each maximised image")
    for ch, a in zip(chosen, reached.tolist()):
        best = f" (best dataset image: {found[ch][0].activation:.4f} at its strongest unit)" if found else ""
        click.echo(f"  channel {ch}: {a:.4f}{best}")
    settings = f"{steps} Adam steps, lr {lr:g}; {reg.describe()}" + ("; decorrelated colour" if colour is not None else "")
    fig = plot_maximized(images, chosen, layer=layer, patches=found, activations=reached.tolist(), classes=info["classes"],
                         settings=settings, title=f"{loaded.config.model} on {loaded.config.data} ({loaded.path.name})")
    save_figure(fig, out, loaded.path / f"maximize-{safe_name(layer)}.png")
