import pytest
import torch
from torch import nn

from cnnlab.models import create_model
from cnnlab.models.prelu_net import PReLUNet, PReLUNetConfig, SpatialPyramidPool, Stage
from tests.helpers import gmacs, meta_model, n_params, new_meta_model


def conv_params(c_in, c_out, k):
    return c_in * c_out * k * k + c_out + c_out  # weights, bias, channel-wise PReLU slopes


def test_model_a_structure_and_count():
    m = meta_model("prelu_net_a")
    weight_layers = [x for x in m.modules() if isinstance(x, (nn.Conv2d, nn.Linear))]
    assert len(weight_layers) == 19  # Table 3: depth 19
    convs = [x for x in weight_layers if isinstance(x, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96] + [256] * 5 + [512] * 10
    assert [c.kernel_size for c in convs] == [(7, 7)] + [(3, 3)] * 15
    assert convs[0].stride == (2, 2)
    prelus = [x for x in m.modules() if isinstance(x, nn.PReLU)]
    assert len(prelus) == 18 and all(p.num_parameters > 1 for p in prelus)  # channel-wise, not the last fc
    expected = (
        conv_params(3, 96, 7) + conv_params(96, 256, 3) + 4 * conv_params(256, 256, 3)
        + conv_params(256, 512, 3) + 9 * conv_params(512, 512, 3)
        + (512 * 63 * 4096 + 2 * 4096) + (4096 * 4096 + 2 * 4096) + (4096 * 1000 + 1000)
    )  # fmt: skip
    assert n_params(m) == expected == 178_032_072


def test_map_sizes_at_224():
    m = new_meta_model("prelu_net_a")  # the hooks stay on it
    sizes = {}
    for name, layer in m.features.named_children():
        layer.register_forward_hook(lambda mod, i, o, name=name: sizes.__setitem__(name, tuple(o.shape[1:])))
    with torch.device("meta"):
        m(torch.empty(1, 3, 224, 224))
    assert sizes["conv1"] == (96, 112, 112)
    assert sizes["pool1"] == (96, 56, 56) and sizes["conv2_5"] == (256, 56, 56)
    assert sizes["conv3_5"] == (512, 28, 28) and sizes["conv4_5"] == (512, 14, 14)


@pytest.mark.parametrize("name,paper_gmacs", [("prelu_net_a", 19.0), ("prelu_net_b", 23.2), ("prelu_net_c", 53.0)])
def test_complexity_table3(name, paper_gmacs):
    assert gmacs(name, 224) == pytest.approx(paper_gmacs, rel=0.03)


def test_spp_fixed_length_for_any_size():
    spp = SpatialPyramidPool((7, 3, 2, 1))
    for size in (5, 14, 23):
        assert spp(torch.randn(2, 8, size, size)).shape == (2, 8 * 63)
    x = torch.randn(1, 2, 4, 4)
    torch.testing.assert_close(spp(x)[:, -2:], x.amax((2, 3)))  # the 1x1 level is the global max


TINY = PReLUNetConfig(8, (Stage(3, 2, 2, 16), Stage(2, 2, 2, 32), Stage(2, 2, 2, 32)), (7, 3, 2, 1), fc_width=64)


def test_he_init_and_prelu_slope():
    torch.manual_seed(0)
    m = PReLUNet(TINY, num_classes=10)
    for layer in (m.features.conv2_2, m.classifier.fc1):
        fan_in = layer.weight[0].numel()
        expected_std = (2.0 / ((1 + 0.25**2) * fan_in)) ** 0.5  # Eq. 15 with a = 0.25
        assert layer.weight.std().item() == pytest.approx(expected_std, rel=0.05)
        assert layer.bias.abs().sum() == 0
    assert all(torch.all(p.weight == 0.25) for p in m.modules() if isinstance(p, nn.PReLU))


def test_small_forward_backward_and_dropout():
    torch.manual_seed(0)
    m = PReLUNet(TINY, num_classes=5, in_chans=1)  # model A's code path with narrow layers
    out = m(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 5)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        m.eval()
        torch.testing.assert_close(m(x), m(x))
        m.train()
        assert not torch.allclose(m(x), m(x))


def test_builder_options():
    m = meta_model("prelu_net_a", num_classes=10, in_chans=1)
    assert m.classifier.fc3.out_features == 10 and m.features.conv1.in_channels == 1


@pytest.mark.slow
def test_model_a_real_forward_backward():
    m = create_model("prelu_net_a", num_classes=10)
    out = m(torch.randn(1, 3, 32, 32))
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())
