"""Tensors to PNG: scales stated, values recoverable, atlases laid out as stated."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from cnnlab.serve.png import atlas_layout, atlas_png, colormap_tables, filters_png, heat_png, image_png, scale_for, to_bytes


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_scale_diverging_sequential_constant():
    s = scale_for(torch.tensor([-1.0, 3.0]))
    assert (s.lo, s.hi, s.diverging, s.colormap) == (-3.0, 3.0, True, "RdBu_r")
    s = scale_for(torch.tensor([0.5, 2.0]))
    assert (s.lo, s.hi, s.diverging, s.colormap) == (0.5, 2.0, False, "viridis")
    s = scale_for(torch.full((3,), 7.0))
    assert s.lo == 7.0 and s.hi > s.lo
    s = scale_for(torch.tensor([float("nan"), 1.0, 2.0]))
    assert (s.lo, s.hi) == (1.0, 2.0)


def test_bytes_map_back_to_values_within_one_step():
    values = torch.randn(4, 9, 7)
    scale = scale_for(values)
    q = to_bytes(values, scale).astype(np.float64)
    back = scale.lo + q / 255 * (scale.hi - scale.lo)
    assert np.abs(back - values.numpy()).max() <= (scale.hi - scale.lo) / 255 / 2 + 1e-6
    assert to_bytes(torch.tensor([0.0]), scale_for(torch.tensor([-2.0, 2.0])))[0] in (127, 128)  # 0 is mid-scale


def test_atlas_places_channel_i_at_its_tile():
    maps = torch.arange(5, dtype=torch.float32).view(5, 1, 1).expand(5, 3, 4).contiguous()
    layout = atlas_layout(5, 3, 4, max_pixels=10_000)
    atlas = _decode(atlas_png(maps, scale_for(maps), layout))
    assert atlas.shape == (layout.rows * 3, layout.cols * 4)
    for ch in range(5):
        r, c = divmod(ch, layout.cols)
        tile = atlas[r * 3 : (r + 1) * 3, c * 4 : (c + 1) * 4]
        assert (tile == round(ch / 4 * 255)).all()


def test_atlas_downsamples_to_stay_under_the_pixel_budget():
    layout = atlas_layout(64, 224, 224, max_pixels=1_000_000)
    assert layout.downsample == 2 and layout.tile == (112, 112)
    assert layout.channels * 112 * 112 <= 1_000_000
    maps = torch.rand(64, 224, 224)
    atlas = _decode(atlas_png(maps, scale_for(maps), layout))
    assert atlas.shape == (layout.rows * 112, layout.cols * 112)


def test_filters_rgb_and_gray():
    rgb, layout = filters_png(torch.randn(8, 3, 5, 5))
    img = _decode(rgb)
    assert img.shape == (layout.rows * 6 - 1, layout.cols * 6 - 1, 3)
    gray, layout = filters_png(torch.randn(6, 1, 3, 3))
    assert _decode(gray).ndim == 2
    w = torch.zeros(1, 1, 2, 2)
    w[0, 0, 0, 0] = 1.0  # each kernel scaled to its own min..max: 0 -> black, 1 -> white
    one = _decode(filters_png(w)[0])
    assert one[0, 0] == 255 and one[1, 1] == 0


def test_heat_and_image():
    data, scale = heat_png(torch.tensor([[0.0, 0.5], [1.0, 0.25]]))
    assert scale.colormap == "inferno" and scale.lo == 0.0 and scale.hi == 1.0
    assert _decode(data).tolist() == [[0, 128], [255, 64]]
    _, signed = heat_png(torch.tensor([[-0.1, 0.3]]))
    assert signed.diverging
    img = torch.randint(0, 256, (3, 5, 6), dtype=torch.uint8)
    assert np.array_equal(_decode(image_png(img)), img.permute(1, 2, 0).numpy())


def test_colormap_tables():
    tables = colormap_tables()
    assert set(tables) == {"viridis", "RdBu_r", "inferno"}
    assert all(len(t) == 256 * 6 for t in tables.values())
    assert tables["RdBu_r"][127 * 6 : 128 * 6] != tables["RdBu_r"][:6]
