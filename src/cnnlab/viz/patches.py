"""The image patches that excite a unit most: Zeiler & Fergus's "top-9 patches".

Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks", Fig. 2
(https://arxiv.org/abs/1311.2901), show for chosen feature maps of each layer the nine image
patches, from a whole dataset, that give the map's strongest activation. For each channel of
the layer we take the maximum over spatial positions for every image, keep the nine best
images, and crop each around the winning position to the unit's receptive field.

The receptive field comes from :mod:`cnnlab.analysis` (``summary(model).rows[i].field``): its
size ``r``, jump ``j`` (input pixels between neighbouring units) and ``start`` (centre of the
first unit, in input pixels, padding included). Unit (y, x) is centred on input pixel
``start + j * (y, x)``, so the crop is the r x r square around it. The crop is taken from the
image as the model saw it (after the run's zero padding); where the field reaches past the
image, it is filled with mid-gray, so a field that hangs over the edge stays visibly square.

Deviation from the paper: Zeiler & Fergus also project each activation back to pixel space
with a deconvnet; here only the raw patches are shown (their right-hand panels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import nn  # noqa: E402

from cnnlab.analysis import Field, summary  # noqa: E402
from cnnlab.viz.activations import find_layer, layer_output, model_input, padded_image, show_image  # noqa: E402

OUTSIDE = 0.5  # display value of crop pixels that fall outside the image (mid-gray)


@dataclass(frozen=True)
class TopPatch:
    """One of a channel's best activations and the patch of input that produced it."""

    channel: int
    activation: float  # the maximum over the feature map of this channel for this image
    image_index: int  # index into the dataset split
    label: int  # the image's class
    position: tuple[int, int]  # (row, column) of the winning unit in the feature map
    patch: torch.Tensor  # (C, r, r) float in [0, 1]: the receptive field around the unit


def layer_field(model: nn.Module, layer: str, input_size: Sequence[int]) -> Field:
    """Receptive field (size, jump, start, in input pixels) of the output of ``layer``,
    from :func:`cnnlab.analysis.summary` at ``input_size`` (C, H, W)."""
    rows = summary(model, tuple(input_size)).rows
    match = [r for r in rows if r.name == layer and "(own ops)" not in r.type]
    if not match:  # a block (``layer2.0``): fold its children into one row at its own depth
        rows = summary(model, tuple(input_size), depth=layer.count(".") + 1).rows
        match = [r for r in rows if r.name == layer]
    if not match or match[0].field is None:
        raise ValueError(f"no receptive field known for layer {layer!r} (the analysis tracked no spatial output there)")
    field, shape = match[0].field, match[0].output_shape
    if shape is not None and len(shape) != 3:
        raise ValueError(f"layer {layer!r} outputs shape {tuple(shape)}, not (channels, H, W) maps; "
                         "choose a convolution or pooling layer for patches")
    if field.is_global or len(field.size) != 2:
        raise ValueError(f"layer {layer!r} sees the whole image (a global or fully connected layer); "
                         "choose a convolution or pooling layer for patches")
    return field


def crop_field(image: torch.Tensor, field: Field, position: tuple[int, int]) -> torch.Tensor:
    """The (C, r_h, r_w) square of ``image`` (float, (C, H, W), in the model's input
    coordinates) seen by the unit at ``position``; pixels outside the image are ``OUTSIDE``."""
    c, h, w = image.shape
    size = tuple(int(round(s)) for s in field.size)
    # top-left pixel of the field: centre minus half the field (start is a half-integer when r is even)
    top = [int(round(st + j * p - (r - 1) / 2)) for st, j, p, r in zip(field.start, field.jump, position, size)]
    out = torch.full((c, size[0], size[1]), OUTSIDE, dtype=torch.float32)
    y0, x0 = max(top[0], 0), max(top[1], 0)
    y1, x1 = min(top[0] + size[0], h), min(top[1] + size[1], w)
    if y1 > y0 and x1 > x0:
        out[:, y0 - top[0] : y1 - top[0], x0 - top[1] : x1 - top[1]] = image[:, y0:y1, x0:x1]
    return out


def oversized_field_note(field: Field, layer: str, image_size: Sequence[int], pad: int = 0) -> str | None:
    """A note when ``layer``'s field is larger than the (H, W) images after the run's padding:
    each patch then holds the whole image, placed where the unit looks. None otherwise."""
    seen = [s + 2 * pad for s in image_size[-2:]]
    if not any(f > s for f, s in zip(field.size, seen)):
        return None
    return (f"note: {layer}'s receptive field ({field.describe()}) is larger than the {seen[0]}x{seen[1]} input, "
            "so each patch holds the whole image, placed where the unit looks")


