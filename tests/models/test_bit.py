"""BiT ResNet-v2: exact sizes (meta device), weight standardisation, behaviour of the small one."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from cnnlab.models import create_model, get_model_info
from cnnlab.models.bit import StdConv2d
from tests.helpers import gmacs, meta_model, n_params

# Exact counts at 1000 classes with the head as a 1x1 conv with bias.
PARAMS = {"bit_r50x1": 25_549_352, "bit_r101x3": 387_934_888, "bit_r152x4": 936_533_224}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_count_is_exact(name):
    assert n_params(meta_model(name)) == PARAMS[name]


def test_r50x1_costs_what_resnet50_costs():
    # Same convolutions as ResNet-50 (GN and standardisation add no multiply-adds): 4.09 GMACs
    # at 224, torchvision's figure for resnet50.
    assert gmacs("bit_r50x1", 224) == pytest.approx(4.09, rel=0.03)


def test_structure_is_r152x4():
    model = meta_model("bit_r152x4")
    assert [len(model.body[i]) for i in range(4)] == [3, 8, 36, 3]
    assert model.root.conv.out_channels == 256
    unit = model.body.block2.unit01
    assert (unit.conv1.in_channels, unit.conv2.out_channels, unit.conv3.out_channels) == (1024, 512, 2048)
    assert unit.conv2.stride == (2, 2) and unit.downsample.stride == (2, 2)
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and all(m.num_groups == 32 for m in norms)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(isinstance(m, StdConv2d) for m in convs if m is not model.head.conv)
    assert model.head.conv.out_channels == 1000 and model.head.conv.in_channels == 8192


def test_weight_standardisation_ignores_the_kernel_scale_and_offset():
    torch.manual_seed(0)
    conv = StdConv2d(4, 6, 3, padding=1, bias=False)
    x = torch.randn(2, 4, 8, 8)
    y = conv(x)
    with torch.no_grad():
        conv.weight.mul_(5.0).add_(2.0)
    assert torch.allclose(conv(x), y, atol=1e-4)
    w = conv.weight
    w_std = (w - w.mean((1, 2, 3), keepdim=True)) / w.std((1, 2, 3), unbiased=False, keepdim=True)
    assert torch.allclose(y, F.conv2d(x, w_std, padding=1), atol=1e-4)


def test_options():
    model = meta_model("bit_r101x3", num_classes=37, in_chans=1)
    assert tuple(model(torch.empty(2, 1, 32, 32, device="meta")).shape) == (2, 37)
    assert get_model_info(model).input_size == (1, 480, 480)


@pytest.fixture(scope="module")
def r50():
    torch.manual_seed(0)
    return create_model("bit_r50x1", num_classes=10)


def test_no_batch_statistics_so_train_equals_eval(r50):
    # GroupNorm and no dropout: unlike a BN ResNet, the mode does not change the output.
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        r50.train()
        y_train = r50(x)
        r50.eval()
        y_eval = r50(x)
    assert torch.allclose(y_train, y_eval)
    # ... and one image's output does not depend on the rest of the batch.
    with torch.no_grad():
        assert torch.allclose(r50(x[:1]), y_eval[:1], rtol=1e-4, atol=1e-3)


def test_small_forward_and_backward_give_finite_gradients(r50):
    r50.train()
    x = torch.randn(2, *get_model_info("bit_r50x1").test_input_size)
    r50(x).logsumexp(1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in r50.parameters())
    assert r50.root.conv.weight.grad.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bit_r50x1", "bit_r101x3"])
def test_full_size_forward(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(1, *get_model_info(name).input_size))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
