"""Settings by name (`cnnlab train --set key=value`): types, did-you-mean, choices."""

from __future__ import annotations

import dataclasses

import pytest

from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.training.config import CHOICES, TrainConfig, parse_setting, setting_types
from cnnlab.training.device import DEVICES
from cnnlab.training.optim import LOSSES, OPTIMIZERS


@pytest.mark.parametrize(
    "pair, expected",
    [
        ("gamma=0.5", ("gamma", 0.5)),
        ("patience=4", ("patience", 4)),
        ("step-size=0.25", ("step_size", 0.25)),
        ("train_subset=none", ("train_subset", None)),
        ("pad=2", ("pad", 2)),
        ("deterministic=true", ("deterministic", True)),
        ("eval_test_every_epoch=no", ("eval_test_every_epoch", False)),
        ("milestones=0.3, 0.6,0.9", ("milestones", (0.3, 0.6, 0.9))),
        ("model_options={'activation': 'relu'}", ("model_options", {"activation": "relu"})),
        ("augment=cifar", ("augment", "cifar")),
        (" lr = 1e-3 ", ("lr", 0.001)),
    ],
)
def test_parse_setting_converts_to_the_field_type(pair, expected):
    assert parse_setting(pair) == expected


@pytest.mark.parametrize(
    "pair, message",
    [
        ("gama=0.5", "unknown training setting 'gama'; did you mean gamma?"),
        ("epochs=3.5", "setting epochs expects an integer, got '3.5'"),
        ("epochs=none", "setting epochs expects an integer, got 'none'"),
        ("nesterov=maybe", "setting nesterov expects true or false, got 'maybe'"),
        ("milestones=half", "setting milestones expects comma-separated numbers"),
        ("model_options=[1]", "setting model_options expects a dict"),
        ("gamma", "expected key=value, got 'gamma'"),
    ],
)
def test_parse_setting_errors_quote_the_bad_value(pair, message):
    with pytest.raises(CnnlabError) as info:
        parse_setting(pair)
    assert message in str(info.value)


def test_every_field_can_be_parsed():
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        value = getattr(defaults, f.name)
        if value is None:
            continue
        text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        assert parse_setting(f"{f.name}={text}") == (f.name, value), f.name
    assert set(setting_types()) == {f.name for f in dataclasses.fields(TrainConfig)}


def test_choices_are_the_library_constants_and_are_enforced():
    from cnnlab.data.augment_policies import AUTO_AUGMENTS
    from cnnlab.data.stream import DATA_MODES
    from cnnlab.training.device import AMP_MODES
    from cnnlab.training.optim import FREEZE

    assert CHOICES == {"optimizer": OPTIMIZERS, "schedule": CHOICES["schedule"], "loss": LOSSES, "device": DEVICES,
                       "data_mode": DATA_MODES, "auto_augment": AUTO_AUGMENTS, "freeze": FREEZE, "amp": AMP_MODES}
    for name, allowed in CHOICES.items():
        with pytest.raises(UnknownNameError, match=f"unknown {name} 'nope'; expected one of {', '.join(allowed)}"):
            TrainConfig(**{name: "nope"})


def test_save_and_load_roundtrip(tmp_path):
    cfg = TrainConfig(model="mlp", epochs=2, milestones=(0.2, 0.4), model_options={"hidden": [30]}, pad=1)
    cfg.save(tmp_path / "config.json")
    assert TrainConfig.load(tmp_path / "config.json") == TrainConfig(**{**cfg.to_dict(), "model_options": {"hidden": [30]}})
