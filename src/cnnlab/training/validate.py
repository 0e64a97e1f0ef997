"""Checks at the edge of training: what a user asks for is checked before any work starts.

- **Model options** (``-o key=value``, a recipe's ``model_options``) against the builder's
  signature: the name must be one of its keyword-only parameters (the registry checks that)
  and the value of the type it is annotated with (``-o pool=3`` for ``pool: str`` fails); a
  value the builder itself refuses (``-o activation=nonsense``) is reported in one line with
  the builder's reason. Both are found by building on the meta device (no memory, no compute).
- **Image size**: a model that cannot take the dataset's images (8x8 images for LeNet-5,
  32x32x3 for the MLP built for 28x28) is found by a training-mode forward pass of two images
  before any data is batched: on the meta device (shapes only) for large models, on the CPU
  with real zeros for small ones, whose forward costs milliseconds where torch's first meta
  forward in a process costs ~2 s of lazy imports (measured on LeNet-5: 0.02 s against 2.1 s); the message names both
  sizes and a fix (``--pad``, ``--image-size`` to resize the images, ``-o image_size=...``
  where the model has that option, or another model).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model, get_model_info

# Models up to this size (parameters, input values per image) are checked by a real forward
# pass on the CPU (milliseconds), larger ones on the meta device (no memory, no compute).
REAL_CHECK_PARAMS = 2_000_000
REAL_CHECK_PIXELS = 3 * 64 * 64

# Errors a builder or a forward pass raises for a value or shape it cannot use.
_REFUSALS = (ValueError, TypeError, KeyError, IndexError, AssertionError, RuntimeError)


def matches(value: Any, annotation: Any) -> bool:
    """Whether ``value`` is of the annotated type: bool, int (not bool), float (or int), str,
    None, unions, Literal, tuple[X, ...] / tuple[X, Y], list[X] / Sequence[X] (a list or
    tuple), dict / Mapping. Annotations it does not know (a class, a callable) accept anything."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(matches(v, args[0]) for v in value)
        return not args or (len(args) == len(value) and all(matches(v, a) for v, a in zip(value, args)))
    if origin in (list, Sequence, typing.Sequence) or annotation in (list, tuple):
        if not isinstance(value, (tuple, list)):
            return False
        return not args or all(matches(v, args[0]) for v in value)
    if origin in (dict, Mapping) or annotation is dict:
        return isinstance(value, Mapping)
    return True


def describe(annotation: Any) -> str:
    """An annotation as a user reads it: ``str``, ``int or None``, ``tuple[int, ...]``."""
    if isinstance(annotation, type):
        return annotation.__name__
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("None" if a is type(None) else describe(a) for a in args)
    return str(annotation).replace("typing.", "")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().strip('"').strip("'")
    return text.splitlines()[0] if text else type(e).__name__


def check_model_options(model: str, options: Mapping[str, Any], *, num_classes: int | None = None) -> None:
    """Fail with one line unless ``model`` is registered, takes every option in ``options``
    with a value of the annotated type, and its builder accepts the values."""
    info = get_model_info(model)
    try:
        signature = inspect.signature(info.builder, eval_str=True)
    except (NameError, TypeError, ValueError):  # annotations that do not evaluate: names only
        signature = inspect.signature(info.builder)
    params = signature.parameters
    for key, value in options.items():
        if key not in params or key in ("num_classes", "in_chans"):
            continue  # create_model reports unknown names with the valid ones
        annotation = params[key].annotation
        if not matches(value, annotation):
            raise CnnlabError(
                f"model {model!r} option {key} expects {describe(annotation)}, got {value!r} ({type(value).__name__})"
            )
    try:
        with torch.device("meta"):
            create_model(model, num_classes=num_classes or None, **dict(options))
    except CnnlabError:
        raise
    except _REFUSALS as e:
        raise CnnlabError(f"model {model!r} does not accept its options {dict(options)}: {_first_line(e)}") from None


def check_input_fits(
    model: str,
    options: Mapping[str, Any],
    *,
    num_classes: int,
    image_size: Sequence[int],
    pad: int,
    data: str,
) -> None:
    """Fail with one line when ``model`` cannot take ``data``'s images of ``image_size`` =
    (C, H, W), zero-padded by ``pad``: a training-mode forward pass of two images, without
    autograd, on the CPU for small models and on the meta device for the rest. A model whose
    layers have no meta kernels is not checked here."""
    c, h, w = (int(v) for v in image_size)
    ph, pw = h + 2 * pad, w + 2 * pad
    with torch.device("meta"):
        net = create_model(model, num_classes=num_classes, in_chans=c, **dict(options))
    small = sum(p.numel() for p in net.parameters()) <= REAL_CHECK_PARAMS and c * ph * pw <= REAL_CHECK_PIXELS
    device = torch.device("cpu") if small else torch.device("meta")
    # The global generator is left as it was: the real build draws initial weights from it.
    # No autograd: shapes are all it needs, and forward hooks can tell it from a training step.
    with torch.random.fork_rng(devices=[]), torch.device(device), torch.no_grad():
        if small:
            net = create_model(model, num_classes=num_classes, in_chans=c, **dict(options))
        try:
            net.train()
            net(torch.zeros(2, c, ph, pw))
            return
        except NotImplementedError:
            return
        except _REFUSALS as e:
            reason = _first_line(e)
    expected = get_model_info(net).input_size
    padded = f", padded by {pad} to {c}x{ph}x{pw}" if pad else ""
    fixes = []
    eh, ew = expected[1], expected[2]
    if eh > ph and ew > pw and (eh - ph) == (ew - pw) and (eh - ph) % 2 == 0:
        fixes.append(f"--pad {pad + (eh - ph) // 2}")
    if "image_size" in get_model_info(model).options and ph == pw:
        fixes.append(f"-o image_size={ph}")
    if eh == ew and (eh, ew) != (ph, pw):  # the model is built with the images' channels: only the side matters
        fixes.append(f"--image-size {eh}")
    fixes.append(f"a model that takes {c}x{ph}x{pw} images")
    raise CnnlabError(
        f"{model} cannot take the images of {data}: they are {c}x{h}x{w}{padded}, the model is built for "
        f"{expected[0]}x{eh}x{ew} ({reason}); use {', or '.join(fixes)}"
    )
