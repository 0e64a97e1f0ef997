"""Inception-v4 (Szegedy et al. 2017, Figure 9): size, compute, grid sizes, SE option."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.models import create_model
from cnnlab.models.inception_v4 import TABLE1, InceptionA, InceptionB, InceptionC, ReductionA
from tests.helpers import gmacs, meta_model, n_params, new_meta_model


def se_params(chans: int) -> int:
    hidden = chans // 16
    return 2 * chans * hidden + hidden + chans


def test_parameter_count_is_exact():
    # The TF-slim / Cadene / timm inception_v4 (BN eps 0.001, bias-free convs).
    assert n_params(meta_model("inception_v4")) == 42_679_816


def test_macs_and_grid_sizes_at_299():
    model = new_meta_model("inception_v4")  # the hooks stay on it
    shapes = {}
    for name in ("stem", "inception_a", "reduction_a", "inception_b", "reduction_b", "inception_c"):
        getattr(model, name).register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:]))
        )
    # 12.25 G multiply-adds (the course's figure; timm lists 12.28); the forward pass fills shapes.
    assert gmacs(model, 299) == pytest.approx(12.25, rel=0.03)
    # Figure 9's grid sizes.
    assert shapes == {
        "stem": (384, 35, 35),
        "inception_a": (384, 35, 35),
        "reduction_a": (1024, 17, 17),
        "inception_b": (1024, 17, 17),
        "reduction_b": (1536, 8, 8),
        "inception_c": (1536, 8, 8),
    }
    assert [len(model.inception_a), len(model.inception_b), len(model.inception_c)] == [4, 7, 3]


def test_reduction_a_follows_table_1():
    # k, l, m, n of Table 1; Reduction-A's output is the input plus n plus m channels.
    assert [tuple(vars(s).values()) for s in TABLE1.values()] == [
        (192, 224, 256, 384),
        (192, 192, 256, 384),
        (256, 256, 384, 384),
    ]
    block = ReductionA(384, TABLE1["inception_v4"])
    assert block.branch_dbl3x3[1].conv.out_channels == 224
    assert block(torch.randn(1, 384, 9, 9)).shape == (1, 1024, 4, 4)


def test_se_option_adds_squeeze_excite_to_each_a_b_c_module():
    plain, se = meta_model("inception_v4"), meta_model("inception_v4", se=True)
    expected = 4 * se_params(384) + 7 * se_params(1024) + 3 * se_params(1536)
    assert n_params(se) - n_params(plain) == expected == 1_890_112
    assert isinstance(InceptionC(1536, se=True).se, nn.Module)
    assert isinstance(InceptionA(384).se, nn.Identity) and isinstance(InceptionB(1024).se, nn.Identity)


def test_small_forward_backward_and_dropout():
    torch.manual_seed(0)
    model = create_model("inception_v4", num_classes=10, in_chans=1)
    x = torch.randn(2, 1, 75, 75)  # the smallest input: 1x1 after Reduction-B
    out = model(x)
    assert out.shape == (2, 10)
    out.logsumexp(1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.dropout.p == pytest.approx(0.2)  # "keep 0.8"
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.slow
def test_full_size_forward():
    model = create_model("inception_v4").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 299, 299)).shape == (1, 1000)
