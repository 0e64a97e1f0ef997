"""The library calls behind the page: maps for every family, a convolution unit's working."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model, get_model_info, list_models
from cnnlab.serve.inference import ServedRun, conv_dot_product
from cnnlab.training.config import TrainConfig
from cnnlab.training.run import Run


@pytest.mark.parametrize("conv", [
    nn.Conv2d(3, 4, 3, padding=1),
    nn.Conv2d(2, 6, 5, stride=2, padding=2, bias=False),
    nn.Conv2d(4, 4, 3, dilation=2, padding=2),
    nn.Conv2d(4, 8, 3, groups=2, padding=1),
    nn.Conv2d(4, 4, 3, groups=4, padding="same"),
    nn.Conv2d(3, 2, (3, 5), stride=(1, 2), padding=(1, 2)),
    nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"),
    nn.Conv2d(2, 3, 4, padding="valid"),
])
def test_conv_dot_product_reproduces_the_convolution(conv):
    torch.manual_seed(0)
    x = torch.randn(conv.in_channels, 11, 12)
    with torch.no_grad():
        out = conv(x[None])[0]
    for channel, row, col in [(0, 0, 0), (conv.out_channels - 1, out.shape[1] - 1, out.shape[2] - 1), (1, 2, 3)]:
        d = conv_dot_product(conv, x, channel, row, col, actual=float(out[channel, row, col]))
        assert d["total"] == pytest.approx(float(out[channel, row, col]), abs=1e-5)
        assert len(d["partial_sums"]) == conv.in_channels // conv.groups
        assert sum(d["partial_sums"]) + d["bias"] == pytest.approx(d["total"], abs=1e-5)
        kh, kw = conv.kernel_size
        for shown in d["shown"]:
            assert torch.tensor(shown["window"]).shape == (kh, kw)
            assert torch.equal(torch.tensor(shown["kernel"]), conv.weight[channel, shown["channel"] - d["input_channels"][0]].detach())


# The families the serve issue names, plus the one without a spatial layer: Grad-CAM through the server.
EXPLAINED = ("lenet", "mlp", "resnet_cifar", "resnet", "vit", "swin")


def _fake_run(tmp_path, name: str, size: tuple[int, int, int]) -> Run:
    model = create_model(name, num_classes=10, **({"in_chans": size[0]} if size[0] != 3 else {})).eval()
    info = {"name": "synthetic", "classes": [f"c{i}" for i in range(10)], "image_size": list(size),
            "mean": [0.5] * size[0], "std": [0.25] * size[0], "pad": 0}
    return Run(tmp_path, TrainConfig(model=name, data="synthetic"), [], info, model)


def _one_per_family() -> list[tuple[str, tuple[int, int, int]]]:
    smallest: dict[str, tuple[int, str]] = {}
    for name in list_models():
        info = get_model_info(name)
        params = info.params or 0
        if info.family not in smallest or params < smallest[info.family][0]:
            smallest[info.family] = (params, name)
    chosen = []
    for _, (_, name) in sorted(smallest.items()):
        info = get_model_info(name)
        chosen.append((name, tuple(info.test_input_size or info.input_size)))
    return chosen + [("resnet18", (3, 160, 160))]  # the Imagenette model at Imagenette's size


@pytest.mark.slow
@pytest.mark.parametrize("name,size", _one_per_family())
def test_every_family_is_drawn_inspected_and_explained(tmp_path, name, size):
    torch.manual_seed(0)
    served = ServedRun(name, tmp_path, run=_fake_run(tmp_path, name, size))
    image = torch.randint(0, 256, size, dtype=torch.uint8)
    analysis = served.analyse(image, {"kind": "test"})
    assert analysis.probs.sum().item() == pytest.approx(1.0, abs=1e-4)
    drawn = [v for v in served.layers if v.layout is not None]
    assert drawn, f"{name}: no layer drawn"
    assert set(analysis.maps) == {v.index for v in drawn}
    for view in drawn:
        maps = analysis.maps[view.index]
        assert maps.shape[0] == view.channels and tuple(maps.shape[1:]) == tuple(view.grid)
        assert torch.isfinite(maps.float()).any()
    convs = [v for v in drawn if v.is_conv]
    if convs:
        view = convs[0]
        unit = served.unit(analysis, view.index, 0, view.grid[0] // 2, view.grid[1] // 2)
        assert unit["conv"]["total"] == pytest.approx(unit["conv"]["actual"], rel=1e-4, abs=1e-4)
        assert not unit["field"]["global"]
    info = served.info()
    json.dumps(info)  # everything the page gets is plain JSON
    family = get_model_info(name).family
    if family == "vit":
        assert any(v.layout == "tokens" for v in drawn)
    if family == "swin":
        assert any(v.layout == "channels_last" for v in drawn)
    if family not in EXPLAINED:  # Grad-CAM for every family is the attribution module's own test
        return
    if family == "mlp":  # no spatial layer: the page shows the attribution module's one-line reason
        with pytest.raises(CnnlabError, match="no spatial layer for Grad-CAM"):
            served.attribution(analysis, "gradcam", None)
    else:
        heat = served.attribution(analysis, "gradcam", None)
        assert tuple(heat["heatmap"].shape) == size[1:]
