"""Feature extraction (cnnlab.models.features): every family's stages, channels and reductions."""

from __future__ import annotations

import pytest
import torch

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model, get_model_info, list_models
from cnnlab.models.features import (
    TRUNKS,
    ImageModel,
    feature_stages,
    features,
    forward_features,
)
from tests.models.test_sweep import small_input

# One (small) model per family: its stages' (channels, reduction), as the architectures define
# them (ResNet-50's 256/512/1024/2048 at 1/4..1/32; ViT's one token grid at 1/16), and the
# input side to test at: the sweep's small size, or the canonical one where a small input
# rounds a reduction to another power of two (AlexNet 67 px: 67/1 -> 64).
CASES = {
    "airbench": ("airbench94", 32, [(24, 1), (64, 2), (256, 4), (256, 8)]),
    "alexnet": ("alexnet", 227, [(96, 4), (256, 8), (256, 16), (256, 32)]),
    "bit": ("bit_r50x1", 64, [(256, 4), (512, 8), (1024, 16), (2048, 32)]),
    "bn_inception": ("bn_inception", 64, [(64, 2), (192, 4), (320, 8), (608, 16), (1024, 32)]),
    "convnext": ("convnext_t", 64, [(96, 4), (192, 8), (384, 16), (768, 32)]),
    "densenet": ("densenet121", 64, [(64, 2), (256, 4), (512, 8), (1024, 16), (1024, 32)]),
    "efficientnet": ("efficientnet_b0", 64, [(16, 2), (24, 4), (40, 8), (112, 16), (1280, 32)]),
    "googlenet": ("googlenet", 64, [(64, 2), (192, 4), (480, 8), (832, 16), (1024, 32)]),
    "inception_resnet": ("inception_resnet_v1", 299, [(256, 8), (896, 16), (1792, 32)]),
    "inception_v4": ("inception_v4", 299, [(384, 8), (1024, 16), (1536, 32)]),
    "lenet": ("lenet5", 32, [(6, 1), (6, 2), (16, 4), (16, 8), (120, 32)]),
    "nin": ("nin_cifar", 32, [(96, 1), (192, 2), (10, 4)]),
    "prelu_net": ("prelu_net_a", 64, [(96, 2), (256, 4), (512, 8), (512, 16)]),
    "regnet": ("regnety_4gf", 64, [(32, 2), (128, 4), (192, 8), (512, 16), (1088, 32)]),
    "resnet": ("resnet18", 64, [(64, 2), (64, 4), (128, 8), (256, 16), (512, 32)]),
    "resnet_cifar": ("resnet20", 32, [(16, 1), (32, 2), (64, 4)]),
    "resnext": ("resnext50_32x4d", 64, [(64, 2), (256, 4), (512, 8), (1024, 16), (2048, 32)]),
    "senet": ("seresnet50", 64, [(64, 2), (256, 4), (512, 8), (1024, 16), (2048, 32)]),
    "swin": ("swin_t", 64, [(96, 4), (192, 8), (384, 16), (768, 32)]),
    "vgg": ("vgg11", 64, [(64, 1), (128, 2), (256, 4), (512, 8), (512, 16), (512, 32)]),
    "vit": ("deit_tiny", 224, [(192, 16)]),
    "zfnet": ("zfnet", 224, [(96, 2), (96, 4), (256, 8), (256, 16), (256, 32)]),
}


def test_every_family_with_feature_maps_has_a_trunk_and_a_case() -> None:
    families = {get_model_info(n).family for n in list_models()}
    assert families - set(TRUNKS) == {"mlp"}  # no feature maps: a new family must be added here
    assert set(CASES) == set(TRUNKS)


SLOW = {"alexnet", "bn_inception", "inception_resnet", "inception_v4", "prelu_net", "vgg"}  # 5-8 s each on 2 cores


@pytest.mark.parametrize("family", [pytest.param(f, marks=[pytest.mark.slow] if f in SLOW else []) for f in sorted(CASES)])
def test_stages_have_the_declared_channels_and_reductions(family: str) -> None:
    name, side, expected = CASES[family]
    declared = feature_stages(name)
    assert [(s.channels, s.reduction) for s in declared] == expected
    assert get_model_info(name).feature_stages == declared
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.randn(1, get_model_info(name).input_size[0], side, side)
    with torch.no_grad():
        maps = features(model, x)
    assert list(maps) == [s.name for s in declared]
    for stage, out in zip(declared, maps.values()):
        assert out.dim() == 4 and out.shape[:2] == (1, stage.channels), stage
        assert 2 ** round(torch.log2(torch.tensor(side / out.shape[-1])).item()) == stage.reduction, (stage, out.shape)


