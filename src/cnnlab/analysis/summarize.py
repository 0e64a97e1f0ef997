"""One table per model: what each layer outputs, holds, computes and sees.

``summary(model)`` runs one forward pass of a single image under a
:class:`~cnnlab.analysis.tracer.Tracer` (on ``torch.device("meta")`` when given a model
name, so nothing is allocated and even the largest models take a second) and returns a
:class:`~cnnlab.analysis.format.Summary`: one row per layer, the totals, and the memory a
training step needs. ``profile(model)`` is the cheap version: parameters and MACs only.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections import Counter
from typing import Sequence

import torch
from torch import nn

from cnnlab.analysis.format import OPTIMIZER_STATES, LayerRow, Summary, TrainingMemory, VideoCompute
from cnnlab.analysis.tracer import ModuleStats, Tracer, count_ops, inference
from cnnlab.models import create_model, get_model_info, model_label

__all__ = [
    "LayerRow",
    "OPTIMIZER_STATES",
    "Summary",
    "TrainingMemory",
    "VideoCompute",
    "build_model",
    "parse_input_size",
    "parse_video",
    "profile",
    "summary",
    "video_compute",
]


# --- building and running -------------------------------------------------------------------
def parse_input_size(text: str | int | Sequence[int]) -> tuple[int, ...]:
    """``"3x224x224"`` or ``(3, 224, 224)`` -> (3, 224, 224); ``"224"`` -> (3, 224, 224)."""
    if isinstance(text, int):
        return (3, text, text)
    if not isinstance(text, str):
        size = tuple(int(v) for v in text)
    else:
        if not re.fullmatch(r"\d+(\s*[x,]\s*\d+)*", text.strip().lower()):
            raise ValueError(f"bad input size {text!r}; expected CxHxW such as 3x224x224")
        size = tuple(int(p) for p in re.split(r"\s*[x,]\s*", text.strip().lower()))
        if len(size) == 1:
            size = (3, size[0], size[0])
    if len(size) < 2 or any(v < 1 for v in size):
        raise ValueError(f"bad input size {text!r}; expected CxHxW with positive sizes, such as 3x224x224")
    return size


def build_model(name: str, *, device: str | torch.device = "meta") -> nn.Module:
    """Build a registered model on ``device`` (meta: no memory, no initialisation cost).

    Some builders compute on tensors while constructing (``.item()`` of a drop-path schedule)
    which meta tensors cannot do; those are built on the CPU instead.
    """
    try:
        with torch.device(device):
            return create_model(name)
    except (NotImplementedError, RuntimeError) as e:
        if torch.device(device).type != "meta":
            raise
        warnings.warn(f"{name} cannot be built on the meta device ({e}); building it on the CPU", stacklevel=2)
        return create_model(name)


def _resolve(model_or_name: nn.Module | str, input_size, device) -> tuple[nn.Module, str, tuple[int, ...]]:
    if isinstance(model_or_name, str):
        model = build_model(model_or_name, device=device or "meta")
        name = model_or_name
    else:
        model = model_or_name
        name = model_label(model)
    if input_size is None:
        info = get_model_info(model, default=None)
        if info is None:
            raise ValueError(f"{name} has no registry input size; pass input_size, e.g. (3, 224, 224)")
        input_size = info.input_size
    return model, name, parse_input_size(input_size)


@contextlib.contextmanager
def _input_errors(model: nn.Module, size: tuple[int, ...]):
    """A forward pass that fails on the input's shape becomes a ValueError naming the size."""
    try:
        yield
    except RuntimeError as e:
        name = model_label(model)
        info = get_model_info(model, default=None)
        expected = info.input_size if info is not None else None
        hint = f"; its paper uses {'x'.join(map(str, expected))}" if expected else ""
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{name} cannot run on input {'x'.join(map(str, size))}{hint} ({first})") from e


