"""Every registered model, the same checks (timm-style sweep).

Default run: the canonical-size forward on the meta device (shapes only, no memory) for all
models, and a real forward + backward at each model's smallest input for all but the giants.
The giants' real forward + backward is in the slow run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.layers.drop_path import DropPath
from cnnlab.models import (
    create_model,
    get_model_info,
    list_models,
    main_output,
    split_outputs,
)

REAL_PARAM_LIMIT = 70_000_000  # above this, real forward/backward only in the slow run


def small_input(name: str) -> tuple[dict, tuple[int, int, int]]:
    """Options and input size for a cheap real run of ``name``."""
    info = get_model_info(name)
    if info.test_input_size is not None:
        return {}, info.test_input_size
    if "image_size" in info.options:  # ViT/DeiT: position embeddings sized to the input
        return {"image_size": 32}, (info.input_size[0], 32, 32)
    return {}, info.input_size


def param_count(name: str) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in create_model(name).parameters())


ALL = list_models()
COUNTS = {name: param_count(name) for name in ALL}


def test_registry_is_full():
    # The course's zoo: the foundation models and both waves of classic networks.
    for name in ("perceptron", "mlp", "lenet5", "alexnet", "vgg16", "nin", "googlenet", "bn_inception",
                 "inception_v4", "inception_resnet_v2", "resnet50", "resnet20", "plain56", "resnext50_32x4d",
                 "seresnet50", "densenet121", "vit_b_16", "deit_tiny", "swin_t", "zfnet", "prelu_net_a",
                 "regnety_4gf", "efficientnet_b3", "convnext_t", "bit_r101x3"):
        assert name in ALL, name


@pytest.mark.parametrize("name", ALL)
def test_metadata_and_meta_forward(name):
    info = get_model_info(name)
    assert info.paper and len(info.input_size) == 3
    if info.reported is not None:
        assert info.reported.source, f"{name}: reported accuracy without a source"
        assert info.reported.top1 is None or 0 < info.reported.top1 < 100
    with torch.device("meta"):
        model = create_model(name, num_classes=7, in_chans=info.input_size[0])
        model.eval()
        out = model(torch.empty(2, *info.input_size))
    built = get_model_info(model)
    assert built.name == name and built.input_size == info.input_size and built.paper == info.paper
    # The record is one attribute; the old per-field stamps are gone.
    assert not [a for a in ("model_name", "paper", "default_input_size", "reported") if hasattr(model, a)]
    assert tuple(out.shape) == (2, 7)


@pytest.mark.parametrize("name", ALL)
def test_published_parameter_counts_are_exact(name):
    info = get_model_info(name)
    assert info.params is not None, f"{name}: no parameter count in its registry entry"
    assert COUNTS[name] == info.params
    for variant in info.params_variants:
        with torch.device("meta"):
            model = create_model(name, **variant.options)
        assert sum(p.numel() for p in model.parameters()) == variant.count, (name, variant.options)


def _real_check(name: str) -> None:
    torch.manual_seed(0)
    options, size = small_input(name)
    model = create_model(name, num_classes=5, in_chans=size[0], **options)
    x = torch.randn(2, *size)
    model.train()
    logits, aux = split_outputs(model(x))
    assert logits.shape == (2, 5)
    loss = logits.float().logsumexp(1).mean() + sum(o.sum() for o in aux)
    loss.backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: no gradient for {pname}"
            assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname}"
    model.eval()
    with torch.no_grad():
        e1, e2 = model(x), model(x)
    assert not isinstance(e1, tuple), f"{name}: eval mode must return plain logits"
    assert torch.isfinite(e1).all() and torch.equal(e1, e2), f"{name}: eval mode is not deterministic"
    stochastic = any(isinstance(m, (nn.Dropout, nn.BatchNorm2d, nn.BatchNorm1d, DropPath)) and (not isinstance(m, (nn.Dropout, DropPath)) or getattr(m, "p", 0) > 0)
                     for m in model.modules())
    if stochastic:
        model.train()
        with torch.no_grad():
            t = main_output(model(x))
        assert not torch.equal(t, e1), f"{name}: train and eval mode give the same output despite dropout/BN"


@pytest.mark.parametrize("name", [n for n in ALL if COUNTS[n] <= REAL_PARAM_LIMIT])
def test_real_forward_backward_small_input(name):
    _real_check(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in ALL if COUNTS[n] > REAL_PARAM_LIMIT])
def test_real_forward_backward_giants(name):
    _real_check(name)
