"""BN-Inception (Ioffe & Szegedy 2015, Figure 5): size, compute, shapes, SE option."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.models import create_model
from cnnlab.models.bn_inception import FIGURE5, BNInceptionModule
from tests.helpers import gmacs, meta_model, n_params, new_meta_model


def test_parameter_count():
    # 11,285,224 with bias-free convs; the course's table says 11.3 M.
    params = n_params(meta_model("bn_inception"))
    assert params == 11_285_224
    assert params / 1e6 == pytest.approx(11.3, rel=0.01)


def test_macs_and_module_shapes_at_224():
    model = new_meta_model("bn_inception")  # the hooks stay on it
    shapes = {}
    for name in ("3b", "3c", "4d", "4e", "5b"):
        module = model.get_submodule(f"inception{name[0]}.{name}")
        module.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:])))
    assert gmacs(model, 224) == pytest.approx(2.03, rel=0.03)  # its forward pass fills shapes
    # Figure 5's rows add up to 608 channels after 4c/4d and 1056 after 4e (its size
    # column says 576 and 1024).
    assert shapes == {
        "3b": (320, 28, 28),
        "3c": (576, 14, 14),
        "4d": (608, 14, 14),
        "4e": (1056, 7, 7),
        "5b": (1024, 7, 7),
    }


def test_stride_two_modules_pass_the_pool_through():
    module = BNInceptionModule(320, FIGURE5["3c"])
    assert module.branch1x1 is None
    assert isinstance(module.branch_pool[0], nn.MaxPool2d) and isinstance(module.branch_pool[1], nn.Identity)
    out = module(torch.randn(1, 320, 9, 9))
    assert out.shape == (1, 160 + 96 + 320, 5, 5)  # odd sizes: pool and convs agree


def test_se_option():
    plain, se = meta_model("bn_inception"), meta_model("bn_inception", se=True)
    extra, chans = 0, 192
    for spec in FIGURE5.values():
        chans = spec.out_chans(chans)
        h = chans // 16
        extra += 2 * chans * h + h + chans
    assert n_params(se) - n_params(plain) == extra == 646_398


def test_small_forward_backward_and_batch_norm_modes():
    torch.manual_seed(0)
    model = create_model("bn_inception", num_classes=7, in_chans=1)
    x = torch.randn(2, 1, 32, 32)  # the smallest input: 1x1 after 4e
    out = model(x)
    assert out.shape == (2, 7)
    out.logsumexp(1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        # Eval uses running statistics, so a sample's output no longer depends on its batch.
        assert torch.allclose(model(x[:1]), model(x)[:1], atol=1e-5)


@pytest.mark.slow
def test_full_size_forward():
    model = create_model("bn_inception").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
