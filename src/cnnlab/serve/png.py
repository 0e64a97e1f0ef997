"""Tensors -> compact PNG images for the page: the only drawing the server does.

The page never receives arrays of floats. A layer's feature maps go out as one 8-bit
grayscale *atlas* (every channel a tile, row-major, no gaps), with the linear scale that maps
bytes back to activations stated beside it in the JSON; the page colours the bytes with a
lookup table (sent once, from matplotlib's colormaps) and cuts the atlas into thumbnails.
One image per layer instead of one per channel keeps a 512-channel layer to one request.

Scales: a layer whose values have both signs is drawn on a diverging scale symmetric about 0
(byte 128 = 0, so a reader can tell positive from negative); otherwise on a sequential scale
from its minimum to its maximum. Every channel of a layer shares the layer's scale, so
channels can be compared with each other.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

COLORMAPS = ("viridis", "RdBu_r", "inferno")  # sequential, diverging, heat-map overlay
PNG_COMPRESSION = 6  # zlib level: level 9 takes twice as long for a few per cent less


@dataclass(frozen=True)
class Scale:
    """How bytes 0..255 of a PNG map back to values: value = lo + byte / 255 * (hi - lo)."""

    lo: float
    hi: float
    colormap: str  # one of COLORMAPS
    diverging: bool  # symmetric about 0: lo = -hi, byte 127.5 = 0

    def to_dict(self) -> dict:
        return {"lo": self.lo, "hi": self.hi, "colormap": self.colormap, "diverging": self.diverging}


def scale_for(values: torch.Tensor) -> Scale:
    """The layer's shared scale: diverging about 0 when values have both signs, else min..max."""
    v = values.float()
    lo_t, hi_t = torch.aminmax(v)
    lo, hi = float(lo_t), float(hi_t)
    if not (math.isfinite(lo) and math.isfinite(hi)):  # rare: only then pay for the mask
        finite = v[torch.isfinite(v)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.numel() else (0.0, 0.0)
    if lo < 0 < hi:
        top = max(-lo, hi)
        return Scale(-top, top, "RdBu_r", True)
    if hi <= lo:  # a constant map: any non-empty range draws it as one colour
        hi = lo + 1.0
    return Scale(lo, hi, "viridis", False)


def to_bytes(values: torch.Tensor, scale: Scale) -> np.ndarray:
    """Values -> uint8 by ``scale`` (NaN -> 0, out of range clipped)."""
    v = values.float()
    q = (v - scale.lo) / (scale.hi - scale.lo) * 255.0
    q = torch.nan_to_num(q, nan=0.0).clamp_(0, 255).round_()
    return q.to(torch.uint8).numpy()


def encode_png(array: np.ndarray) -> bytes:
    """uint8 (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA as PNG bytes."""
    if array.dtype != np.uint8:
        raise ValueError(f"PNG pixels must be uint8, got {array.dtype}")
    mode = {2: "L"}.get(array.ndim) or {3: "RGB", 4: "RGBA"}[array.shape[2]]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array), mode).save(buf, format="PNG", compress_level=PNG_COMPRESSION)
    return buf.getvalue()


def image_png(image: torch.Tensor) -> bytes:
    """A uint8 (C, H, W) image (C = 1 or 3) as PNG."""
    array = image.detach().cpu().numpy()
    return encode_png(array[0] if array.shape[0] == 1 else np.transpose(array, (1, 2, 0)))


@dataclass(frozen=True)
class AtlasLayout:
    """Where each channel's tile sits in an atlas: tile i at column i % cols, row i // cols."""

    channels: int
    cols: int
    rows: int
    tile: tuple[int, int]  # (height, width) of one tile in the PNG
    downsample: int  # each map shown at 1/downsample of its resolution (1: every unit)

    def to_dict(self) -> dict:
        return {"channels": self.channels, "cols": self.cols, "rows": self.rows,
                "tile": list(self.tile), "downsample": self.downsample}


def atlas_layout(channels: int, height: int, width: int, *, max_pixels: int) -> AtlasLayout:
    """A near-square grid of ``channels`` tiles; maps are average-pooled by the smallest
    integer factor that keeps the atlas under ``max_pixels``."""
    factor = 1
    while channels * math.ceil(height / factor) * math.ceil(width / factor) > max_pixels and factor < max(height, width):
        factor += 1
    th, tw = math.ceil(height / factor), math.ceil(width / factor)
    # columns so the atlas is about square in pixels, not in tiles
    cols = max(1, min(channels, round(math.sqrt(channels * th / tw))))
    return AtlasLayout(channels, cols, math.ceil(channels / cols), (th, tw), factor)


def atlas_png(maps: torch.Tensor, scale: Scale, layout: AtlasLayout) -> bytes:
    """(C, h, w) maps as one gray atlas PNG by ``layout``; unused tiles are 0."""
    m = maps.float()
    if layout.downsample > 1:
        m = F.avg_pool2d(m[None], layout.downsample, ceil_mode=True)[0]
    c, th, tw = m.shape
    q = to_bytes(m, scale)
    atlas = np.zeros((layout.rows * th, layout.cols * tw), dtype=np.uint8)
    for i in range(c):
        r, col = divmod(i, layout.cols)
        atlas[r * th : (r + 1) * th, col * tw : (col + 1) * tw] = q[i]
    return encode_png(atlas)


def filters_png(weight: torch.Tensor, *, gap: int = 1) -> tuple[bytes, AtlasLayout]:
    """First-layer kernels (K, C, kh, kw) as one atlas, each kernel scaled by its own min and
    max (so each one's pattern shows; state it), RGB for 3 input channels, gray otherwise
    (the mean over input channels). Tiles are separated by ``gap`` white pixels."""
    w = weight.detach().float().cpu()
    k, c, kh, kw = w.shape
    w = w if c == 3 else w.mean(1, keepdim=True)
    flat = w.reshape(k, -1)
    lo, hi = flat.min(1).values.view(k, 1, 1, 1), flat.max(1).values.view(k, 1, 1, 1)
    scaled = torch.where(hi > lo, (w - lo) / (hi - lo).clamp_min(1e-12), torch.full_like(w, 0.5))
    q = (scaled * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (K, kh, kw, C')
    cols = max(1, min(k, math.ceil(math.sqrt(k))))
    rows = math.ceil(k / cols)
    channels = q.shape[-1]
    atlas = np.full((rows * (kh + gap) - gap, cols * (kw + gap) - gap, channels), 255, dtype=np.uint8)
    for i in range(k):
        r, col = divmod(i, cols)
        y, x = r * (kh + gap), col * (kw + gap)
        atlas[y : y + kh, x : x + kw] = q[i]
    array = atlas[..., 0] if channels == 1 else atlas
    return encode_png(array), AtlasLayout(k, cols, rows, (kh, kw), 1)


def heat_png(heat: torch.Tensor) -> tuple[bytes, Scale]:
    """An (H, W) attribution map: non-negative maps on 0..max (inferno), signed ones on a
    diverging scale about 0."""
    scale = scale_for(heat)
    if not scale.diverging:
        scale = Scale(0.0, max(scale.hi, 1e-12), "inferno", False)
    return encode_png(to_bytes(heat, scale)), scale


def colormap_tables() -> dict[str, str]:
    """Each colormap in :data:`COLORMAPS` as 256 hex colours (6 characters each, joined)."""
    from matplotlib import colormaps  # imported here: only the page's first request needs it

    tables = {}
    for name in COLORMAPS:
        rgb = (colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)
        tables[name] = "".join(f"{r:02x}{g:02x}{b:02x}" for r, g, b in rgb)
    return tables
