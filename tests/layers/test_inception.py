"""The Inception module (Szegedy et al. 2015, Figure 2(b)) parameterised by Table 1's columns."""

from __future__ import annotations

import functools

import pytest
import torch

from cnnlab.layers.conv import ConvNormAct
from cnnlab.layers.inception import Inception, InceptionSpec
from tests.helpers import n_params

PLAIN = functools.partial(ConvNormAct, norm=False)
ROW_3A = InceptionSpec(64, 96, 128, 16, 32, 32)  # Table 1, inception (3a)


def test_output_concatenates_the_four_branches():
    torch.manual_seed(0)
    module = Inception(192, ROW_3A, conv=PLAIN).eval()
    x = torch.randn(2, 192, 7, 7)
    out = module(x)
    assert ROW_3A.out_chans == 256 and out.shape == (2, 256, 7, 7)
    # Branch order: 1x1, 3x3, 5x5, pool proj, as in Figure 2(b) and torchvision.
    assert torch.equal(out[:, :64], module.branch1(x))
    assert torch.equal(out[:, 64:192], module.branch2(x))
    assert torch.equal(out[:, 192:224], module.branch3(x))
    assert torch.equal(out[:, 224:], module.branch4(x))


def test_parameter_count_matches_table_1_row_3a():
    # Table 1 lists 159K parameters for inception (3a): weights only, and its "K" is 1024
    # (163,328 / 1024 = 159.5; likewise 3b's 388,096 / 1024 = 379 against "380K").
    weights = 192 * 64 + 192 * 96 + 96 * 128 * 9 + 192 * 16 + 16 * 32 * 25 + 192 * 32
    biases = 64 + 96 + 128 + 16 + 32 + 32
    module = Inception(192, ROW_3A, conv=PLAIN)
    assert n_params(module) == weights + biases
    assert weights / 1024 == pytest.approx(159, abs=1)


def test_kernel_5x5_is_the_torchvision_quirk():
    five = Inception(192, ROW_3A, conv=PLAIN)
    three = Inception(192, ROW_3A, conv=PLAIN, kernel_5x5=3)
    assert five.branch3[1].conv.kernel_size == (5, 5)
    assert three.branch3[1].conv.kernel_size == (3, 3)
    assert n_params(five) - n_params(three) == 16 * 32 * (25 - 9)
    with pytest.raises(ValueError, match="kernel_5x5 must be odd"):
        Inception(192, ROW_3A, conv=PLAIN, kernel_5x5=4)


def test_se_adds_a_squeeze_excite_on_the_output():
    plain = Inception(192, ROW_3A, conv=PLAIN)
    se = Inception(192, ROW_3A, conv=PLAIN, se=True)
    c, hidden = 256, 256 // 16
    assert n_params(se) - n_params(plain) == (c * hidden + hidden) + (hidden * c + c)
    assert not any(k.startswith("se.") for k in plain.state_dict())
    out = se(torch.randn(1, 192, 5, 5))
    assert out.shape == (1, 256, 5, 5)


def test_batch_norm_conv_factory_has_torchvision_key_names():
    module = Inception(192, ROW_3A, conv=functools.partial(ConvNormAct, bn_eps=1e-3), kernel_5x5=3)
    keys = module.state_dict()
    assert keys["branch2.1.conv.weight"].shape == (128, 96, 3, 3)
    assert keys["branch4.1.bn.running_var"].shape == (32,)
    assert "branch1.conv.bias" not in keys  # bias-free conv before batch norm
