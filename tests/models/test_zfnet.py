import pytest
import torch
from torch import nn

from cnnlab.layers.lrn import LocalResponseNorm
from cnnlab.models import create_model, get_model_info
from tests.helpers import macs, meta_model, n_params, new_meta_model


def test_parameter_count():
    m = meta_model("zfnet")
    convs = [x for x in m.features if isinstance(x, nn.Conv2d)]
    # 7x7x3x96, 5x5x96x256, 3x3x256x384, 3x3x384x384, 3x3x384x256 weights + biases.
    assert [n_params(c) for c in convs] == [14_208, 614_656, 885_120, 1_327_488, 884_992]
    assert [c.groups for c in convs] == [1] * 5  # dense, unlike AlexNet
    assert n_params(m) == 62_357_608


def test_figure3_map_sizes():
    m = new_meta_model("zfnet")  # the hooks stay on it
    shapes = []
    for layer in m.features:
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            layer.register_forward_hook(lambda mod, i, o: shapes.append(tuple(o.shape[1:])))
    with torch.device("meta"):
        m(torch.empty(1, 3, 224, 224))
    assert shapes == [
        (96, 110, 110), (96, 55, 55),  # layer 1: conv, pool
        (256, 26, 26), (256, 13, 13),  # layer 2
        (384, 13, 13), (384, 13, 13), (256, 13, 13), (256, 6, 6),  # layers 3-5, pool
    ]  # fmt: skip


def test_macs():
    # Hand count from the map sizes: sum of out_h*out_w*out_c*(in_c*k*k) plus FC weights.
    expected = (
        110 * 110 * 96 * 3 * 49 + 26 * 26 * 256 * 96 * 25 + 13 * 13 * 384 * 256 * 9
        + 13 * 13 * 384 * 384 * 9 + 13 * 13 * 256 * 384 * 9 + 9216 * 4096 + 4096 * 4096 + 4096 * 1000
    )  # fmt: skip
    assert macs("zfnet", 224) == expected
    assert expected / 1e9 == pytest.approx(1.17, abs=0.01)


def test_normalisation_after_pools_1_and_2():
    kinds = [type(x).__name__ for x in meta_model("zfnet").features]
    assert kinds[:8] == ["Conv2d", "ReLU", "MaxPool2d", "LocalResponseNorm"] * 2
    assert sum(isinstance(x, LocalResponseNorm) for x in meta_model("zfnet").features) == 2


def test_small_forward_backward_options_and_dropout():
    info = get_model_info("zfnet")
    torch.manual_seed(0)
    m = create_model("zfnet", num_classes=5, in_chans=1)
    out = m(torch.randn(2, 1, *info.test_input_size[1:]))
    assert out.shape == (2, 5)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    with torch.no_grad():
        with pytest.raises(RuntimeError):  # test_input_size is the smallest that works
            m(torch.randn(1, 1, info.test_input_size[1] - 1, info.test_input_size[2] - 1))
        x = torch.randn(2, 9216)
        m.classifier.eval()
        torch.testing.assert_close(m.classifier(x), m.classifier(x))
        m.classifier.train()
        assert not torch.allclose(m.classifier(x), m.classifier(x))
    assert m.features[0].weight.std().item() == pytest.approx(0.01, rel=0.1)  # Section 3 init
