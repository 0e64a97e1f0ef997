import pytest
import torch

from cnnlab.layers.dense import DenseLayer
from cnnlab.models.registry import create_model, get_model_info
from tests.helpers import gmacs, meta_model, n_params

# DenseNet-BC parameter counts (torchvision's densenet121/169/201/161 have the same).
PARAMS = {"densenet121": 7_978_856, "densenet169": 14_149_480, "densenet201": 20_013_928, "densenet161": 28_681_000}
# G multiply-accumulates at 224x224: torchvision's "GFLOPS" (DenseNet-121: the course's 2.83).
GMACS = {"densenet121": 2.83, "densenet169": 3.36, "densenet201": 4.29, "densenet161": 7.73}
DENSE_LAYERS = {"densenet121": 58, "densenet169": 82, "densenet201": 98, "densenet161": 78}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts(name):
    assert n_params(meta_model(name)) == PARAMS[name]


@pytest.mark.parametrize("name", sorted(GMACS))
def test_macs_at_224(name):
    assert gmacs(name, 224) == pytest.approx(GMACS[name], rel=0.03)


@pytest.mark.parametrize("name", sorted(DENSE_LAYERS))
def test_state_dict_matches_torchvision_layout(name):
    sd = meta_model(name).state_dict()
    # torchvision: conv0 (1) + norm0 (5: weight, bias, running mean/var, batches tracked)
    # + 12 per dense layer + 6 per transition + norm5 (5) + classifier (2).
    assert len(sd) == 1 + 5 + 12 * DENSE_LAYERS[name] + 3 * 6 + 5 + 2
    assert sum(1 for m in meta_model(name).modules() if isinstance(m, DenseLayer)) == DENSE_LAYERS[name]


def test_densenet121_characteristic_keys():
    shapes = {k: tuple(v.shape) for k, v in meta_model("densenet121").state_dict().items()}
    expected = {
        "features.conv0.weight": (64, 3, 7, 7),
        "features.norm0.running_var": (64,),
        "features.denseblock1.denselayer1.norm1.weight": (64,),
        "features.denseblock1.denselayer1.conv1.weight": (128, 64, 1, 1),
        "features.denseblock1.denselayer1.conv2.weight": (32, 128, 3, 3),
        "features.denseblock1.denselayer6.norm1.weight": (224,),
        "features.transition1.conv.weight": (128, 256, 1, 1),
        "features.denseblock3.denselayer24.conv1.weight": (128, 992, 1, 1),
        "features.transition3.norm.weight": (1024,),
        "features.denseblock4.denselayer16.conv2.weight": (32, 128, 3, 3),
        "features.norm5.weight": (1024,),
        "classifier.weight": (1000, 1024),
        "classifier.bias": (1000,),
    }
    for key, shape in expected.items():
        assert shapes[key] == shape, key
    assert not any(k.endswith("conv1.bias") or k.endswith("conv2.bias") for k in shapes)


def test_densenet161_uses_k48_and_a_96_channel_stem():
    shapes = {k: tuple(v.shape) for k, v in meta_model("densenet161").state_dict().items()}
    assert shapes["features.conv0.weight"] == (96, 3, 7, 7)
    assert shapes["features.denseblock1.denselayer1.conv1.weight"] == (192, 96, 1, 1)
    assert shapes["classifier.weight"] == (1000, 2208)


def test_feature_map_shapes_at_224_and_at_the_smallest_input():
    features = meta_model("densenet121").features.eval()
    assert features(torch.empty(1, 3, 224, 224, device="meta")).shape == (1, 1024, 7, 7)
    smallest = get_model_info("densenet121").test_input_size
    assert features(torch.empty(1, *smallest, device="meta")).shape == (1, 1024, 1, 1)
    with pytest.raises(RuntimeError):  # one pixel less and the last transition has nothing to pool
        features(torch.empty(1, 3, smallest[1] - 1, smallest[2] - 1, device="meta"))


def test_options_num_classes_in_chans_memory_efficient():
    m = meta_model("densenet121", num_classes=10, in_chans=1, memory_efficient=True)
    assert m.classifier.out_features == 10
    assert m.features.conv0.in_channels == 1
    assert all(layer.memory_efficient for layer in m.modules() if isinstance(layer, DenseLayer))
    assert get_model_info(m).input_size == (1, 224, 224)
    assert "memory_efficient" in get_model_info("densenet121").options


def test_small_forward_backward_and_batch_norm_modes():
    torch.manual_seed(0)
    size = get_model_info("densenet121").test_input_size
    model = create_model("densenet121", num_classes=5)
    x = torch.randn(2, *size)
    out = model(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        # Batch statistics in training, running statistics in evaluation.
        assert not torch.allclose(model(x), out.detach())


@pytest.mark.slow
def test_full_size_forward():
    model = create_model("densenet121").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
