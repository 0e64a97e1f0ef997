"""One table per model: what each layer outputs, holds, computes and sees.

``summary(model)`` runs one forward pass of a single image under a
:class:`~cnnlab.analysis.counting.Tracer` (on ``torch.device("meta")`` when given a model
name, so nothing is allocated and even the largest models take a second) and returns a
:class:`Summary`: one :class:`LayerRow` per layer, the totals, and the memory a training step
needs. ``profile(model)`` is the cheap version: parameters and MACs only.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from cnnlab.analysis.counting import ModuleStats, Tracer, count_ops, inference
from cnnlab.analysis.receptive_field import Field
from cnnlab.models import create_model

__all__ = [
    "LayerRow",
    "OPTIMIZER_STATES",
    "Summary",
    "TrainingMemory",
    "VideoCompute",
    "build_model",
    "parse_input_size",
    "profile",
    "summary",
    "video_compute",
]

# Values an optimizer keeps per parameter: SGD none, SGD with momentum one velocity, Adam/AdamW
# two moment estimates.
OPTIMIZER_STATES: dict[str, int] = {"sgd": 0, "momentum": 1, "adam": 2}


@dataclass(frozen=True)
class LayerRow:
    """One row of the summary: a layer, a block collapsed by ``depth``, or a container's own ops."""

    name: str  # qualified module name, "features.0"; "(model)" for the model's own ops
    type: str  # class name; "Bottleneck (own ops)" for what a container computes itself
    depth: int  # nesting level, 1 = child of the model
    output_shape: tuple[int, ...] | None  # one image, batch dimension dropped
    params: int  # parameters of this layer (of the whole block when collapsed)
    trainable_params: int
    macs: int  # multiply-accumulates for one image
    other_ops: int  # every other arithmetic op for one image (see counting rules)
    activations: int  # values of fresh tensors produced, one image (0 for in-place and views)
    field: Field | None  # receptive field of the output in input pixels; None when untracked
    calls: int = 1  # times the module ran in one forward (shared modules run more than once)


@dataclass(frozen=True)
class TrainingMemory:
    """Estimate of the memory one training step needs (device memory, excluding workspace).

    weights + gradients (one per weight) + optimizer state (``states`` per weight) + the
    activations saved for the backward pass (every fresh layer output and the input, for the
    whole batch). Frameworks' allocator overhead, cuDNN workspaces and temporaries inside a
    layer are not included, so read it as a lower bound.
    """

    batch_size: int
    bytes_per_value: int  # of the dtype everything is stored in
    optimizer: str
    weights: int  # bytes
    gradients: int
    optimizer_state: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer_state + self.activations


@dataclass
class Summary:
    """The numbers the lectures compute by hand, for one model and input size."""

    model_name: str
    input_size: tuple[int, ...]  # (C, H, W) of one image
    dtype: torch.dtype
    batch_size: int  # for the training-memory estimate; counts are per image
    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    macs: int  # multiply-accumulates, one image: the papers' "FLOPs"
    other_ops: int
    activations: int  # values of all fresh layer outputs, one image (input excluded)
    macs_by_kind: dict[str, int] = field(default_factory=dict)  # conv, linear, matmul
    other_ops_by_kind: dict[str, int] = field(default_factory=dict)
    unused_params: int = 0  # in modules that never ran (auxiliary heads in eval mode)
    uncounted: dict[str, int] = field(default_factory=dict)  # computing ops with no counting rule
    optimizer: str = "momentum"

    @property
    def flops(self) -> int:
        """Floating-point operations, counting a multiply and an add per MAC: 2 x macs."""
        return 2 * self.macs

    @property
    def input_values(self) -> int:
        return math.prod(self.input_size)

    @property
    def bytes_per_value(self) -> int:
        return torch.empty((), dtype=self.dtype, device="meta").element_size()

    @property
    def forward_memory(self) -> int:
        """Bytes of the input and every layer output of one image's forward pass."""
        return (self.input_values + self.activations) * self.bytes_per_value

    @property
    def training_memory(self) -> TrainingMemory:
        b = self.bytes_per_value
        return TrainingMemory(
            batch_size=self.batch_size,
            bytes_per_value=b,
            optimizer=self.optimizer,
            weights=self.total_params * b,
            gradients=self.trainable_params * b,
            optimizer_state=OPTIMIZER_STATES[self.optimizer] * self.trainable_params * b,
            activations=self.batch_size * (self.input_values + self.activations) * b,
        )

    def to_dict(self) -> dict[str, Any]:
        from cnnlab.analysis.format import summary_dict

        return summary_dict(self)

    def to_markdown(self) -> str:
        from cnnlab.analysis.format import summary_markdown

        return summary_markdown(self)

    def to_csv(self) -> str:
        from cnnlab.analysis.format import summary_csv

        return summary_csv(self)

    def __rich_console__(self, console, options):
        from cnnlab.analysis.format import summary_renderable

        yield summary_renderable(self, width=options.max_width)

    def __str__(self) -> str:
        from cnnlab.analysis.format import render_text

        return render_text(self)


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
        name = getattr(model, "model_name", type(model).__name__)
    if input_size is None:
        input_size = getattr(model, "default_input_size", None)
        if input_size is None:
            raise ValueError(f"{name} has no default_input_size; pass input_size, e.g. (3, 224, 224)")
    return model, name, parse_input_size(input_size)


@contextlib.contextmanager
def _input_errors(model: nn.Module, size: tuple[int, ...]):
    """A forward pass that fails on the input's shape becomes a ValueError naming the size."""
    try:
        yield
    except RuntimeError as e:
        name = getattr(model, "model_name", type(model).__name__)
        expected = getattr(model, "default_input_size", None)
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
    ``default_input_size``. ``batch_size``, ``dtype`` and ``optimizer`` ("sgd", "momentum",
    "adam") only shape the memory estimate; counts are per image. ``depth``: show modules down
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
@dataclass(frozen=True)
class VideoCompute:
    """Compute to run a network on every frame of a video, the lectures' way.

    Convention: the convolutional layers slide over the whole frame, so their MACs scale with
    the pixel count (frame pixels / input pixels); the fully connected head is left out (it
    is tied to the crop size), and one MAC counts as one "FLOP", as in the papers' tables.
    ``flops_per_second`` doubles that for readers who count a multiply and an add.
    """

    width: int
    height: int
    fps: float
    conv_macs: int  # convolution MACs for one input image
    scale: float  # frame pixels / input pixels
    all_macs: int  # every MAC for one input image (for the whole-network alternative)

    @property
    def macs_per_second(self) -> float:
        return self.conv_macs * self.scale * self.fps

    @property
    def flops_per_second(self) -> float:
        return 2 * self.macs_per_second

    @property
    def whole_network_macs_per_second(self) -> float:
        return self.all_macs * self.scale * self.fps


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
