"""Residual blocks: the shortcut options, the plain variant, bottleneck variants, SE placement."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.layers.residual import (
    BasicBlock,
    BlockSpec,
    Bottleneck,
    ZeroPadShortcut,
    make_shortcut,
    projection_shortcut,
)
from cnnlab.layers.se import SqueezeExcite
from tests.helpers import n_params


def randomise_bn(module: nn.Module) -> None:
    """Give every BN non-trivial statistics so eval-mode outputs are not a plain identity map."""
    gen = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def test_zero_pad_shortcut_subsamples_and_pads_with_zeros():
    x = torch.randn(2, 16, 8, 8)
    y = ZeroPadShortcut(16, 32, stride=2)(x)
    assert y.shape == (2, 32, 4, 4)
    torch.testing.assert_close(y[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 16:]) == 0
    assert n_params(ZeroPadShortcut(16, 32, stride=2)) == 0


def test_zero_pad_shortcut_cannot_narrow():
    with pytest.raises(ValueError, match="32 -> 16"):
        ZeroPadShortcut(32, 16)


@pytest.mark.parametrize(
    ("option", "shapes_change", "expected"),
    [
        ("A", False, type(None)),
        ("A", True, ZeroPadShortcut),
        ("B", False, type(None)),
        ("B", True, nn.Sequential),
        ("C", False, nn.Sequential),
        ("C", True, nn.Sequential),
    ],
)
def test_shortcut_options_of_table_3(option, shapes_change, expected):
    in_chans, out_chans, stride = (64, 128, 2) if shapes_change else (64, 64, 1)
    assert isinstance(make_shortcut(in_chans, out_chans, stride, option), expected)


def test_unknown_shortcut_option_names_the_choices():
    with pytest.raises(ValueError, match="'D'.*A, B, C"):
        make_shortcut(64, 128, 2, "D")
    with pytest.raises(ValueError, match="'D'"):
        BlockSpec("basic", shortcut_option="D")


def test_projection_shortcut_is_strided_1x1_conv_and_bn():
    proj = projection_shortcut(64, 256, stride=2)
    assert proj[0].weight.shape == (256, 64, 1, 1) and proj[0].stride == (2, 2) and proj[0].bias is None
    assert isinstance(proj[1], nn.BatchNorm2d)
    assert proj(torch.randn(1, 64, 8, 8)).shape == (1, 256, 4, 4)


def test_basic_block_computes_relu_of_branch_plus_identity():
    torch.manual_seed(0)
    block = BasicBlock(8, 8).eval()
    randomise_bn(block)
    x = torch.randn(2, 8, 6, 6)
    branch = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
    torch.testing.assert_close(block(x), F.relu(branch + x))


def test_plain_block_is_the_same_block_without_the_addition():
    torch.manual_seed(0)
    residual = BasicBlock(8, 16, stride=2, shortcut_option="A").eval()
    plain = BasicBlock(8, 16, stride=2, shortcut=False).eval()
    randomise_bn(residual)
    plain.load_state_dict(residual.state_dict())  # same parameters: option A adds none
    assert n_params(plain) == n_params(residual)
    assert plain.downsample is None
    x = torch.randn(2, 8, 6, 6)
    identity = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, 8))
    branch = plain.bn2(plain.conv2(F.relu(plain.bn1(plain.conv1(x)))))
    torch.testing.assert_close(plain(x), F.relu(branch))
    torch.testing.assert_close(residual(x), F.relu(branch + identity))


def test_option_b_block_adds_a_projection_only_where_shapes_change():
    assert BasicBlock(64, 64).downsample is None
    b = BasicBlock(64, 128, stride=2)
    assert n_params(b) - n_params(BasicBlock(64, 128, stride=2, shortcut=False)) == 64 * 128 + 2 * 128


def test_bottleneck_stride_placement_keeps_parameters():
    paper = Bottleneck(256, 128, stride=2)
    v15 = Bottleneck(256, 128, stride=2, stride_in_3x3=True)
    assert paper.conv1.stride == (2, 2) and paper.conv2.stride == (1, 1)
    assert v15.conv1.stride == (1, 1) and v15.conv2.stride == (2, 2)
    assert n_params(paper) == n_params(v15)
    x = torch.randn(1, 256, 8, 8)
    assert paper(x).shape == v15(x).shape == (1, 512, 4, 4)


def test_bottleneck_resnext_width_is_cardinality_times_group_width():
    # conv2 of ResNeXt-50 32x4d: 128 channels in 32 groups; conv5: 1024 in 32 groups
    block = Bottleneck(64, 64, groups=32, base_width=4)
    assert block.conv2.weight.shape == (128, 4, 3, 3) and block.conv2.groups == 32
    assert block.conv3.weight.shape == (256, 128, 1, 1)
    assert Bottleneck(1024, 512, groups=32, base_width=4).conv2.weight.shape == (1024, 32, 3, 3)


def test_se_sits_on_the_branch_before_the_addition():
    torch.manual_seed(0)
    block = Bottleneck(64, 16, se_reduction=16).eval()
    assert isinstance(block.se, SqueezeExcite)
    assert block.se.fc1.weight.shape == (4, 64, 1, 1)  # 64 // 16 hidden units
    # Force the gate shut: the branch is scaled to zero, so only the shortcut survives.
    nn.init.constant_(block.se.fc2.bias, -1e4)
    x = torch.randn(2, 64, 5, 5)
    torch.testing.assert_close(block(x), F.relu(x))


def test_zeroed_last_bn_makes_the_block_an_identity_map():
    block = Bottleneck(32, 8).eval()
    nn.init.zeros_(block.last_bn.weight)
    x = torch.randn(2, 32, 5, 5).relu()
    torch.testing.assert_close(block(x), x)


def test_block_spec_builds_each_kind_and_rejects_nonsense():
    assert isinstance(BlockSpec("basic").build(16, 16, 1), BasicBlock)
    block = BlockSpec(groups=32, base_width=4, se_reduction=16).build(64, 64, 1)
    assert isinstance(block, Bottleneck) and block.se is not None and block.conv2.groups == 32
    assert BlockSpec("basic").expansion == 1 and BlockSpec().expansion == 4
    with pytest.raises(ValueError, match="'resnet'"):
        BlockSpec("resnet")
    with pytest.raises(ValueError, match="groups=32"):
        BlockSpec("basic", groups=32)
    with pytest.raises(ValueError, match=">= 1"):
        BlockSpec(groups=0)


def test_gradients_flow_through_both_paths():
    block = Bottleneck(32, 16, stride=2, se_reduction=4)
    x = torch.randn(2, 32, 8, 8, requires_grad=True)
    block(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in block.parameters())
