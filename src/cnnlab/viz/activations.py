"""Feature maps: what one layer of a trained network outputs for one image.

``layer_output`` runs the model with a forward hook on the named layer (``features.c1``,
``layer2.0.conv1``: the names of ``model.named_modules()``) and returns that layer's output;
``plot_activations`` draws the input next to a grid of the output's channels, all on one
colour scale so that channels can be compared.

Also the helpers the other model figures share: finding a layer by name with a helpful
error, reading the image to look at (a file or ``test:0``), and turning dataset images
(uint8) into the model's input the way training did (padding, then the training split's
mean/std, through the data package's one image policy).
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import nn  # noqa: E402

from cnnlab.data import SPLITS, load_dataset  # noqa: E402
from cnnlab.data.image import dark_background, load_image, to_model_input  # noqa: E402
from cnnlab.errors import DataError, UnknownNameError  # noqa: E402
from cnnlab.models import main_output, model_label  # noqa: E402

SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)  # layers suggested when a name is wrong


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name``; an unknown name lists close matches or the conv layers."""
    modules = dict(model.named_modules())
    if name and name in modules:
        return modules[name]
    close = difflib.get_close_matches(name, [n for n in modules if n], n=4, cutoff=0.5)
    if not close:
        close = [n for n, m in modules.items() if isinstance(m, SPATIAL)][:12]
    raise UnknownNameError(f"no layer {name!r} in {model_label(model)}; "
                           f"try {', '.join(close)}")


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """(name, module) of the first 2-D convolution in registration order (the one that sees pixels)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise UnknownNameError(f"{model_label(model)} has no nn.Conv2d layer")


@torch.no_grad()
def layer_output(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The output of ``layer`` when ``model`` runs on the batch ``x`` (model in eval mode)."""
    captured: list[torch.Tensor] = []

    def hook(module, inputs, output):
        captured.append(main_output(output))

    handle = layer.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        handle.remove()
        model.train(was_training)
    if not captured:
        raise ValueError(f"layer {type(layer).__name__} did not run in the forward pass")
    return captured[0]


def feature_maps(model: nn.Module, layer: str, image: torch.Tensor, data_info: dict) -> torch.Tensor:
    """The (K, h, w) output of the layer called ``layer`` for one uint8 (C, H, W) dataset-form
    image, fed as the run's model saw its training images; float, on the CPU."""
    module = find_layer(model, layer)
    device = next(model.parameters()).device
    return layer_output(model, module, model_input(image[None], data_info).to(device))[0].float().cpu()


def model_input(images: torch.Tensor, data_info: dict) -> torch.Tensor:
    """uint8 (B, C, H, W) images -> the normalised float batch the run's model was trained on
    (the run's zero padding, then its training split's mean and std)."""
    return to_model_input(images, mean=data_info["mean"], std=data_info["std"], pad=int(data_info.get("pad", 0)))


@dataclass(frozen=True)
class InputImage:
    """The one image a figure looks at, as the run's dataset holds its images."""

    pixels: torch.Tensor  # uint8 (C, H, W) at the run's image size
    description: str  # "test image 0 (class 7)", or the file's name
    stem: str  # for output file names: "test:0" or the file's stem


def input_image(image: str, *, data: str, data_root: str | None, data_info: dict, invert: str = "auto") -> InputImage:
    """``image`` is an image file, or ``SPLIT:INDEX`` of the dataset ``data`` (``test:0``).

    A file goes through the data package's image policy at the run's image size (grayscale
    files inverted for light-on-dark datasets such as MNIST, as ``invert`` says)."""
    pick = re.fullmatch(rf"({'|'.join(SPLITS)}):(\d+)", image)
    if pick and not Path(image).exists():
        dataset = load_dataset(data, pick[1], data_root)
        index = int(pick[2])
        if index >= len(dataset):
            raise DataError(f"{image}: the {pick[1]} split of {data} has {len(dataset):,} images (0..{len(dataset) - 1:,})")
        label = data_info["classes"][int(dataset.labels[index])]
        return InputImage(dataset.images[index], f"{pick[1]} image {index} (class {label})", image)
    pixels = load_image(Path(image), tuple(data_info["image_size"]), invert=invert,
                        dark_background=dark_background(data_info["mean"]))
    return InputImage(pixels, Path(image).name, Path(image).stem)


