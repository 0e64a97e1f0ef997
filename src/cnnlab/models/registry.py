"""The model registry: one decorator, one lookup, one record per model.

A builder is a plain function with keyword-only arguments that returns an ``nn.Module``.
``@register_model(...)`` records a :class:`ModelInfo` for it (the paper, its canonical input
size, the accuracy a source reports, exact parameter counts) and attaches that record to every
model the builder returns, as the single attribute ``cnnlab_info``, adjusted to the instance
(a model built with ``in_chans=1`` has input size ``(1, 224, 224)``). That holds whether the
model came from :func:`create_model` or from calling the builder directly, and it survives
``copy.deepcopy`` and pickling.

Everything else reads it through :func:`get_model_info`, which takes a registered name or a
built model. A module the registry did not build has no record: ``get_model_info`` raises
:class:`~cnnlab.errors.CnnlabError` for it, or returns ``default`` when one is given, and
:func:`model_label` names it by its class.

Models with auxiliary classifiers (GoogLeNet) return ``(main, aux, ...)`` in training mode;
:func:`main_output` and :func:`split_outputs` are the one place that unpacks such outputs.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
import inspect
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import Tensor, nn

from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.models.weight_files import WeightFile, weights_for

__all__ = [
    "INFO_ATTRIBUTE",
    "ModelInfo",
    "ParamCount",
    "Reported",
    "create_model",
    "get_model_info",
    "list_models",
    "main_output",
    "model_label",
    "register_model",
    "short_citation",
    "split_outputs",
]

# The one attribute the registry sets on a model it builds.
INFO_ATTRIBUTE = "cnnlab_info"


@dataclass(frozen=True)
class Reported:
    """An accuracy a paper (or a reproduction, when ``source`` says so) reports for a model."""

    top1: float | None  # top-1 accuracy in %, single model, single crop unless `note` says so
    top5: float | None = None  # top-5 accuracy in %
    dataset: str = "ImageNet"  # ImageNet means the ILSVRC-2012 validation set
    source: str = ""  # where the figure comes from: paper and table, or the reproduction
    note: str = ""  # e.g. "10-crop", "7-model ensemble"


@dataclass(frozen=True)
class ParamCount:
    """The exact parameter count of one non-default build of a model (tested against the build)."""

    count: int
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)  # builder options of that build
    note: str = ""  # what that build is, e.g. "without the two training-only auxiliary heads"
    source: str = ""  # where the same count is published; "" = counted by cnnlab


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model: of a registered name, or of one built instance."""

    name: str
    family: str  # the module the builder lives in: "vgg", "resnet", ...
    paper: str  # citation: authors, year, title (short form: `short_paper`)
    input_size: tuple[int, int, int]  # (channels, height, width): the paper's, or this instance's
    reported: Reported | None  # None: no accuracy we could trace to a source
    # Smallest input the architecture accepts at full depth: the model sweep uses it to stay
    # fast. None means "only the canonical size" (fixed-size FC heads, position embeddings).
    test_input_size: tuple[int, int, int] | None
    builder: Callable[..., nn.Module]
    # Exact parameter count of the default build (the builder's own defaults: 1000 classes, 3
    # channels for the ImageNet models), pinned by tests/models/test_registry.py. It describes
    # the name, not an instance built with other options (see `build_options`).
    params: int | None = None
    params_variants: tuple[ParamCount, ...] = ()  # other builds worth quoting (GoogLeNet without aux heads)
    # The options an instance was built with ({} for a registered name's record).
    build_options: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def options(self) -> dict[str, inspect.Parameter]:
        """The builder's keyword-only options and their defaults."""
        sig = inspect.signature(self.builder)
        return {n: p for n, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY}

    @property
    def weights(self) -> tuple[WeightFile, ...]:
        """The published weight files that fit this model (cnnlab.models.weight_files), default first."""
        return tuple(sorted(weights_for(self.name), key=lambda f: not f.default))

    @property
    def feature_stages(self) -> tuple:
        """Each stage's module, channels and reduction (cnnlab.models.features.FeatureStage)."""
        # Deferred: cnnlab.models.features builds models through this module.
        from cnnlab.models.features import feature_stages

        return feature_stages(self.name)

    @property
    def short_paper(self) -> str:
        """The paper's authors and year: 'He et al. 2016'."""
        return short_citation(self.paper)


def short_citation(paper: str) -> str:
    """'He, Zhang, Ren, Sun 2016, Deep residual ...' -> 'He et al. 2016'; two authors keep both."""
    match = re.match(r"^(.*?)\b((?:19|20)\d\d)\b", paper)
    if not match:
        return paper.split(",")[0]
    authors = [a.strip() for a in re.split(r",|&|\band\b", match.group(1)) if a.strip()]
    if len(authors) > 2:
        return f"{authors[0]} et al. {match.group(2)}"
    return f"{' & '.join(authors)} {match.group(2)}"


_REGISTRY: dict[str, ModelInfo] = {}

B = TypeVar("B", bound=Callable[..., nn.Module])


def _instance_info(info: ModelInfo, options: dict[str, Any]) -> ModelInfo:
    """``info`` for one instance: a changed channel count or image size changes its input size."""
    chans = options.get("in_chans") or info.input_size[0]
    hw: tuple[int, ...] = info.input_size[1:]
    size = options.get("image_size")
    if size is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
    test_size = info.test_input_size
    if test_size is not None:
        test_size = (chans, *test_size[1:])
    return dataclasses.replace(
        info, input_size=(chans, *hw), test_input_size=test_size, build_options=dict(options)
    )


