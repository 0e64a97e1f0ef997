"""The one training configuration, and named recipes that fill it in.

A recipe is a TOML file in ``cnnlab/training/recipes/`` whose ``[train]`` table sets fields
of :class:`TrainConfig`; command-line flags (one per field, or ``--set key=value``, parsed by
:func:`parse_setting`) override it. ``cnnlab train MODEL --data DATA`` with no recipe uses the
recipe named ``MODEL-DATA`` when one ships (``lenet5-mnist``).

Every value is checked where it enters, against the field's own definition: its type (an int
setting takes no "ten" and no true; a float no NaN) and its range, written into the type as
``Annotated[int, Bounds(ge=1)]`` (aliases :data:`Count`, :data:`Positive`, ...), so the
dataclass is the one list of what is allowed. A recipe file holds a ``[train]`` table and
nothing else.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import json
import tomllib
import functools
import math
import operator
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from cnnlab.data.files import atomic_write_text
from cnnlab.data.augment_policies import AUTO_AUGMENTS
from cnnlab.data.stream import DATA_MODES
from cnnlab.errors import CheckpointError, CnnlabError, UnknownNameError
from cnnlab.training.device import AMP_MODES, DEVICES
from cnnlab.training.optim import FREEZE, LOSSES, OPTIMIZERS
from cnnlab.training.schedule import SCHEDULES

# The settings that take one of a fixed set of names (the CLI's choices come from here).
CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "loss": LOSSES, "device": DEVICES,
    "data_mode": DATA_MODES, "auto_augment": AUTO_AUGMENTS, "freeze": FREEZE, "amp": AMP_MODES,
}



@dataclass(frozen=True)
class Bounds:
    """The range of a number setting, part of its type: ``Annotated[float, Bounds(gt=0)]``."""

    ge: float | None = None  # value >= ge
    gt: float | None = None  # value > gt
    le: float | None = None  # value <= le
    lt: float | None = None  # value < lt

    def admits(self, value: float) -> bool:
        return not (
            (self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt)
        )

    def __str__(self) -> str:
        low = f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}" if self.gt is not None else None
        high = f"{_num(self.le)}]" if self.le is not None else f"{_num(self.lt)})" if self.lt is not None else None
        if low and high:
            return f"in {low}, {high}"
        if low:
            return f">= {_num(self.ge)}" if self.ge is not None else f"> {_num(self.gt)}"
        return f"<= {_num(self.le)}" if self.le is not None else f"< {_num(self.lt)}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


Count = Annotated[int, Bounds(ge=1)]  # how many: epochs, images, threads, steps
Size = Annotated[int, Bounds(ge=0)]  # 0 allowed: pixels of padding, images held out
Positive = Annotated[float, Bounds(gt=0)]  # a learning rate, a decay factor, seconds
NonNegative = Annotated[float, Bounds(ge=0)]  # a penalty, epochs of warmup, a Beta's alpha
Probability = Annotated[float, Bounds(ge=0, le=1)]
Fraction = Annotated[float, Bounds(ge=0, lt=1)]  # momentum, label smoothing: 1 would never learn
Share = Annotated[float, Bounds(gt=0, le=1)]  # a part of training: a step every 0.3 of it
Seed = Annotated[int, Bounds(ge=0, lt=2**32)]  # per-rank and per-epoch seeds derived from it stay in 64 bits


@dataclass
class TrainConfig:
    model: str = "lenet5"
    data: str = "mnist"
    model_options: dict[str, Any] = field(default_factory=dict)  # builder keyword arguments
    # Fine-tuning (cnnlab.models.weights, docs/weights.md). A published file's builder options
    # (stride_in_3x3 for torchvision's ResNet-50) are added to model_options when the run starts.
    weights: str | None = None  # start from these: a path, URL, run folder, or "torchvision" (the model's default published file)
    num_classes: Count | None = None  # None ("auto"): the dataset's classes; a head of another size than the weights' is new (zero)
    freeze: str = "none"  # "backbone": train only the classifier (linear probe); the frozen backbone stays in eval mode (BN statistics kept)
    backbone_lr_scale: Positive = 1.0  # the backbone's learning rate / the head's (e.g. 0.1); 1: one learning rate
    data_root: str | None = None  # else $CNNLAB_DATA, else ~/.cache/cnnlab
    val_size: Size | None = None  # None: the dataset's default hold-out (5,000 for MNIST)
    train_subset: Count | None = None  # train on a seeded random subset of this many images (small-data studies)
    epochs: Count = 10
    batch_size: Count = 128
    eval_batch_size: Count = 1000
    optimizer: str = "sgd"
    lr: Positive = 0.1  # peak learning rate (after warmup; onecycle's maximum)
    momentum: Fraction = 0.9  # SGD momentum; Adam's beta1
    nesterov: bool = False
    weight_decay: NonNegative = 0.0  # L2 penalty coefficient (decoupled for adamw)
    schedule: str = "constant"
    step_size: Share = 0.3  # "step": decay every this fraction of training
    milestones: tuple[Probability, ...] = (0.5, 0.75)  # "multistep": decay points as fractions of training
    gamma: Positive = 0.1  # decay factor of step, multistep and plateau
    patience: Size = 2  # "plateau": epochs without a better validation accuracy before decaying
    warmup: NonNegative = 0.0  # epochs of linear warmup from 0 (fractions allowed)
    label_smoothing: Fraction = 0.0
    loss: str = "ce"  # "ce": softmax cross-entropy; "mse": squared error of softmax vs one-hot
    augment: str = "none"  # augmentation preset applied to training batches
    # ImageNet-style data and the tricks of torchvision's "v2" recipe (cnnlab.data.stream,
    # cnnlab.data.augment_policies, cnnlab.training.extras).
    data_mode: str = "auto"  # "memory", "stream", or "auto": in memory when the decoded data fits memory_budget
    memory_budget: str | None = None  # e.g. "8GB"; None: a quarter of the machine's RAM
    workers: Count | None = None  # streaming: decoding processes; None: half the cores, 1 to 8
    crop_size: Count | None = None  # training crop side of the ImageNet presets (alexnet, vgg, resnet, inception, imagenet); None: 224 (streaming: the model's input size)
    image_size: Count | None = None  # resize every image (shorter side, centre crop) to this side for a model that needs another size; None: the dataset's own
    auto_augment: str = "none"  # "trivialaugment": one random operation per image (Müller & Hutter 2021)
    random_erase: Probability = 0.0  # probability of erasing a random rectangle of each image (Zhong et al. 2020)
    mixup_alpha: NonNegative = 0.0  # mixup's Beta(alpha, alpha) (Zhang et al. 2018); 0: off
    cutmix_alpha: NonNegative = 0.0  # CutMix's Beta(alpha, alpha) (Yun et al. 2019); 0: off; with mixup: one of the two per batch
    norm_bias_decay: bool = True  # false: no weight decay on normalisation layers and biases
    norm_lr_scale: Positive = 1.0  # normalisation layers' learning rate / the rest's, same decay per step (airbench: 64)
    grad_clip: Positive | None = None  # clip the gradients' global L2 norm to this; None: no clipping
    ema_decay: Annotated[float, Bounds(gt=0, lt=1)] | None = None  # keep an EMA of the weights with this decay per update (ema.safetensors); None: off
    ema_every: Count = 1  # optimizer steps between EMA updates (torchvision's v2 recipe: 32)
    lookahead: bool = False  # at each EMA update the weights go back to the EMA (needs ema_decay); see WeightEMA
    pad: Size | None = None  # zero padding of input images; None: fit the model's input size
    seed: Seed = 0
    device: str = "auto"
    threads: Count | None = None  # CPU threads for torch; None: one per idle core (device.choose_threads)
    # "auto": bf16 (fp16 on pre-Ampere GPUs) where the device runs it natively and a short probe
    # measures it faster, else fp32; "on": reduced precision regardless; "off": fp32
    # (device.choose_precision). Runs and recipes from before held true/false: read as on/off.
    amp: str = "auto"
    channels_last: bool | None = None  # None: whichever layout the same probe measures faster
    deterministic: bool = False  # torch.use_deterministic_algorithms; needed for exact resume on GPU
    # Distributed and large-batch training (cnnlab.training.distributed). batch_size is per
    # rank: the global batch is batch_size x world size x accum_steps.
    accum_steps: Count = 1  # micro-batches whose gradients add up to one optimizer step
    reference_batch: Count | None = None  # global batch that lr is given for (the recipe's); None: batch_size x accum_steps
    sync_bn: bool = False  # SyncBatchNorm: batch statistics over the global batch (CUDA ranks only)
    compile: bool = False  # torch.compile the training step's module
    tensorboard: bool = False  # TensorBoard event files in <run>/tensorboard (rank 0)
    dist_timeout: Positive = 600.0  # seconds a rank waits for the others before stopping with an error
    eval_test_every_epoch: bool = True  # also report test error each epoch (else only at the end)
    out: str | None = None  # run folder; None: runs/<model>-<data>-<time>
    recipe: str | None = None  # the recipe this config started from, for the record

    def __post_init__(self) -> None:
        if isinstance(self.amp, bool) or (isinstance(self.amp, str) and self.amp.lower() in _TRUE + _FALSE):
            self.amp = "on" if str(self.amp).lower() in _TRUE else "off"  # amp was a bool before issue 16
        hints = _setting_hints()
        for f in dataclasses.fields(self):
            setattr(self, f.name, _checked(f.name, getattr(self, f.name), hints[f.name]))
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise UnknownNameError(f"unknown {name} {value!r}; expected one of {', '.join(allowed)}")

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
        """A run's ``config.json``; a missing, truncated or edited one fails in one line."""
        try:
            values = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise CheckpointError(f"no config at {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path} is not readable JSON (truncated or damaged?): {e}") from None
        if not isinstance(values, dict):
            raise CheckpointError(f"{path} is damaged: expected a JSON object of settings, got {type(values).__name__}")
        try:
            return cls.from_dict(values)
        except CnnlabError as e:
            raise CheckpointError(f"{path}: {e}") from None