def show_image(ax, image: torch.Tensor) -> None:
    """Draw a (C, H, W) image, uint8 or float in [0, 1], in colour or grayscale, no ticks."""
    img = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
    img = img.clamp(0, 1)
    if img.shape[0] == 3:
        ax.imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")
    else:
        ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_activations(
    image: torch.Tensor,
    maps: torch.Tensor,
    *,
    layer: str,
    channels: Sequence[int] | None = None,
    max_channels: int = 64,
    title: str | None = None,
) -> Figure:
    """The input ``image`` (C, H, W) on the left, then the layer's feature maps ``maps``
    (K, h, w) as a grid, one shared colour scale (diverging around 0 when maps have both
    signs, e.g. after tanh) and one colour bar. Shows ``channels`` or the first
    ``max_channels``."""
    if maps.ndim != 3:
        raise ValueError(f"feature maps must be (channels, height, width), got shape {tuple(maps.shape)}; "
                         "choose a convolution or pooling layer")
    k = maps.shape[0]
    chosen = list(range(min(k, max_channels))) if channels is None else list(channels)
    bad = [c for c in chosen if not 0 <= c < k]
    if bad:
        raise ValueError(f"channels {bad} out of range: layer {layer} has {k} channels (0..{k - 1})")
    values = maps[chosen].float().numpy()
    lo, hi = float(values.min()), float(values.max())
    if lo < 0 < hi:
        limit = max(-lo, hi)
        cmap, vmin, vmax = "RdBu_r", -limit, limit
    else:
        cmap, vmin, vmax = "viridis", lo, hi if hi > lo else lo + 1e-6
    cols = min(math.ceil(math.sqrt(len(chosen))), 8)  # near-square grid, at most 8 wide
    rows = math.ceil(len(chosen) / cols)
    cell = 1.35
    fig = plt.figure(figsize=(3.4 + cols * cell + 1.0, max(3.6, rows * cell + 1.0)), constrained_layout=True)
    left, right = fig.subfigures(1, 2, width_ratios=[3.4, cols * cell + 1.0])
    ax_in = left.subplots()
    show_image(ax_in, image)
    c, h, w = image.shape
    ax_in.set_title(f"input ({c}x{h}x{w})")
    axes = right.subplots(rows, cols, squeeze=False)
    shown = None
    for ax in axes.flat:
        ax.axis("off")
    for ax, ch, m in zip(axes.flat, chosen, values):
        shown = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(f"ch {ch}", fontsize=9, pad=2)
    right.colorbar(shown, ax=axes, shrink=0.9, label="activation")
    more = f" (first {len(chosen)} of {k} channels)" if channels is None and k > len(chosen) else ""
    right.suptitle(f"{layer}: {k} feature maps of {maps.shape[1]}x{maps.shape[2]}{more}", fontsize=11)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


def padded_image(image: torch.Tensor, pad: int) -> torch.Tensor:
    """A uint8 (C, H, W) image with the run's zero padding, as the model sees it."""
    return F.pad(image, (pad,) * 4) if pad else image


def normalise_each(values: np.ndarray) -> np.ndarray:
    """Scale each item of a (N, ...) array to [0, 1] by its own min and max (constant -> 0.5)."""
    flat = values.reshape(len(values), -1)
    lo, hi = flat.min(1), flat.max(1)
    span = np.where(hi > lo, hi - lo, 1.0)
    out = (flat - lo[:, None]) / span[:, None]
    out[hi <= lo] = 0.5
    return out.reshape(values.shape)
