"""Feature maps: what one layer of a trained network outputs for one image.

``layer_output`` runs the model with a forward hook on the named layer (``features.c1``,
``layer2.0.conv1``: the names of ``model.named_modules()``) and returns that layer's output;
``plot_activations`` draws the input next to a grid of the output's channels, all on one
colour scale so that channels can be compared.

Also the helpers the other model figures share: finding a layer by name with a helpful
error, and turning dataset images (uint8) into the model's input the way training did
(padding, then the training split's mean/std).
"""

from __future__ import annotations

import difflib
import math
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import nn  # noqa: E402

from cnnlab.errors import UnknownNameError  # noqa: E402

SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)  # layers suggested when a name is wrong


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name``; an unknown name lists close matches or the conv layers."""
    modules = dict(model.named_modules())
    if name and name in modules:
        return modules[name]
    close = difflib.get_close_matches(name, [n for n in modules if n], n=4, cutoff=0.5)
    if not close:
        close = [n for n, m in modules.items() if isinstance(m, SPATIAL)][:12]
    raise UnknownNameError(f"no layer {name!r} in {getattr(model, 'model_name', type(model).__name__)}; "
                           f"try {', '.join(close)}")


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """(name, module) of the first 2-D convolution in registration order (the one that sees pixels)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise UnknownNameError(f"{getattr(model, 'model_name', type(model).__name__)} has no nn.Conv2d layer")


@torch.no_grad()
def layer_output(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The output of ``layer`` when ``model`` runs on the batch ``x`` (model in eval mode)."""
    captured: list[torch.Tensor] = []

    def hook(module, inputs, output):
        captured.append(output[0] if isinstance(output, tuple) else output)

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


def model_input(images: torch.Tensor, data_info: dict) -> torch.Tensor:
    """uint8 (B, C, H, W) images -> the normalised float batch the run's model was trained on
    (the run's zero padding, then its training split's mean and std)."""
    x = images.float() / 255.0
    if data_info.get("pad"):
        x = F.pad(x, (data_info["pad"],) * 4)
    mean = torch.tensor(data_info["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(data_info["std"]).view(1, -1, 1, 1)
    return (x - mean) / std


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
