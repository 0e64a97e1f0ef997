import pytest
import torch
from torch import nn

from cnnlab.layers.lrn import LocalResponseNorm
from cnnlab.layers.se import SqueezeExcite
from cnnlab.models import create_model, list_models
from tests.helpers import gmacs, meta_model, n_params

# Table 2 of the paper (A, A-LRN, B, C, D, E); the _bn counts are torchvision's for 11/13/16/19.
PARAMS = {
    "vgg11": 132_863_336,
    "vgg11_lrn": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16_c": 133_638_952,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840,
    "vgg13_bn": 133_053_736,
    "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248,
    "vgg11_lrn_bn": 132_868_840,
    "vgg16_c_bn": 133_647_400,
}


def test_all_registered():
    assert set(list_models("vgg*")) == set(PARAMS)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts(name):
    assert n_params(meta_model(name)) == PARAMS[name]


def test_vgg16_macs():
    assert gmacs("vgg16", 224) == pytest.approx(15.47, rel=0.03)


# (state-dict entries, a few characteristic keys with shapes) of torchvision's variants.
TORCHVISION = {
    "vgg11": (22, {"features.0.weight": (64, 3, 3, 3), "features.18.weight": (512, 512, 3, 3)}),
    "vgg13": (26, {"features.2.weight": (64, 64, 3, 3), "features.22.weight": (512, 512, 3, 3)}),
    "vgg16": (32, {"features.28.weight": (512, 512, 3, 3), "features.5.bias": (128,)}),
    "vgg19": (38, {"features.34.weight": (512, 512, 3, 3)}),
    "vgg11_bn": (62, {"features.1.running_mean": (64,), "features.25.weight": (512, 512, 3, 3)}),
    "vgg13_bn": (76, {"features.31.weight": (512, 512, 3, 3), "features.32.num_batches_tracked": ()}),
    "vgg16_bn": (97, {"features.40.weight": (512, 512, 3, 3), "features.41.running_var": (512,)}),
    "vgg19_bn": (118, {"features.49.weight": (512, 512, 3, 3), "features.50.weight": (512,)}),
}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_state_dict(name):
    entries, keys = TORCHVISION[name]
    sd = meta_model(name).state_dict()
    assert len(sd) == entries
    for key, shape in keys.items():
        assert tuple(sd[key].shape) == shape, key
    assert tuple(sd["classifier.0.weight"].shape) == (4096, 25088)
    assert tuple(sd["classifier.3.weight"].shape) == (4096, 4096)
    assert tuple(sd["classifier.6.weight"].shape) == (1000, 4096)


def test_column_c_has_1x1_convs_and_lrn_column():
    kernels = [m.kernel_size for m in meta_model("vgg16_c").features if isinstance(m, nn.Conv2d)]
    assert kernels.count((1, 1)) == 3 and kernels[-1] == (1, 1) and len(kernels) == 13
    feats = list(meta_model("vgg11_lrn").features)
    assert isinstance(feats[2], LocalResponseNorm)  # conv, relu, LRN, pool
    assert isinstance(feats[3], nn.MaxPool2d)


def test_se_option():
    m = meta_model("vgg16", se=True)
    feats = list(m.features)
    se_at = [i for i, x in enumerate(feats) if isinstance(x, SqueezeExcite)]
    assert len(se_at) == 5 and all(isinstance(feats[i + 1], nn.MaxPool2d) for i in se_at)
    se_params = sum(2 * c * (c // 16) + c + c // 16 for c in (64, 128, 256, 512, 512))
    assert n_params(m) == PARAMS["vgg16"] + se_params


@pytest.fixture(scope="module")
def small_vgg():
    """One real model, built once: the 25088x4096 FC layer dominates the cost."""
    torch.manual_seed(0)
    return create_model("vgg11_bn", num_classes=10, in_chans=1, se=True)


def test_small_forward_backward_and_train_eval(small_vgg):
    m = small_vgg
    out = m(torch.randn(2, 1, 32, 32))  # test_input_size: five 2x2 pools leave 1x1
    assert out.shape == (2, 10)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    with torch.no_grad():
        x = torch.randn(2, 25088)
        m.classifier.eval()
        torch.testing.assert_close(m.classifier(x), m.classifier(x))
        m.classifier.train()
        assert not torch.allclose(m.classifier(x), m.classifier(x))  # dropout


def test_glorot_init(small_vgg):
    w = small_vgg.features[0].weight
    bound = (6 / (1 * 9 + 64 * 9)) ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert small_vgg.classifier[0].bias.abs().sum() == 0