def register_model(
    *,
    paper: str,
    input_size: tuple[int, int, int],
    reported: Reported | None = None,
    test_input_size: tuple[int, int, int] | None = None,
    params: int | None = None,
    params_variants: tuple[ParamCount, ...] = (),
) -> Callable[[B], B]:
    """Register a model builder under its function name, with the paper's metadata.

    A family binds what its models share once, ``_resnet = partial(register_model,
    paper=HE_2016, input_size=(3, 224, 224))``, and each builder adds its own ``reported`` and
    ``params``.
    """

    def decorate(builder: B) -> B:
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")

        @functools.wraps(builder)
        def build(**options: Any) -> nn.Module:
            model = builder(**options)
            setattr(model, INFO_ATTRIBUTE, _instance_info(_REGISTRY[name], options))
            return model

        _REGISTRY[name] = ModelInfo(
            name=name,
            family=builder.__module__.rsplit(".", 1)[-1],
            paper=paper,
            input_size=input_size,
            reported=reported,
            test_input_size=test_input_size,
            builder=build,
            params=params,
            params_variants=params_variants,
        )
        return build  # type: ignore[return-value]

    return decorate


def _ensure_loaded() -> None:
    # Importing the package imports every family module, which fills the registry.
    import cnnlab.models  # noqa: F401


def _suggest(name: str) -> str:
    names = sorted(_REGISTRY)
    # Names that extend what was typed come first ('resnet5' -> resnet50, resnet56), then
    # otherwise near misses ('vg16' -> vgg16).
    close = [n for n in names if n.startswith(name)]
    if not close:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    close = close[:3]
    if close:
        return f"; did you mean {', '.join(close)}?"
    return "; run `cnnlab models` to list them"


def _unwrap(model: nn.Module) -> nn.Module:
    # DataParallel / DistributedDataParallel hold the model as `.module`; torch.compile's
    # wrapper as `._orig_mod`. The record lives on the model itself.
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


_RAISE: Any = object()


def get_model_info(name_or_model: str | nn.Module, default: Any = _RAISE) -> ModelInfo:
    """The registry's record of a registered name, or of a model the registry built.

    For a name: the registered :class:`ModelInfo`; an unknown name fails with the closest
    matches. For a model: the record of that instance (its own input size, the options it was
    built with), also through DataParallel/DDP/torch.compile wrappers. A module the registry did
    not build raises :class:`CnnlabError`, unless ``default`` is given (``None``, say), which is
    then returned instead; ``default`` never hides a misspelt name.
    """
    if isinstance(name_or_model, str):
        _ensure_loaded()
        try:
            return _REGISTRY[name_or_model]
        except KeyError:
            raise UnknownNameError(f"unknown model {name_or_model!r}{_suggest(name_or_model)}") from None
    if not isinstance(name_or_model, nn.Module):
        raise TypeError(f"get_model_info takes a model name or an nn.Module, got {type(name_or_model).__name__}")
    info = getattr(_unwrap(name_or_model), INFO_ATTRIBUTE, None)
    if isinstance(info, ModelInfo):
        return info
    if default is not _RAISE:
        return default
    raise CnnlabError(
        f"{type(name_or_model).__name__} was not built by cnnlab's model registry, so it has no model info; "
        "build it with cnnlab.create_model(name), or pass the input size yourself"
    )


def model_label(model: nn.Module) -> str:
    """The registered name of a model the registry built, else its class name (for messages)."""
    info = get_model_info(model, default=None)
    return info.name if info is not None else type(_unwrap(model)).__name__


def _natural(name: str) -> list:
    # resnet18 < resnet34 < resnet101: numbers compare as numbers.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, in natural order."""
    _ensure_loaded()
    return sorted((n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern)), key=_natural)


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    weights: str | os.PathLike | None = None,
    **model_options: Any,
) -> nn.Module:
    """Build a registered model.

    ``num_classes`` and ``in_chans`` are passed only when given, so each builder's own
    default (1000 ImageNet classes, 3 channels; 10 classes, 1 channel for LeNet) applies.
    Other options are the builder's keyword-only arguments; unknown ones fail with the list
    of valid ones.

    ``weights``: load them (a path, URL, run folder, ``"torchvision"`` for the default file of
    :attr:`ModelInfo.weights`, or one of its tags); see :func:`cnnlab.models.weights.pretrained`.
    A ``num_classes`` other than the file's gives a new, zero-initialised classifier.
    """
    if weights is not None:
        # Deferred: cnnlab.models.weights builds models through this module.
        from cnnlab.models.weights import pretrained

        return pretrained(name, weights, num_classes=num_classes, in_chans=in_chans, **model_options)
    info = get_model_info(name)
    options = info.options
    unknown = [k for k in model_options if k not in options]
    if unknown:
        valid = ", ".join(k for k in options if k not in ("num_classes", "in_chans")) or "none"
        raise UnknownNameError(f"model {name!r} has no option {unknown[0]!r}; its options are: {valid}")
    if num_classes is not None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        model_options["num_classes"] = num_classes
    if in_chans is not None:
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        model_options["in_chans"] = in_chans
    return info.builder(**model_options)


def split_outputs(output: Tensor | tuple) -> tuple[Tensor, tuple[Tensor, ...]]:
    """A model's output as (main logits, auxiliary logits).

    Models with auxiliary classifiers (GoogLeNet, in training mode) return a tuple whose first
    element is the main classifier's; every other model returns its logits alone (no aux).
    """
    if isinstance(output, tuple):
        return output[0], tuple(o for o in output[1:] if o is not None)
    return output, ()


def main_output(output: Tensor | tuple | list) -> Tensor:
    """The main classifier's logits of a model's output, with or without auxiliary heads.

    Also the one rule for a layer's output seen by a forward hook: a module that returns a
    tuple (attention returns its values and its weights) is represented by its first element.
    """
    if isinstance(output, list):
        output = tuple(output)
    return split_outputs(output)[0]
