import pytest
import torch
from torch import nn

from cnnlab.models import create_model, get_model_info
from cnnlab.models.nin import MlpConv
from tests.helpers import macs, meta_model, n_params, new_meta_model


def test_parameter_counts():
    # ImageNet: conv1 11x11x3x96 ... cccp8 1024x1000 (Caffe model zoo nin_imagenet).
    assert n_params(meta_model("nin")) == 7_595_176
    assert n_params(meta_model("nin_cifar")) == 966_986


def test_imagenet_map_sizes_and_macs():
    m = new_meta_model("nin")  # the hooks stay on it
    shapes = {}
    for name, layer in m.features.named_children():
        layer.register_forward_hook(lambda mod, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:])))
    with torch.device("meta"):
        out = m(torch.empty(1, 3, 224, 224))
    assert out.shape == (1, 1000)
    assert shapes["mlpconv1"] == (96, 54, 54) and shapes["pool1"] == (96, 27, 27)
    assert shapes["pool2"] == (256, 13, 13) and shapes["pool3"] == (384, 6, 6)
    assert shapes["mlpconv4"] == (1000, 6, 6)  # one map per class, then global average
    expected = (
        54 * 54 * (96 * 363 + 2 * 96 * 96)
        + 27 * 27 * (256 * 96 * 25 + 2 * 256 * 256)
        + 13 * 13 * (384 * 256 * 9 + 2 * 384 * 384)
        + 6 * 6 * (1024 * 384 * 9 + 1024 * 1024 + 1000 * 1024)
    )
    assert macs(m, 224) == expected
    assert expected / 1e9 == pytest.approx(1.10, abs=0.01)  # the docstring's "about 1.1 GMACs"


def test_no_fully_connected_layers():
    for name in ("nin", "nin_cifar"):
        m = meta_model(name)
        assert not any(isinstance(x, nn.Linear) for x in m.modules())
        blocks = [x for x in m.modules() if isinstance(x, MlpConv)]
        assert all(b.cccp1.kernel_size == (1, 1) and b.cccp2.kernel_size == (1, 1) for b in blocks)


def test_cifar_model_runs_on_cifar_and_trains():
    assert get_model_info("nin_cifar").test_input_size == (3, 32, 32)
    torch.manual_seed(0)
    m = create_model("nin_cifar")
    x = torch.randn(4, 3, 32, 32)
    out = m(x)
    assert out.shape == (4, 10)
    out.logsumexp(1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m(x), m(x))
        m.train()
        assert not torch.allclose(m(x), m(x))  # dropout after pools 1 and 2


def test_imagenet_model_smallest_input_and_options():
    info = get_model_info("nin")
    m = create_model("nin", num_classes=7, in_chans=1)
    assert m.features.mlpconv4.cccp2.out_channels == 7
    out = m(torch.randn(2, 1, *info.test_input_size[1:]))
    assert out.shape == (2, 7)
    out.sum().backward()
    with torch.no_grad(), pytest.raises(RuntimeError):
        m(torch.randn(1, 1, 32, 32))  # CIFAR size is too small for the ImageNet stem: use nin_cifar
    with torch.no_grad(), pytest.raises(RuntimeError):
        m(torch.randn(1, 1, info.test_input_size[1] - 1, info.test_input_size[2] - 1))
