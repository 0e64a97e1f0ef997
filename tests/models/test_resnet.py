"""ImageNet ResNets and plain nets (He et al. 2016): sizes, compute, torchvision compatibility."""

from __future__ import annotations

import pytest
import torch

from cnnlab.errors import UnknownNameError
from cnnlab.layers.residual import BasicBlock, Bottleneck
from cnnlab.models import create_model, get_model_info
from tests.helpers import gmacs, meta_model, n_params


# Parameter counts of torchvision's resnet18 .. resnet152 (the published figures).
@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("resnet50", 25_557_032),
        ("resnet101", 44_549_160),
        ("resnet152", 60_192_808),
    ],
)
def test_parameter_count_is_exact(name, params):
    assert n_params(meta_model(name)) == params


# Table 1 of the paper: "FLOPs" (multiply-adds) 1.8, 3.6, 3.8, 7.6, 11.3 billion.
@pytest.mark.parametrize(
    ("name", "paper_gmacs"),
    [("resnet18", 1.8), ("resnet34", 3.6), ("resnet50", 3.8), ("resnet101", 7.6), ("resnet152", 11.3)],
)
def test_macs_match_table_1(name, paper_gmacs):
    assert gmacs(name, 224) == pytest.approx(paper_gmacs, rel=0.03)


def test_stride_placement_gives_paper_and_v15_compute():
    # Paper (stride on the first 1x1): 3.86 GMACs (Hu et al. 2018, Table 2); v1.5: 4.09.
    paper, v15 = meta_model("resnet50"), meta_model("resnet50", stride_in_3x3=True)
    assert gmacs(paper, 224) == pytest.approx(3.86, rel=0.01)
    assert gmacs(v15, 224) == pytest.approx(4.09, rel=0.01)
    assert paper.layer2[0].conv1.stride == (2, 2) and v15.layer2[0].conv2.stride == (2, 2)
    assert n_params(paper) == n_params(v15)


# torchvision's state dict: entries (parameters + BN buffers) and characteristic shapes.
@pytest.mark.parametrize(
    ("name", "entries", "keys"),
    [
        (
            "resnet18",
            122,
            {
                "conv1.weight": (64, 3, 7, 7),
                "bn1.running_var": (64,),
                "layer1.0.conv2.weight": (64, 64, 3, 3),
                "layer2.0.downsample.0.weight": (128, 64, 1, 1),
                "layer2.0.downsample.1.num_batches_tracked": (),
                "layer4.1.bn2.bias": (512,),
                "fc.weight": (1000, 512),
            },
        ),
        ("resnet34", 218, {"layer3.5.conv2.weight": (256, 256, 3, 3), "fc.bias": (1000,)}),
        (
            "resnet50",
            320,
            {
                "layer1.0.conv1.weight": (64, 64, 1, 1),
                "layer1.0.conv3.weight": (256, 64, 1, 1),
                "layer1.0.downsample.0.weight": (256, 64, 1, 1),
                "layer1.0.downsample.1.running_mean": (256,),
                "layer3.5.bn3.weight": (1024,),
                "layer4.0.downsample.0.weight": (2048, 1024, 1, 1),
                "fc.weight": (1000, 2048),
            },
        ),
        ("resnet101", 626, {"layer3.22.conv2.weight": (256, 256, 3, 3)}),
        ("resnet152", 932, {"layer2.7.conv3.weight": (512, 128, 1, 1), "layer3.35.bn2.weight": (256,)}),
    ],
)
def test_state_dict_matches_torchvision(name, entries, keys):
    state = meta_model(name).state_dict()
    assert len(state) == entries
    for key, shape in keys.items():
        assert tuple(state[key].shape) == shape, key


def test_plain_nets_are_resnets_without_shortcuts():
    for depth in (18, 34):
        plain, res = meta_model(f"plain{depth}"), meta_model(f"resnet{depth}")
        projections = sum(p.numel() for n, p in res.named_parameters() if ".downsample." in n)
        assert n_params(plain) == n_params(res) - projections
        assert not any(".downsample." in k for k in plain.state_dict())
        assert set(plain.state_dict()) == {k for k in res.state_dict() if ".downsample." not in k}
        blocks = [m for m in plain.modules() if isinstance(m, BasicBlock)]
        assert len(blocks) == (depth - 2) // 2 and not any(b.shortcut for b in blocks)


def test_shortcut_options_a_and_c():
    # Option A adds no parameters, so ResNet-34 A is exactly as big as plain-34 (Table 3).
    assert n_params(meta_model("resnet34", shortcut_option="A")) == n_params(meta_model("plain34"))
    # Option C projects on every block: 16 projections instead of 3.
    c = meta_model("resnet34", shortcut_option="C")
    assert sum(1 for m in c.modules() if isinstance(m, BasicBlock) and m.downsample is not None) == 16
    assert n_params(c) > n_params(meta_model("resnet34"))


def test_num_classes_and_in_chans():
    model = meta_model("resnet50", num_classes=10, in_chans=1)
    assert model.fc.weight.shape == (10, 2048)
    assert model.conv1.weight.shape == (64, 1, 7, 7)
    assert get_model_info(model).input_size == (1, 224, 224)


def test_basic_block_nets_have_no_stride_option():
    with pytest.raises(UnknownNameError, match="stride_in_3x3"):
        create_model("resnet18", stride_in_3x3=True)


def test_zero_init_residual_zeroes_each_branch_last_bn():
    model = meta_model("resnet50", zero_init_residual=True)
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 16
    default = create_model("resnet18")
    zeroed = create_model("resnet18", zero_init_residual=True)
    assert all((b.bn2.weight == 0).all() for b in zeroed.modules() if isinstance(b, BasicBlock))
    assert all((b.bn2.weight == 1).all() for b in default.modules() if isinstance(b, BasicBlock))


def test_init_is_he_fan_out():
    torch.manual_seed(0)
    conv = create_model("resnet18").layer3[0].conv2  # 256 filters of 3x3: fan-out 2304
    assert conv.weight.std().item() == pytest.approx((2 / (256 * 9)) ** 0.5, rel=0.05)


def test_metadata():
    info = get_model_info("resnet50")
    assert info.family == "resnet" and info.input_size == (3, 224, 224)
    assert info.reported.top1 == pytest.approx(77.15) and info.reported.top5 == pytest.approx(93.29)
    assert "10-crop" in info.reported.note
    assert get_model_info("plain34").reported.top1 < get_model_info("resnet34").reported.top1
    model = meta_model("resnet18")
    assert get_model_info(model).name == "resnet18" and "Deep Residual Learning" in get_model_info(model).paper


def test_small_forward_backward_and_bn_modes():
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=7)
    x = torch.randn(2, 3, 32, 32)  # 32 -> 1x1 at conv5: the smallest input BN can train on with batch 2
    out = model(x)
    assert out.shape == (2, 7)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.conv1.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert not torch.allclose(model(x), out.detach())  # batch statistics vs running statistics


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "plain34", "resnet152"])
def test_full_size_forward(name):
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