def test_forward_features_is_what_the_classifier_reads() -> None:
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=7).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        fmap = cnnlab.forward_features(model, x)
        assert fmap.shape == (2, 512, 2, 2)
        assert torch.allclose(model.fc(fmap.mean((2, 3))), model(x), atol=1e-6)


def test_vit_tokens_become_the_patch_grid_without_the_class_token() -> None:
    torch.manual_seed(0)
    model = create_model("deit_tiny").eval()
    x = torch.randn(1, 3, 224, 224)
    tokens = []
    handle = model.encoder.register_forward_hook(lambda m, i, o: tokens.append(o))
    with torch.no_grad():
        grid = forward_features(model, x)
    handle.remove()
    assert grid.shape == (1, 192, 14, 14)
    assert torch.equal(grid.flatten(2).transpose(1, 2), tokens[0][:, 1:])  # row-major patches, class token dropped


def test_swin_is_channels_first_and_stages_by_index_or_name() -> None:
    model = create_model("swin_t").eval()
    with torch.no_grad():
        maps = features(model, torch.randn(1, 3, 64, 64), stages=[0, "features.5"])
    assert [tuple(t.shape) for t in maps.values()] == [(1, 96, 16, 16), (1, 384, 4, 4)]


def test_bad_stage_and_a_model_without_feature_maps() -> None:
    model = create_model("resnet20")
    with pytest.raises(CnnlabError, match=r"model resnet20 has no stage 3; its stages are 0\.\.2: layer1, layer2, layer3"):
        features(model, torch.randn(1, 3, 32, 32), stages=[3])
    with pytest.raises(CnnlabError, match=r"model mlp \(mlp\) has no feature maps to extract"):
        features(create_model("mlp"), torch.randn(1, 1, 28, 28))


# --- model.forward_features(x), the method every registered network inherits ----------------

TRUNK_MODELS = [n for n in list_models() if get_model_info(n).family in TRUNKS]
FAST_SWEEP = {name for name, _, _ in CASES.values()}  # one model per family in the default run
# Real values for the default run's models up to this many parameters; the rest run on the meta
# device (shapes only): a family's other models share its class, so on meta they show that each
# build has the method and that its output agrees in shape, at a fraction of the cost.
REAL_LIMIT = 30_000_000


_small = small_input  # the registry sweep's cheap options and input (tests/models/test_sweep.py)


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n in FAST_SWEEP else [pytest.mark.slow]) for n in TRUNK_MODELS])
def test_the_method_returns_what_the_function_does(name: str) -> None:
    options, size = _small(name)
    device = "cpu" if name in FAST_SWEEP and get_model_info(name).params <= REAL_LIMIT else "meta"
    torch.manual_seed(0)
    with torch.device(device):
        model = create_model(name, **options).eval()
        x = torch.randn(2, *size)
    assert isinstance(model, ImageModel)
    with torch.no_grad():
        got, want = model.forward_features(x), forward_features(model, x)
    assert got.dim() == 4 and got.shape == want.shape and got.device == want.device
    if device == "cpu":
        # Exactly equal (an untrained resnet1202's eval-mode maps overflow to NaN: equal too).
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


def test_the_method_on_the_paper_lenet() -> None:
    torch.manual_seed(0)
    paper = create_model("lenet5", paper=True).eval()  # a class of its own (LeNet5Paper)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        got = paper.forward_features(x)
        assert got.shape == (2, 120, 1, 1) and torch.equal(got, forward_features(paper, x))


def test_the_method_on_a_model_without_feature_maps_is_the_functions_error() -> None:
    for name in ("mlp", "perceptron"):
        model = create_model(name)
        assert isinstance(model, ImageModel)
        with pytest.raises(CnnlabError, match=rf"^model {name} \(mlp\) has no feature maps to extract; families with some: airbench, "):
            model.forward_features(torch.randn(1, 1, 28, 28))


def test_the_base_class_adds_no_state() -> None:
    # State-dict keys are nn.Module's: the torchvision-named keys of tests/models/test_weights.py.
    assert not list(ImageModel().state_dict()) and not list(ImageModel().named_modules())[1:]