@functools.cache
def _setting_hints() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig, include_extras=True)


def _checked(name: str, value: Any, kind: Any) -> Any:
    """``value`` as setting ``name`` of type ``kind`` holds it (an int for a float setting
    becomes a float, a list for a tuple a tuple), or CnnlabError naming what was expected."""
    bounds = None
    if typing.get_origin(kind) is Annotated:
        kind, *extras = typing.get_args(kind)
        bounds = next((x for x in extras if isinstance(x, Bounds)), None)
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args:
        if value is None:
            return None
        return _checked(name, value, next(a for a in args if a is not type(None)))
    expected = f"setting {name} expects {_describe(_plain(kind))}, got {value!r}"
    if kind is bool:
        if not isinstance(value, bool):
            raise CnnlabError(expected)
    elif kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise CnnlabError(expected)
    elif kind is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise CnnlabError(expected)
        value = float(value)
        if not math.isfinite(value):
            raise CnnlabError(f"setting {name} must be a finite number, got {value}")
    elif kind is str:
        if not isinstance(value, str):
            raise CnnlabError(expected)
    elif typing.get_origin(kind) is tuple:
        if not isinstance(value, (list, tuple)):
            raise CnnlabError(expected)
        return tuple(_checked(name, v, args[0]) for v in value)
    elif typing.get_origin(kind) is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise CnnlabError(expected)
    if bounds is not None and not bounds.admits(value):
        raise CnnlabError(f"setting {name} must be {bounds}, got {_num(value)}")
    return value