def _device_of(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def profile(model_or_name: nn.Module | str, input_size: Sequence[int] | str | None = None) -> tuple[int, int]:
    """(parameters, MACs for one image): the cheap numbers, on the meta device for a name."""
    model, _, size = _resolve(model_or_name, input_size, None)
    x = torch.empty(1, *size, device=_device_of(model))
    with _input_errors(model, size):
        tracer = count_ops(model, x)
    return sum(p.numel() for p in model.parameters()), sum(tracer.total.macs.values())


def summary(
    model_or_name: nn.Module | str,
    input_size: Sequence[int] | str | None = None,
    *,
    batch_size: int = 1,
    dtype: torch.dtype = torch.float32,
    depth: int | None = None,
    optimizer: str = "momentum",
    device: str | torch.device | None = None,
) -> Summary:
    """Per-layer table and totals for one forward pass of one image.

    ``model_or_name``: a module (run where its parameters are, or on ``device``) or a registered
    name (built and run on ``device``, by default meta). ``input_size``: (C, H, W), default the model's
    input size in its registry info (``get_model_info(model).input_size``). ``batch_size``,
    ``dtype`` and ``optimizer`` ("sgd", "momentum", "adam") only shape the memory estimate; counts are per image. ``depth``: show modules down
    to this nesting level, deeper ones folded into their block; None shows every layer.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be >= 1 or None, got {depth}")
    if optimizer not in OPTIMIZER_STATES:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {', '.join(OPTIMIZER_STATES)}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
    model, name, size = _resolve(model_or_name, input_size, device)
    x = torch.empty(1, *size, device=device if device is not None and not isinstance(model_or_name, str) else _device_of(model))
    with _input_errors(model, size), inference(model), Tracer(model, image=size[1:]) as tracer:
        tracer.start(x)
        model(x)

    rows = _rows(model, tracer.stats, depth, tracer.used_params)
    macs, others = Counter(), Counter()
    activations = 0
    for stats in tracer.stats.values():
        macs.update(stats.macs)
        others.update(stats.other_ops)
        activations += stats.activations
    unused = sum(p.numel() for p in model.parameters() if id(p) not in tracer.used_params)
    return Summary(
        model_name=name,
        input_size=size,
        dtype=dtype,
        batch_size=batch_size,
        rows=rows,
        total_params=sum(p.numel() for p in model.parameters()),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        macs=sum(macs.values()),
        other_ops=sum(others.values()),
        activations=activations,
        macs_by_kind=dict(macs),
        other_ops_by_kind=dict(others),
        unused_params=unused,
        uncounted=dict(tracer.uncounted),
        optimizer=optimizer,
    )


def _depth(name: str) -> int:
    return 0 if name == "" else name.count(".") + 1


def _rows(model: nn.Module, stats: dict[str, ModuleStats], depth: int | None, used: set[int]) -> list[LayerRow]:
    """Rows in the order the layers finish (a container's own ops: where they start); every op,
    parameter and activation in exactly one row.

    A module at level ``depth`` gets one row for its whole subtree. Above that level, a leaf
    gets a row, and so does a container whose own forward computed something (a residual
    addition, attention scores) or holds parameters directly (a class token).
    """
    modules = dict(model.named_modules())
    # A module whose weights its parent reads directly (MultiheadAttention's out_proj) never
    # runs itself: its parameters belong to the nearest ancestor that ran.
    adopted: dict[str, list[nn.Parameter]] = {}
    for name, module in modules.items():
        if stats[name].calls == 0 and name:
            owned = [p for p in module.parameters(recurse=False) if id(p) in used]
            parent = name
            while parent and stats[parent].calls == 0:
                parent = parent.rpartition(".")[0]
            adopted.setdefault(parent, []).extend(owned)
    rows: list[tuple[int, LayerRow]] = []
    for name, module in modules.items():
        s = stats[name]
        if s.calls == 0:
            continue
        level = _depth(name)
        if depth is not None and level > depth:
            continue
        is_leaf = not any(True for _ in module.children())
        folded = depth is not None and level == depth and not is_leaf
        if folded:
            total = ModuleStats()
            params = list(module.parameters())
            prefix = name + "."
            for other, t in stats.items():
                if other == name or other.startswith(prefix):
                    total.add(t)
        else:
            total = s
            params = list(module.parameters(recurse=False)) + adopted.get(name, [])
            own_work = sum(s.macs.values()) or sum(s.other_ops.values()) or s.activations or params
            if not is_leaf and not own_work:
                continue
        kind = type(module).__name__
        if not is_leaf and not folded:
            kind += " (own ops)"
        rows.append(
            (
                s.first_op if (not is_leaf and not folded and s.first_op >= 0) else s.order,
                LayerRow(
                    name=name or "(model)",
                    type=kind,
                    depth=level,
                    output_shape=s.output_shape[1:] if s.output_shape else None,
                    params=sum(p.numel() for p in params),
                    trainable_params=sum(p.numel() for p in params if p.requires_grad),
                    macs=sum(total.macs.values()),
                    other_ops=sum(total.other_ops.values()),
                    activations=total.activations,
                    field=s.field,
                    calls=s.calls,
                ),
            )
        )
    return [row for _, row in sorted(rows, key=lambda r: r[0])]


# --- real-time video ------------------------------------------------------------------------
def parse_video(text: str) -> tuple[int, int, float]:
    """``"1920x1080@30"`` -> (1920, 1080, 30.0)."""
    m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*@\s*(\d+(?:\.\d+)?)\s*", text)
    if not m or int(m[1]) < 1 or int(m[2]) < 1 or float(m[3]) <= 0:
        raise ValueError(f"bad video format {text!r}; expected WIDTHxHEIGHT@FPS such as 1920x1080@30")
    return int(m[1]), int(m[2]), float(m[3])


def video_compute(s: Summary, video: str | tuple[int, int, float]) -> VideoCompute:
    """What running the summarised model on a ``WIDTHxHEIGHT@FPS`` stream costs per second."""
    width, height, fps = parse_video(video) if isinstance(video, str) else video
    image = math.prod(s.input_size[1:])
    return VideoCompute(
        width=width,
        height=height,
        fps=fps,
        conv_macs=s.macs_by_kind.get("conv", 0),
        scale=width * height / image,
        all_macs=s.macs,
    )
