"""The one training configuration, and named recipes that fill it in.

A recipe is a TOML file in ``cnnlab/training/recipes/`` whose ``[train]`` table sets fields
of :class:`TrainConfig`; command-line flags (one per field, or ``--set key=value``, parsed by
:func:`parse_setting`) override it. ``cnnlab train MODEL --data DATA`` with no recipe uses the
recipe named ``MODEL-DATA`` when one ships (``lenet5-mnist``).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from cnnlab.data.files import atomic_write_text
from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.training.device import DEVICES
from cnnlab.training.optim import LOSSES, OPTIMIZERS
from cnnlab.training.schedule import SCHEDULES

# The settings that take one of a fixed set of names (the CLI's choices come from here).
CHOICES: dict[str, tuple[str, ...]] = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "loss": LOSSES, "device": DEVICES}


@dataclass
class TrainConfig:
    model: str = "lenet5"
    data: str = "mnist"
    model_options: dict[str, Any] = field(default_factory=dict)  # builder keyword arguments
    data_root: str | None = None  # else $CNNLAB_DATA, else ~/.cache/cnnlab
    val_size: int | None = None  # None: the dataset's default hold-out (5,000 for MNIST)
    train_subset: int | None = None  # train on a seeded random subset of this many images (small-data studies)
    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int = 1000
    optimizer: str = "sgd"
    lr: float = 0.1  # peak learning rate (after warmup; onecycle's maximum)
    momentum: float = 0.9  # SGD momentum; Adam's beta1
    nesterov: bool = False
    weight_decay: float = 0.0  # L2 penalty coefficient (decoupled for adamw)
    schedule: str = "constant"
    step_size: float = 0.3  # "step": decay every this fraction of training
    milestones: tuple[float, ...] = (0.5, 0.75)  # "multistep": decay points as fractions of training
    gamma: float = 0.1  # decay factor of step, multistep and plateau
    patience: int = 2  # "plateau": epochs without a better validation accuracy before decaying
    warmup: float = 0.0  # epochs of linear warmup from 0 (fractions allowed)
    label_smoothing: float = 0.0
    loss: str = "ce"  # "ce": softmax cross-entropy; "mse": squared error of softmax vs one-hot
    augment: str = "none"  # augmentation preset applied to training batches
    pad: int | None = None  # zero padding of input images; None: fit the model's input size
    seed: int = 0
    device: str = "auto"
    threads: int | None = None  # CPU threads for torch; None: torch's default (one per core)
    amp: bool = False  # bf16 autocast (CPU and CUDA)
    channels_last: bool = False
    deterministic: bool = False  # torch.use_deterministic_algorithms; needed for exact resume on GPU
    eval_test_every_epoch: bool = True  # also report test error each epoch (else only at the end)
    out: str | None = None  # run folder; None: runs/<model>-<data>-<time>
    recipe: str | None = None  # the recipe this config started from, for the record

    def __post_init__(self) -> None:
        self.milestones = tuple(float(m) for m in self.milestones)
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise UnknownNameError(f"unknown {name} {value!r}; expected one of {', '.join(allowed)}")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise CnnlabError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise CnnlabError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise CnnlabError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        for key in sorted(values):
            check_setting_name(key)
        return cls(**values)

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def setting_types() -> dict[str, Any]:
    """Each TrainConfig field's type (``int``, ``int | None``, ``tuple[float, ...]``, ...)."""
    return typing.get_type_hints(TrainConfig)


def check_setting_name(key: str) -> None:
    """Fail with a did-you-mean unless ``key`` is a TrainConfig field."""
    known = [f.name for f in dataclasses.fields(TrainConfig)]
    if key not in known:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else f"; settings are {', '.join(known)}"
        raise UnknownNameError(f"unknown training setting {key!r}{hint}")


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def parse_setting(pair: str) -> tuple[str, Any]:
    """``"key=value"`` -> (key, value converted to the field's type), as ``--set`` takes it.

    Integers and floats as written; booleans true/false (yes/no, on/off, 1/0); ``none`` for
    the fields that may be None; ``milestones`` as comma-separated fractions (0.5,0.75);
    ``model_options`` as a Python dict literal. Choices and ranges are checked when the
    config is built."""
    key, sep, text = pair.partition("=")
    key, text = key.strip().replace("-", "_"), text.strip()
    if not sep or not key:
        raise CnnlabError(f"expected key=value, got {pair!r}")
    check_setting_name(key)
    kind = setting_types()[key]
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType) and type(None) in args:
        if text.lower() == "none":
            return key, None
        kind = next(a for a in args if a is not type(None))
    try:
        return key, _convert(kind, text)
    except (ValueError, SyntaxError):
        raise CnnlabError(f"setting {key} expects {_describe(kind)}, got {text!r}") from None


def _convert(kind: Any, text: str) -> Any:
    if kind is bool:
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise ValueError(text)
    if kind in (int, float, str):
        return kind(text)
    origin = typing.get_origin(kind)
    if origin is tuple:
        return tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    if origin is dict:
        value = ast.literal_eval(text)
        if not isinstance(value, dict):
            raise ValueError(text)
        return value
    raise ValueError(f"no parser for {kind}")


def _describe(kind: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if kind in names:
        return names[kind]
    return "comma-separated numbers such as 0.5,0.75" if typing.get_origin(kind) is tuple else "a dict such as {'width': 16}"


def list_recipes() -> list[str]:
    folder = resources.files("cnnlab.training") / "recipes"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_recipe(name: str) -> dict[str, Any]:
    """The ``[train]`` table of a shipped recipe (or of a TOML file path)."""
    path = Path(name)
    if path.suffix == ".toml" and path.is_file():
        text = path.read_text()
    else:
        recipes = list_recipes()
        if name not in recipes:
            close = difflib.get_close_matches(name, recipes, n=2)
            hint = f"did you mean {', '.join(close)}?" if close else f"known recipes: {', '.join(recipes)}"
            raise UnknownNameError(f"unknown recipe {name!r}; {hint}")
        text = (resources.files("cnnlab.training") / "recipes" / f"{name}.toml").read_text()
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise CnnlabError(f"recipe {name!r} is not valid TOML: {e}") from None
    return dict(table.get("train", {}))


def build_config(model: str, data: str, *, recipe: str | None = None, **overrides: Any) -> TrainConfig:
    """Recipe values, then explicit overrides (None means "not given").

    Without ``recipe``, the recipe ``<model>-<data>`` is used when one ships."""
    if recipe is None and f"{model}-{data}" in list_recipes():
        recipe = f"{model}-{data}"
    values: dict[str, Any] = load_recipe(recipe) if recipe else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    values.update(model=model, data=data, recipe=recipe)
    return TrainConfig.from_dict(values)