def _plain(kind: Any) -> Any:
    """``kind`` without its Annotated ranges (``tuple[Probability, ...]`` -> tuple[float, ...])."""
    if typing.get_origin(kind) is Annotated:
        return typing.get_args(kind)[0]
    if typing.get_origin(kind) is tuple:
        return tuple[float, ...]
    return kind


def setting_types() -> dict[str, Any]:
    """Each TrainConfig field's type (``int``, ``int | None``, ``tuple[float, ...]``, ...),
    without the ranges (see :func:`setting_bounds`)."""
    hints = typing.get_type_hints(TrainConfig)
    # Stripping the ranges turns ``Count | None`` into typing.Optional; give it back as ``int | None``.
    return {k: functools.reduce(operator.or_, typing.get_args(v)) if typing.get_origin(v) is typing.Union else v
            for k, v in hints.items()}


def setting_bounds(name: str) -> Bounds | None:
    """The range of a number setting (its type's ``Bounds``), or None."""
    kind = _setting_hints()[name]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if typing.get_origin(kind) is Annotated:
        return next((x for x in typing.get_args(kind)[1:] if isinstance(x, Bounds)), None)
    return None


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
        if text.lower() == "none" or (key == "num_classes" and text.lower() == "auto"):  # auto: the dataset's
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
    # A misspelt table ([trian]) or keys above [train] would otherwise be ignored silently.
    outside = sorted(k for k in table if k != "train")
    if "train" not in table or not isinstance(table["train"], dict):
        close = difflib.get_close_matches("train", outside, n=1)
        hint = f" (found [{close[0]}]: did you mean [train]?)" if close else ""
        raise CnnlabError(f"recipe {name!r} has no [train] table{hint}; its settings go under [train]")
    if outside:
        raise CnnlabError(
            f"recipe {name!r} holds {', '.join(repr(k) for k in outside)} outside its [train] table; "
            "a recipe has a [train] table and nothing else"
        )
    return dict(table["train"])


def build_config(model: str, data: str, *, recipe: str | None = None, **overrides: Any) -> TrainConfig:
    """Recipe values, then explicit overrides (None means "not given").

    Without ``recipe``, the recipe ``<model>-<data>`` is used when one ships."""
    if recipe is None and f"{model}-{data}" in list_recipes():
        recipe = f"{model}-{data}"
    values: dict[str, Any] = load_recipe(recipe) if recipe else {}
    if values:
        try:  # the recipe's own values, so that an error names the recipe
            TrainConfig.from_dict({**values, "model": model, "data": data})
        except CnnlabError as e:
            raise type(e)(f"recipe {recipe!r}: {e}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    values.update(model=model, data=data, recipe=recipe)
    return TrainConfig.from_dict(values)