@torch.no_grad()
def top_patches(
    model: nn.Module,
    layer: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    data_info: dict,
    *,
    channels: Sequence[int] | None = None,
    k: int = 9,
    batch_size: int = 500,
) -> tuple[Field, dict[int, list[TopPatch]]]:
    """For each of ``channels`` of ``layer`` (default: the first 8): the ``k`` images (uint8
    (N, C, H, W)) with the largest activation anywhere in that channel's map, best first,
    with their field crops."""
    module = find_layer(model, layer)
    if len(images) == 0:
        raise ValueError("no images to search")
    pad = int(data_info.get("pad", 0))
    c, h, w = images.shape[1:]
    field = layer_field(model, layer, (c, h + 2 * pad, w + 2 * pad))
    device = next(model.parameters()).device
    best_values, best_where = [], []
    for start in range(0, len(images), batch_size):
        x = model_input(images[start : start + batch_size], data_info).to(device)
        maps = layer_output(model, module, x)
        if maps.ndim != 4:
            raise ValueError(f"layer {layer!r} outputs shape {tuple(maps.shape[1:])}; patches need (channels, H, W) maps")
        if channels is None:
            channels = list(range(min(8, maps.shape[1])))
        bad = [ch for ch in channels if not 0 <= ch < maps.shape[1]]
        if bad:
            raise ValueError(f"channels {bad} out of range: layer {layer} has {maps.shape[1]} channels (0..{maps.shape[1] - 1})")
        flat = maps[:, list(channels)].flatten(2).float().cpu()  # (B, channels, h*w)
        value, where = flat.max(2)  # the strongest unit of each map
        best_values.append(value)
        best_where.append(where)
    values, where = torch.cat(best_values), torch.cat(best_where)  # (N, channels)
    if tuple(field.grid) != tuple(maps.shape[-2:]):  # the analysis traced another map than the hook saw
        raise ValueError(f"receptive field of {layer!r} is for a {field.grid} map, but the layer outputs "
                         f"{tuple(maps.shape[-2:])}; is the layer called more than once?")
    grid_w = maps.shape[-1]
    result: dict[int, list[TopPatch]] = {}
    for i, ch in enumerate(channels):
        top = values[:, i].topk(min(k, len(values))).indices
        patches = []
        for n in top.tolist():
            pos = divmod(int(where[n, i]), grid_w)
            seen = padded_image(images[n], pad).float() / 255.0
            patches.append(TopPatch(ch, float(values[n, i]), n, int(labels[n]), pos, crop_field(seen, field, pos)))
        result[ch] = patches
    return field, result


def plot_top_patches(
    patches: dict[int, list[TopPatch]], field: Field, *, layer: str, classes: Sequence[str] | None = None,
    title: str | None = None, columns: int = 4,
) -> Figure:
    """One 3x3 block per channel (``columns`` blocks per row): its nine best patches, best at
    top left, each labelled "class: activation"; the block titled with the channel.

    Laid out by hand in inches (patch, gaps, labels), so the blocks stay compact for any
    number of channels."""
    n = len(patches)
    if n == 0:
        raise ValueError("no channels to draw")
    per = max(len(p) for p in patches.values())
    side = math.ceil(math.sqrt(per))
    cols = min(n, columns)
    rows = math.ceil(n / cols)
    # sizes in inches: a patch, the gap between patches, a patch's label, a block's title and margin
    cell, gap, label, head, margin = 0.9, 0.08, 0.17, 0.3, 0.12
    block_w = side * cell + (side - 1) * gap + 2 * margin
    block_h = side * (cell + label) + (side - 1) * gap + head + margin
    top = 0.75 if title else 0.5  # the figure's heading
    width, height = cols * block_w + (cols + 1) * margin, rows * block_h + (rows + 1) * margin + top
    fig = plt.figure(figsize=(max(width, 7.5), height))
    x_offset = (max(width, 7.5) - width) / 2
    fw, fh = max(width, 7.5), height
    for b, (ch, items) in enumerate(patches.items()):
        r, c = divmod(b, cols)
        bx = x_offset + margin + c * (block_w + margin)  # block's left edge, inches
        by = height - top - margin - r * (block_h + margin)  # block's top edge, inches
        fig.patches.append(plt.Rectangle((bx / fw, (by - block_h) / fh), block_w / fw, block_h / fh,
                                         transform=fig.transFigure, facecolor="0.94", edgecolor="0.8", zorder=-1))
        fig.text((bx + block_w / 2) / fw, (by - 0.06) / fh, f"channel {ch}", ha="center", va="top",
                 fontsize=10, fontweight="bold")
        for i, p in enumerate(items):
            pr, pc = divmod(i, side)
            x0 = bx + margin + pc * (cell + gap)
            y0 = by - head - label - pr * (cell + label + gap) - cell
            ax = fig.add_axes((x0 / fw, y0 / fh, cell / fw, cell / fh))
            show_image(ax, p.patch)
            for spine in ax.spines.values():
                spine.set_color("0.6")
            name = classes[p.label] if classes else str(p.label)
            ax.set_title(f"{name}: {p.activation:.2f}", fontsize=7, pad=1.5)
    size = "x".join(f"{s:g}" for s in field.size)
    heading = (f"{layer}: top-{per} dataset patches per channel, cropped to the unit's {size} receptive field "
               f"(jump {field.describe('jump')})\nlabel = image class: activation; gray = outside the image")
    fig.suptitle(f"{title}\n{heading}" if title else heading, fontsize=10, y=1 - 0.08 / fh, va="top")
    return fig
