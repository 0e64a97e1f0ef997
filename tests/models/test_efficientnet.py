"""EfficientNet: compound scaling, exact sizes, compute, torchvision key names, behaviour."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.models import create_model, get_model_info
from cnnlab.models.efficientnet import B0_STAGES, SCALING, round_channels, scale_depth
from tests.helpers import gmacs, meta_model, n_params

# Exact counts at 1000 classes (torchvision's efficientnet_b0, b3..b7 have the same).
PARAMS = {
    "efficientnet_b0": 5_288_548,
    "efficientnet_b3": 12_233_232,
    "efficientnet_b4": 19_341_616,
    "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704,
    "efficientnet_b7": 66_347_960,
}
# Multiply-adds at each model's own resolution (224, 300, 380, 456, 528, 600).
GMACS = {
    "efficientnet_b0": 0.39,
    "efficientnet_b3": 1.83,
    "efficientnet_b4": 4.39,
    "efficientnet_b5": 10.27,
    "efficientnet_b6": 19.07,
    "efficientnet_b7": 37.75,
}
RESOLUTION = {"b0": 224, "b3": 300, "b4": 380, "b5": 456, "b6": 528, "b7": 600}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_count_is_exact(name):
    assert n_params(meta_model(name)) == PARAMS[name]


@pytest.mark.parametrize("name", sorted(GMACS))
def test_macs_at_the_model_resolution(name):
    info = get_model_info(name)
    assert info.input_size == (3, RESOLUTION[name[-2:]], RESOLUTION[name[-2:]])
    assert gmacs(name, info.input_size) == pytest.approx(GMACS[name], rel=0.03)


def test_channel_rounding_is_to_multiples_of_8_never_10_percent_down():
    assert round_channels(32 * 1.2) == 40  # 38.4 -> 40
    assert round_channels(16 * 1.4) == 24  # 22.4 -> 24
    assert round_channels(24 * 1.8) == 40  # 43.2 -> 40 (nearest multiple)
    assert round_channels(12.0) == 16  # 8 would be 33% below 12: bumped up
    assert all(round_channels(c * w) % 8 == 0 for c in (16, 24, 40, 80) for w in (1.1, 1.3, 1.7))


def test_depth_scaling_takes_the_ceiling_of_every_stage():
    layers = [scale_depth(s.layers, SCALING["b7"].depth) for s in B0_STAGES]
    assert layers == [4, 7, 7, 10, 10, 13, 4]  # ceil([1, 2, 2, 3, 3, 4, 1] * 3.1)
    model = meta_model("efficientnet_b7")
    assert [len(model.features[i]) for i in range(1, 8)] == layers


def test_b0_is_table_1():
    model = meta_model("efficientnet_b0")
    assert model.features[0][0].out_channels == 32
    outs = [model.features[i][-1].block[-1][0].out_channels for i in range(1, 8)]
    assert outs == [16, 24, 40, 80, 112, 192, 320]
    kernels = [model.features[i][0].block[-3][0].kernel_size[0] for i in range(1, 8)]
    assert kernels == [3, 3, 5, 3, 5, 5, 3]
    assert model.features[8][0].out_channels == 1280


def test_se_is_a_quarter_of_the_block_input_with_swish():
    model = meta_model("efficientnet_b0")
    se = model.features[2][0].block[2]  # input 16 channels, expanded to 96
    assert (se.fc1.in_channels, se.fc1.out_channels) == (96, 4)
    assert isinstance(se.act, nn.SiLU)


def test_stochastic_depth_rises_linearly_to_0_2():
    model = meta_model("efficientnet_b0")
    rates = [block.stochastic_depth.p for stage in model.features[1:8] for block in stage]
    assert len(rates) == 16 and rates[0] == 0.0
    assert rates == pytest.approx([0.2 * i / 16 for i in range(16)])


def test_state_dict_matches_torchvision_efficientnet_b0():
    sd = meta_model("efficientnet_b0").state_dict()
    expected = {
        "features.0.0.weight": (32, 3, 3, 3),
        "features.0.1.running_mean": (32,),
        "features.1.0.block.0.0.weight": (32, 1, 3, 3),  # expand ratio 1: depthwise first
        "features.1.0.block.1.fc1.weight": (8, 32, 1, 1),
        "features.1.0.block.2.0.weight": (16, 32, 1, 1),
        "features.2.0.block.0.0.weight": (96, 16, 1, 1),
        "features.2.0.block.1.0.weight": (96, 1, 3, 3),
        "features.2.0.block.2.fc2.weight": (96, 4, 1, 1),
        "features.6.3.block.1.0.weight": (1152, 1, 5, 5),
        "features.8.0.weight": (1280, 320, 1, 1),
        "classifier.1.weight": (1000, 1280),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    # stem 6 + one MBConv1 (2 conv-BN x 6 + SE 4) + 15 MBConv6 (3 x 6 + 4) + head 6 + linear 2
    assert len(sd) == 360


def test_options():
    model = meta_model("efficientnet_b3", num_classes=7, in_chans=1)
    assert tuple(model(torch.empty(2, 1, 64, 64, device="meta")).shape) == (2, 7)
    assert get_model_info(model).input_size == (1, 300, 300)


@pytest.fixture(scope="module")
def b0():
    torch.manual_seed(0)
    return create_model("efficientnet_b0", num_classes=10)


def test_training_is_stochastic_and_evaluation_deterministic(b0):
    x = torch.randn(4, 3, 32, 32)
    b0.eval()
    with torch.no_grad():
        assert torch.equal(b0(x), b0(x))
        b0.train()
        assert not torch.allclose(b0(x), b0(x))  # dropout and stochastic depth


def test_small_forward_and_backward_give_finite_gradients(b0):
    b0.train()
    x = torch.randn(2, *get_model_info("efficientnet_b0").test_input_size)
    b0(x).logsumexp(1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in b0.parameters())
    assert b0.features[0][0].weight.grad.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b3", "efficientnet_b7"])
def test_full_size_forward(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(1, *get_model_info(name).input_size))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
