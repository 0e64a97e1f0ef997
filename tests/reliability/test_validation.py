"""Validation at the edge: every setting's type and range come from TrainConfig itself, model
options from the builder's signature, and the image size is checked before training."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.models import get_model_info, list_models
from cnnlab.training.config import TrainConfig, build_config, setting_bounds, setting_types
from cnnlab.training.validate import check_input_fits, check_model_options, matches

UNBOUNDED: set[str] = set()  # number settings allowed without a range (none today)


def _numeric(kind) -> bool:
    args = typing.get_args(kind)
    return kind in (int, float) or any(a in (int, float) for a in args) or typing.get_origin(kind) is tuple


def test_every_number_setting_has_its_range_in_its_type():
    for f in dataclasses.fields(TrainConfig):
        kind = setting_types()[f.name]
        if _numeric(kind) and f.name not in UNBOUNDED and f.name != "milestones":
            assert setting_bounds(f.name) is not None, f"{f.name}: give its type a range (Count, Positive, ...)"


@pytest.mark.parametrize("name, bad", [
    ("lr", float("nan")), ("lr", 0), ("lr", float("inf")), ("momentum", 1.0), ("momentum", -0.1),
    ("weight_decay", -1e-4), ("epochs", 0), ("epochs", True), ("epochs", 2.0), ("epochs", "ten"),
    ("batch_size", -1), ("val_size", -5), ("threads", 0), ("label_smoothing", 1.0), ("milestones", (0.5, 1.5)),
    ("milestones", "0.5"), ("warmup", -1), ("gamma", 0), ("model_options", 3), ("model_options", {1: 2}),
    ("nesterov", "yes"), ("out", 3), ("pad", -1), ("step_size", 0), ("seed", -1), ("seed", 2**70),
])
def test_out_of_range_or_wrongly_typed_settings_are_refused(name, bad):
    with pytest.raises(CnnlabError, match=f"setting {name} "):
        TrainConfig(**{name: bad})


def test_values_are_stored_as_their_types():
    config = TrainConfig(lr=1, milestones=[0.25, 0.5], val_size=None)
    assert isinstance(config.lr, float) and config.milestones == (0.25, 0.5)


def test_recipe_values_are_checked_and_named(tmp_path):
    (tmp_path / "r.toml").write_text('[train]\nlr = "fast"\n')
    with pytest.raises(CnnlabError, match=r"recipe '.*r.toml': setting lr expects a number, got 'fast'"):
        build_config("lenet5", "mnist", recipe=str(tmp_path / "r.toml"))


def test_option_types_follow_the_builders_annotations():
    assert matches(3, int) and not matches(True, int) and matches(3, float) and not matches("3", float)
    assert matches((64, 32), tuple[int, ...]) and not matches((64, "x"), tuple[int, ...])
    assert matches(None, int | None) and matches("relu", str) and not matches(3, str)
    with pytest.raises(CnnlabError, match="model 'mlp' option hidden expects tuple"):
        check_model_options("mlp", {"hidden": "wide"})
    with pytest.raises(CnnlabError, match="unknown activation 'nonsense'"):
        check_model_options("lenet5", {"activation": "nonsense"})
    check_model_options("mlp", {"hidden": (64, 32), "activation": "tanh"})


@pytest.mark.parametrize("model, size, pad, fix", [
    ("lenet5", (1, 8, 8), 0, "--pad 12"),
    ("mlp", (3, 32, 32), 0, "-o image_size=32"),
    ("lenet5", (1, 64, 64), 0, "a model that takes 1x64x64 images"),
])
def test_a_model_that_cannot_take_the_images_is_found_before_training(model, size, pad, fix):
    with pytest.raises(CnnlabError) as e:
        check_input_fits(model, {}, num_classes=10, image_size=size, pad=pad, data="d")
    message = str(e.value)
    c, h, w = size
    assert f"they are {c}x{h}x{w}" in message and "the model is built for" in message and fix in message
    assert "\n" not in message


@pytest.mark.slow
def test_a_model_of_every_family_takes_its_own_input_size():
    """No false alarm: the meta-device check passes the first model of every family at its
    canonical size (every layer type the registry has; all models would take minutes)."""
    first: dict[str, str] = {}
    for name in list_models():
        first.setdefault(get_model_info(name).family, name)
    assert len(first) >= 15
    for name in first.values():
        info = get_model_info(name)
        c, h, w = info.test_input_size or info.input_size
        check_input_fits(name, {}, num_classes=10, image_size=(c, h, w), pad=0, data="its own")


@pytest.mark.parametrize("model, size", [("lenet5", (1, 32, 32)), ("resnet50", (3, 224, 224))])
def test_the_size_check_leaves_the_global_generator_as_it_was(model, size):
    """LeNet-5 is checked by a real forward pass (its weights drawn from the global generator),
    ResNet-50 on the meta device: neither may shift the seeded run's initial weights."""
    import cnnlab.training.validate as validate

    small = get_model_info(model).params <= validate.REAL_CHECK_PARAMS
    assert small == (model == "lenet5")  # both paths are covered
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    check_input_fits(model, {}, num_classes=10, image_size=size, pad=0, data="d")
    assert torch.equal(torch.random.get_rng_state(), before)
