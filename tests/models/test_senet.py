"""SE-ResNet and SE-ResNeXt (Hu et al. 2018): sizes, compute, SE placement."""

from __future__ import annotations

import pytest
import torch

from cnnlab.layers.residual import Bottleneck
from cnnlab.layers.se import SqueezeExcite
from cnnlab.models import create_model, get_model_info
from tests.helpers import gmacs, meta_model, n_params, new_meta_model


# SE-ResNet-50: 28,088,024 (SE after the last BN, r = 16, FC biases); the rest as timm counts them.
@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("seresnet50", 28_088_024),
        ("seresnet101", 49_326_872),
        ("seresnet152", 66_821_848),
        ("seresnext50_32x4d", 27_559_896),
    ],
)
def test_parameter_count_is_exact(name, params):
    assert n_params(meta_model(name)) == params


# Table 2 of the paper, GFLOPs (multiply-adds) of the SE networks at 224x224.
@pytest.mark.parametrize(
    ("name", "paper_gmacs"),
    [("seresnet50", 3.87), ("seresnet101", 7.60), ("seresnet152", 11.32), ("seresnext50_32x4d", 4.25)],
)
def test_macs_match_table_2(name, paper_gmacs):
    assert gmacs(name, 224) == pytest.approx(paper_gmacs, rel=0.03)


def test_se_adds_its_fc_layers_and_almost_no_compute():
    se, plain = meta_model("seresnet50"), meta_model("resnet50")
    se_params = sum(p.numel() for m in se.modules() if isinstance(m, SqueezeExcite) for p in m.parameters())
    # per block 2 * C * C/16 weights + C/16 + C biases, for C = 256 (x3), 512 (x4), 1024 (x6), 2048 (x3)
    expected = sum(n * (2 * c * c // 16 + c // 16 + c) for c, n in [(256, 3), (512, 4), (1024, 6), (2048, 3)])
    assert se_params == expected == n_params(se) - n_params(plain)
    assert gmacs(se, 224) / gmacs(plain, 224) < 1.01  # "slight additional computational cost"


def test_every_bottleneck_has_se_before_the_addition():
    model = new_meta_model("seresnet50")  # its weights are replaced below
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 16 and all(isinstance(b.se, SqueezeExcite) for b in blocks)
    state = model.state_dict()
    assert state["layer1.0.se.fc1.weight"].shape == (16, 256, 1, 1)  # timm's names
    assert state["layer4.2.se.fc2.bias"].shape == (2048,)
    # SE-ResNet-50 = ResNet-50 + SE: ResNet-50 weights fill everything but the SE layers.
    missing, unexpected = model.load_state_dict(meta_model("resnet50").state_dict(), strict=False, assign=True)
    assert not unexpected and missing and all(".se." in k for k in missing)


def test_stride_placement_defaults():
    assert meta_model("seresnet50").layer2[0].conv1.stride == (2, 2)  # as the paper's ResNets
    assert meta_model("seresnext50_32x4d").layer2[0].conv2.stride == (2, 2)  # as ResNeXt
    assert meta_model("seresnet50", stride_in_3x3=True).layer2[0].conv2.stride == (2, 2)


def test_reduction_option_and_errors():
    model = meta_model("seresnet50", reduction=8)
    assert model.layer1[0].se.fc1.out_channels == 32
    assert n_params(model) > n_params(meta_model("seresnet50"))
    with pytest.raises(ValueError, match="got 0"):
        create_model("seresnet50", reduction=0)


def test_metadata():
    info = get_model_info("seresnet50")
    assert info.reported.top1 == pytest.approx(76.71) and info.reported.top5 == pytest.approx(93.38)
    assert info.family == "senet" and "Squeeze-and-Excitation" in info.paper
    assert get_model_info("seresnext50_32x4d").reported.top1 == pytest.approx(78.90)


def test_small_forward_backward():
    torch.manual_seed(0)
    model = create_model("seresnet50", num_classes=3, in_chans=1)
    out = model(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 3)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.layer1[0].se.fc1.weight.grad.abs().sum() > 0


@pytest.mark.slow
def test_full_size_forward():
    model = create_model("seresnext50_32x4d").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
