"""The model registry: one decorator, one lookup.

A builder is a plain function with keyword-only arguments that returns an ``nn.Module``.
``@register_model(...)`` records the paper's metadata next to it (canonical input size,
citation, reported accuracy) and stamps the same metadata onto every model the builder
returns, so ``model.default_input_size`` and ``model.paper`` work whether the model came
from :func:`create_model` or from calling the builder directly.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import inspect
import re
from dataclasses import dataclass
from typing import Callable, TypeVar

from torch import nn

from cnnlab.errors import UnknownNameError

__all__ = [
    "ModelInfo",
    "Reported",
    "create_model",
    "get_model_info",
    "list_models",
    "register_model",
]


@dataclass(frozen=True)
class Reported:
    """An accuracy a paper (or the lectures' comparison table) reports for a model."""

    top1: float | None  # top-1 accuracy in %, single model, single crop unless `note` says so
    top5: float | None = None  # top-5 accuracy in %
    dataset: str = "ImageNet"  # ImageNet means the ILSVRC-2012 validation set
    source: str = ""  # where the figure comes from: paper and table
    note: str = ""  # e.g. "10-crop", "7-model ensemble"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str  # the module the builder lives in: "vgg", "resnet", ...
    paper: str  # short citation: authors, year, title
    input_size: tuple[int, int, int]  # (channels, height, width) the paper uses
    reported: Reported | None
    # Smallest input the architecture accepts at full depth: the model sweep uses it to stay
    # fast. None means "only the canonical size" (fixed-size FC heads, position embeddings).
    test_input_size: tuple[int, int, int] | None
    builder: Callable[..., nn.Module]

    @property
    def options(self) -> dict[str, inspect.Parameter]:
        """The builder's keyword-only options and their defaults."""
        sig = inspect.signature(self.builder)
        return {n: p for n, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY}


_REGISTRY: dict[str, ModelInfo] = {}

B = TypeVar("B", bound=Callable[..., nn.Module])


def register_model(
    *,
    paper: str,
    input_size: tuple[int, int, int],
    reported: Reported | None = None,
    test_input_size: tuple[int, int, int] | None = None,
) -> Callable[[B], B]:
    """Register a model builder under its function name, with the paper's metadata."""

    def decorate(builder: B) -> B:
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        family = builder.__module__.rsplit(".", 1)[-1]

        @functools.wraps(builder)
        def build(*args, **kwargs):
            model = builder(*args, **kwargs)
            model.model_name = name
            model.paper = paper
            # Honour a changed channel count: the metadata describes this instance.
            chans = kwargs.get("in_chans", input_size[0])
            model.default_input_size = (chans, *input_size[1:])
            if "image_size" in kwargs and kwargs["image_size"] is not None:
                size = kwargs["image_size"]
                hw = (size, size) if isinstance(size, int) else tuple(size)
                model.default_input_size = (chans, *hw)
            model.reported = reported
            return model

        _REGISTRY[name] = ModelInfo(
            name=name,
            family=family,
            paper=paper,
            input_size=input_size,
            reported=reported,
            test_input_size=test_input_size,
            builder=build,
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


def get_model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; unknown names fail with the closest matches."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(f"unknown model {name!r}{_suggest(name)}") from None


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
    **model_options,
) -> nn.Module:
    """Build a registered model.

    ``num_classes`` and ``in_chans`` are passed only when given, so each builder's own
    default (1000 ImageNet classes, 3 channels; 10 classes, 1 channel for LeNet) applies.
    Other options are the builder's keyword-only arguments; unknown ones fail with the list
    of valid ones.
    """
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
