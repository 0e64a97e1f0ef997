import pytest
import torch
from torch import nn

from cnnlab.layers.lrn import LocalResponseNorm
from cnnlab.models import create_model, get_model_info
from tests.helpers import gmacs, meta_model, n_params, new_meta_model


def test_paper_parameter_count_and_layer_weights():
    m = meta_model("alexnet")
    assert n_params(m) == 60_965_224
    convs = [x for x in m.features if isinstance(x, nn.Conv2d)]
    fcs = [x for x in m.classifier if isinstance(x, nn.Linear)]
    assert [c.weight.numel() for c in convs] == [34_848, 307_200, 884_736, 663_552, 442_368]
    assert [f.weight.numel() for f in fcs] == [37_748_736, 16_777_216, 4_096_000]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]  # conv3 sees both GPUs' maps


def test_paper_neurons_per_layer():
    # Section 3.5: 290,400-186,624-64,896-64,896-43,264-4096-4096-1000 at 227x227.
    m = new_meta_model("alexnet")  # the hooks stay on it
    sizes = []
    for layer in [*m.features, *m.classifier]:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            layer.register_forward_hook(lambda mod, i, o: sizes.append(o[0].numel()))
    with torch.device("meta"):
        m(torch.empty(1, 3, 227, 227))
    assert sizes == [290_400, 186_624, 64_896, 64_896, 43_264, 4_096, 4_096, 1_000]


def test_paper_macs():
    assert gmacs("alexnet", (3, 227, 227)) == pytest.approx(0.72, rel=0.03)


def test_paper_lrn_and_pool_placement():
    kinds = [type(x).__name__ for x in meta_model("alexnet").features]
    # conv1 relu lrn pool | conv2 relu lrn pool | conv3 relu | conv4 relu | conv5 relu pool
    assert kinds == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d"] * 2 + ["Conv2d", "ReLU"] * 3 + ["MaxPool2d"]
    lrn = next(x for x in meta_model("alexnet").features if isinstance(x, LocalResponseNorm))
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)
    pools = [x for x in meta_model("alexnet").features if isinstance(x, nn.MaxPool2d)]
    assert all(p.kernel_size == 3 and p.stride == 2 for p in pools)  # overlapping


class _Lazy(dict):
    def __missing__(self, name):
        torch.manual_seed(0)
        self[name] = create_model(name, num_classes=7, in_chans=1)
        return self[name]


@pytest.fixture(scope="module")
def small():
    """Real (CPU) models with a small head, built once each: the 4096-wide FC layers are costly."""
    return _Lazy()


def test_paper_init_biases(small):
    m = small["alexnet"]
    convs = [x for x in m.features if isinstance(x, nn.Conv2d)]
    fcs = [x for x in m.classifier if isinstance(x, nn.Linear)]
    assert [float(l.bias[0].detach()) for l in convs + fcs] == [0, 1, 0, 1, 1, 1, 1, 0]
    assert convs[2].weight.std().item() == pytest.approx(0.01, rel=0.05)


def test_onetower_matches_torchvision_state_dict():
    m = meta_model("alexnet_onetower")
    sd = m.state_dict()
    assert n_params(m) == 61_100_840
    assert len(sd) == 16
    expected = {
        "features.0.weight": (64, 3, 11, 11),
        "features.3.weight": (192, 64, 5, 5),
        "features.6.weight": (384, 192, 3, 3),
        "features.8.weight": (256, 384, 3, 3),
        "features.10.bias": (256,),
        "classifier.1.weight": (4096, 9216),
        "classifier.4.weight": (4096, 4096),
        "classifier.6.weight": (1000, 4096),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert not any(isinstance(x, LocalResponseNorm) for x in m.features)
    assert gmacs(m, (3, 224, 224)) == pytest.approx(0.714, rel=0.03)


def test_dropout_placement_and_train_eval(small):
    paper = [type(x).__name__ for x in meta_model("alexnet").classifier]
    tv = [type(x).__name__ for x in meta_model("alexnet_onetower").classifier]
    assert paper == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert tv == ["Dropout", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"]
    head = small["alexnet"].classifier  # the only place the model differs between train and eval
    x = torch.randn(2, 9216)
    with torch.no_grad():
        head.eval()
        torch.testing.assert_close(head(x), head(x))
        head.train()
        assert not torch.allclose(head(x), head(x))


@pytest.mark.parametrize("name", ["alexnet", pytest.param("alexnet_onetower", marks=pytest.mark.slow)])
def test_small_forward_backward_and_options(small, name):
    info = get_model_info(name)
    m = small[name]
    x = torch.randn(2, 1, *info.test_input_size[1:])
    out = m(x)
    assert out.shape == (2, 7)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    assert get_model_info(m).input_size == (1, *info.input_size[1:])
    # test_input_size is the smallest input: one pixel less fails.
    with torch.no_grad(), pytest.raises(RuntimeError):
        m(torch.randn(1, 1, info.test_input_size[1] - 1, info.test_input_size[2] - 1))
