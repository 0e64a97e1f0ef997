"""CIFAR-10 ResNets and plain nets (He et al. 2016, Sec. 4.2): 6n + 2 layers, option A shortcuts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.layers.residual import BasicBlock, BlockSpec, ZeroPadShortcut
from cnnlab.models import create_model, get_model_info
from cnnlab.models.resnet_cifar import CifarResNet
from tests.helpers import macs, meta_model, n_params

DEPTHS = [20, 32, 44, 56, 110]


# The paper's Table 6 says 0.27M, 0.46M, 0.66M, 0.85M, 1.7M, 19.4M.
@pytest.mark.parametrize(
    ("depth", "params"),
    [(20, 269_722), (32, 464_154), (44, 658_586), (56, 853_018), (110, 1_727_962), (1202, 19_421_274)],
)
def test_parameter_count_is_exact(depth, params):
    assert n_params(meta_model(f"resnet{depth}")) == params
    if depth != 1202:
        assert n_params(meta_model(f"plain{depth}")) == params  # option A shortcuts are parameter-free


@pytest.mark.parametrize("depth", DEPTHS)
def test_depth_is_6n_plus_2_weighted_layers(depth):
    model = meta_model(f"resnet{depth}")
    weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == depth
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 3 * (depth - 2) // 6
    # two stage transitions (16 -> 32, 32 -> 64), each an option A zero-pad shortcut
    assert sum(isinstance(m, ZeroPadShortcut) for m in model.modules()) == 2


@pytest.mark.parametrize("depth", DEPTHS)
def test_plain_net_has_the_residual_nets_parameters(depth):
    plain, res = meta_model(f"plain{depth}").state_dict(), meta_model(f"resnet{depth}").state_dict()
    assert {k: v.shape for k, v in plain.items()} == {k: v.shape for k, v in res.items()}
    assert get_model_info(f"plain{depth}").reported is None  # the paper shows curves only (Fig. 6)


def test_plain_net_is_the_residual_net_without_shortcuts():
    plain, res = create_model("plain20").eval(), create_model("resnet20").eval()
    plain.load_state_dict(res.state_dict(), strict=True)  # the same weights in both
    assert all(not m.shortcut and m.downsample is None for m in plain.modules() if isinstance(m, BasicBlock))
    assert all(m.shortcut for m in res.modules() if isinstance(m, BasicBlock))
    with torch.no_grad():
        x = torch.randn(2, 3, 32, 32)
        assert not torch.allclose(plain(x), res(x))  # the shortcuts change the function


def test_residual_and_plain_cost_the_same_compute():
    res, plain = macs("resnet20", 32), macs("plain20", 32)
    assert res == plain
    # By hand: conv1 32*32*16*27; stage 1: 6 convs of 32*32*16*16*9; stages 2 and 3: one
    # strided conv of 1,179,648 and 5 of 2,359,296 each; fc 64*10. The commonly quoted "41M".
    assert res == 32 * 32 * 16 * 27 + 6 * 2_359_296 + 2 * (1_179_648 + 5 * 2_359_296) + 640


def test_stage_shapes_follow_the_table():
    model = create_model("resnet20").eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        x = model.relu(model.bn1(model.conv1(x)))
        assert x.shape == (1, 16, 32, 32)
        assert model.layer1(x).shape == (1, 16, 32, 32)
        x = model.layer2(model.layer1(x))
        assert x.shape == (1, 32, 16, 16)
        assert model.layer3(x).shape == (1, 64, 8, 8)


def test_width_option_scales_every_stage():
    model = create_model("resnet20", width=4)
    assert model.conv1.weight.shape == (4, 3, 3, 3)
    assert model.layer3[0].conv1.weight.shape == (16, 8, 3, 3)
    assert model.fc.weight.shape == (10, 16)
    assert n_params(model) < n_params(meta_model("resnet20")) / 10


def test_options_and_errors():
    model = meta_model("resnet56", num_classes=100, in_chans=1)
    assert model.fc.weight.shape == (100, 64) and model.conv1.weight.shape == (16, 1, 3, 3)
    with pytest.raises(ValueError, match="got 0"):
        CifarResNet(0, BlockSpec("basic"))
    with pytest.raises(ValueError, match="width must be >= 1"):
        create_model("resnet20", width=0)
    with pytest.raises(ValueError, match="basic blocks"):
        CifarResNet(3, BlockSpec("bottleneck"))


def test_option_b_variant_via_the_class():
    model = CifarResNet(3, BlockSpec("basic", shortcut_option="B"))
    # two 1x1 projections + BN: 16*32 + 2*32 and 32*64 + 2*64
    assert n_params(model) == 269_722 + (16 * 32 + 64) + (32 * 64 + 128)


def test_reported_accuracy_from_table_6():
    info = get_model_info("resnet20")
    assert info.reported.dataset == "CIFAR-10" and info.reported.top1 == pytest.approx(91.25)
    assert get_model_info("resnet110").reported.top1 == pytest.approx(93.57)
    assert info.input_size == info.test_input_size == (3, 32, 32)


def test_forward_backward_finite():
    torch.manual_seed(0)
    for name in ("resnet20", "plain20"):
        model = create_model(name, width=8)
        out = model(torch.randn(4, 3, 32, 32))
        assert out.shape == (4, 10)
        torch.nn.functional.cross_entropy(out, torch.tensor([0, 1, 2, 3])).backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        assert model.conv1.weight.grad.abs().sum() > 0


@pytest.mark.slow
def test_resnet110_full_forward():
    model = create_model("resnet110").eval()
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(8, 3, 32, 32))).all()
