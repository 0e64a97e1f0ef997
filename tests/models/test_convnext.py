"""ConvNeXt: exact sizes, compute, torchvision key names, layer scale, drop path, behaviour."""

from __future__ import annotations

import pytest
import torch

from cnnlab.models import create_model, get_model_info
from cnnlab.models.convnext import LayerNorm2d
from tests.helpers import gmacs, meta_model, n_params

PARAMS = {"convnext_t": 28_589_128, "convnext_s": 50_223_688, "convnext_b": 88_591_464}
GMACS = {"convnext_t": 4.46, "convnext_s": 8.7, "convnext_b": 15.4}  # Table 1 "FLOPs" at 224


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_count_is_exact(name):
    assert n_params(meta_model(name)) == PARAMS[name]


@pytest.mark.parametrize("name", sorted(GMACS))
def test_macs_match_the_paper(name):
    assert gmacs(name, get_model_info(name).input_size) == pytest.approx(GMACS[name], rel=0.03)


def test_stage_layout_is_section_3():
    model = meta_model("convnext_s")
    assert [len(model.features[i]) for i in (1, 3, 5, 7)] == [3, 3, 27, 3]
    widths = [model.features[i][0].block[0].in_channels for i in (1, 3, 5, 7)]
    assert widths == [96, 192, 384, 768]
    assert model.features[0][0].kernel_size == (4, 4) and model.features[0][0].stride == (4, 4)


def test_state_dict_matches_torchvision_convnext_tiny():
    sd = meta_model("convnext_t").state_dict()
    expected = {
        "features.0.0.weight": (96, 3, 4, 4),
        "features.0.1.weight": (96,),
        "features.1.0.block.0.weight": (96, 1, 7, 7),
        "features.1.0.block.2.weight": (96,),
        "features.1.0.block.3.weight": (384, 96),
        "features.1.0.block.5.weight": (96, 384),
        "features.1.0.layer_scale": (96, 1, 1),
        "features.2.0.bias": (96,),
        "features.2.1.weight": (192, 96, 2, 2),
        "features.5.8.block.3.weight": (1536, 384),
        "features.7.2.layer_scale": (768, 1, 1),
        "classifier.0.weight": (768,),
        "classifier.2.weight": (1000, 768),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    # stem 4 + 18 blocks x 9 + 3 downsampling x 4 + head norm 2 + linear 2
    assert len(sd) == 182


def test_layer_scale_and_drop_path_follow_the_paper():
    model = meta_model("convnext_b")
    blocks = [b for i in (1, 3, 5, 7) for b in model.features[i]]
    rates = [b.stochastic_depth.p for b in blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.5)  # 0.5 for ConvNeXt-B (Table 5)
    assert rates == sorted(rates)
    assert meta_model("convnext_t").features[7][2].stochastic_depth.p == pytest.approx(0.1)
    fresh = create_model("convnext_t", num_classes=2)
    assert torch.all(fresh.features[1][0].layer_scale == 1e-6)


def test_layernorm2d_normalises_channels_at_each_position():
    norm = LayerNorm2d(8, eps=1e-6)
    x = torch.randn(2, 8, 3, 5) * 4 + 3
    y = norm(x)
    assert torch.allclose(y.mean(1), torch.zeros(2, 3, 5), atol=1e-5)
    assert torch.allclose(y.var(1, unbiased=False), torch.ones(2, 3, 5), atol=1e-3)


def test_options():
    model = meta_model("convnext_t", num_classes=5, in_chans=1)
    assert tuple(model(torch.empty(3, 1, 32, 32, device="meta")).shape) == (3, 5)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("convnext_t", num_classes=10)


def test_drop_path_is_active_only_in_training(tiny):
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        for block in (b for i in (1, 3, 5, 7) for b in tiny.features[i]):
            block.layer_scale.fill_(1.0)  # make the residual branches visible in the output
        tiny.eval()
        assert torch.equal(tiny(x), tiny(x))
        tiny.train()
        assert not torch.allclose(tiny(x), tiny(x))
        for block in (b for i in (1, 3, 5, 7) for b in tiny.features[i]):
            block.layer_scale.fill_(1e-6)


def test_small_forward_and_backward_give_finite_gradients(tiny):
    tiny.train()
    x = torch.randn(2, *get_model_info("convnext_t").test_input_size)
    tiny(x).logsumexp(1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in tiny.parameters())
    assert tiny.features[0][0].weight.grad.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["convnext_t", "convnext_s", "convnext_b"])
def test_full_size_forward(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(1, *get_model_info(name).input_size))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
