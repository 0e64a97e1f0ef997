"""A model summary as data and as text.

The records :func:`cnnlab.analysis.summary` fills (:class:`Summary`, one :class:`LayerRow` per
layer, :class:`TrainingMemory`, :class:`VideoCompute`) and their renderings: a rich table for
the terminal, Markdown, CSV and a JSON-ready dict. The tables go through the one table writer,
:mod:`cnnlab.analysis.table`. Nothing here runs a model.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from cnnlab.analysis.receptive_field import Field
from cnnlab.analysis.table import to_csv, to_markdown, to_rich

__all__ = [
    "LayerRow",
    "MEMORY_DTYPES",
    "OPTIMIZER_STATES",
    "Summary",
    "TrainingMemory",
    "VideoCompute",
    "human",
    "mib",
    "render_text",
    "shape_text",
    "summary_csv",
    "summary_dict",
    "summary_markdown",
    "summary_renderable",
    "total_lines",
    "video_lines",
]

# Values an optimizer keeps per parameter: SGD none, SGD with momentum one velocity, Adam/AdamW
# two moment estimates.
OPTIMIZER_STATES: dict[str, int] = {"sgd": 0, "momentum": 1, "adam": 2}
# Storage types the memory estimates are offered in (`cnnlab summary --dtype`).
MEMORY_DTYPES = ("float32", "bfloat16", "float16")


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
        return summary_dict(self)

    def to_markdown(self) -> str:
        return summary_markdown(self)

    def to_csv(self) -> str:
        return summary_csv(self)

    def __rich_console__(self, console, options):
        yield summary_renderable(self, width=options.max_width)

    def __str__(self) -> str:
        return render_text(self)


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


# --- text -------------------------------------------------------------------------------------
_PREFIXES = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]


def human(value: float, unit: str = "", *, digits: int = 3) -> str:
    """138357544 -> '138 M', 15470264320 -> '15.5 G' (3 significant digits, SI prefixes)."""
    for scale, prefix in _PREFIXES:
        if abs(value) >= scale:
            return f"{_sig(value / scale, digits)} {prefix}{unit}"
    return f"{_sig(value, digits)} {unit}".rstrip()


def _sig(x: float, digits: int) -> str:
    text = f"{x:.{digits}g}"
    return f"{float(text):,.0f}" if "e" in text else text


def mib(num_bytes: float) -> str:
    """Bytes as MB of 2^20 bytes (the lectures' "15.2M x 4 bytes ~= 58 MB" convention)."""
    return f"{num_bytes / 2**20:,.1f} MB"


def shape_text(shape: tuple[int, ...] | None) -> str:
    return "x".join(str(v) for v in shape) if shape else "-"


def _field_cells(row: LayerRow) -> tuple[str, str, str]:
    f = row.field
    if f is None:
        return "-", "-", "-"
    return f.describe("size"), f.describe("jump"), f.describe("start")


COLUMNS = ("layer", "type", "output", "params", "MACs", "other ops", "activations", "MB", "RF", "jump", "start")
NUMERIC = ("params", "MACs", "other ops", "activations", "MB", "RF", "jump", "start")  # right-aligned


def _row_cells(s: Summary, row: LayerRow) -> list[str]:
    rf, jump, start = _field_cells(row)
    return [
        row.name + (f" (x{row.calls})" if row.calls > 1 else ""),
        row.type,
        shape_text(row.output_shape),
        f"{row.params:,}",
        f"{row.macs:,}",
        f"{row.other_ops:,}",
        f"{row.activations:,}",
        f"{row.activations * s.bytes_per_value / 2**20:,.2f}",
        rf,
        jump,
        start,
    ]


def _dtype_name(s: Summary) -> str:
    return str(s.dtype).removeprefix("torch.")


def total_lines(s: Summary) -> list[tuple[str, str]]:
    """(label, value) pairs of the totals, in reading order."""
    mem = s.training_memory
    b = s.bytes_per_value
    lines = [
        ("parameters", f"{s.total_params:,} total, {s.trainable_params:,} trainable ({human(s.total_params)})"),
        (
            "MACs (multiply-accumulates)",
            f"{s.macs:,} = {human(s.macs)} per image"
            + (" (" + ", ".join(f"{k} {human(v)}" for k, v in sorted(s.macs_by_kind.items())) + ")" if s.macs_by_kind else ""),
        ),
        ("FLOPs = 2 x MACs", f"{human(s.flops, 'FLOP')} per image (papers' \"FLOPs\" columns usually mean MACs)"),
        (
            "other ops (norm, pool, activations, adds)",
            f"{s.other_ops:,} = {human(s.other_ops)} per image"
            + (" (" + ", ".join(f"{k} {human(v)}" for k, v in sorted(s.other_ops_by_kind.items())) + ")" if s.other_ops_by_kind else ""),
        ),
        (
            f"forward memory, 1 image ({_dtype_name(s)})",
            f"{s.input_values:,} input + {s.activations:,} layer outputs = {human(s.input_values + s.activations)} values"
            f" x {b} B = {mib(s.forward_memory)}",
        ),
        (
            f"training step, batch {mem.batch_size} ({mem.optimizer})",
            f"{mib(mem.total)} = weights {mib(mem.weights)} + grads {mib(mem.gradients)}"
            f" + optimizer state {mib(mem.optimizer_state)} + saved activations {mib(mem.activations)}",
        ),
    ]
    if s.unused_params:
        lines.append(("parameters never run", f"{s.unused_params:,} (modules unused in eval mode, e.g. auxiliary heads)"))
    if s.uncounted:
        lines.append(("ops without a counting rule", ", ".join(f"{k} x{v}" for k, v in sorted(s.uncounted.items()))))
    return lines


def video_lines(s: Summary, v: VideoCompute) -> list[tuple[str, str]]:
    image = "x".join(str(d) for d in s.input_size[1:])
    return [
        (
            f"video {v.width}x{v.height} @ {v.fps:g} fps",
            f"conv MACs {human(v.conv_macs)} per {image} image x {v.scale:.2f} (frame/input pixels) x {v.fps:g} fps"
            f" = {human(v.macs_per_second, 'FLOPS')} (1 MAC = 1 FLOP, the lectures' convention)",
        ),
        (
            "  same, other conventions",
            f"{human(v.flops_per_second, 'FLOPS')} counting 2 FLOPs per MAC;"
            f" {human(v.whole_network_macs_per_second, 'MAC/s')} with the fully connected head scaled too",
        ),
    ]


# Columns a narrow terminal drops first (the full set needs about 140 characters).
_OPTIONAL = [("other ops", 140), ("MB", 140), ("start", 115), ("jump", 115)]


def summary_renderable(s: Summary, video: VideoCompute | None = None, *, width: int | None = None) -> Group:
    """The table and totals; at ``width`` below ~140 characters the least needed columns go."""
    title = f"{s.model_name}: input {shape_text(s.input_size)}, per image, activations in {_dtype_name(s)}"
    dropped = {col for col, needs in _OPTIONAL if width is not None and width < needs}
    keep = [i for i, col in enumerate(COLUMNS) if col not in dropped]
    cells = [_row_cells(s, row) for row in s.rows]
    table = to_rich([COLUMNS[i] for i in keep], [[c[i] for i in keep] for c in cells], title=title, right=NUMERIC,
                    wrap=("type", "layer"), boxed=False)
    totals = Table.grid(padding=(0, 2))
    totals.add_column(style="bold")
    totals.add_column()
    for label, value in total_lines(s) + (video_lines(s, video) if video else []):
        totals.add_row(label, value)
    note = Text(
        "RF: receptive field in input pixels; jump: input pixels between neighbouring units; "
        "start: centre of the first unit's field. MB = 2^20 bytes.",
        style="dim",
    )
    return Group(table, Text(""), totals, note)


def render_text(s: Summary, video: VideoCompute | None = None, *, width: int = 160) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    console.print(summary_renderable(s, video))
    return console.file.getvalue()


def summary_dict(s: Summary, video: VideoCompute | None = None) -> dict[str, Any]:
    mem = s.training_memory
    data: dict[str, Any] = {
        "model": s.model_name,
        "input_size": list(s.input_size),
        "dtype": _dtype_name(s),
        "rows": [
            {
                "name": r.name,
                "type": r.type,
                "depth": r.depth,
                "output_shape": list(r.output_shape) if r.output_shape else None,
                "params": r.params,
                "trainable_params": r.trainable_params,
                "macs": r.macs,
                "other_ops": r.other_ops,
                "activations": r.activations,
                "activation_bytes": r.activations * s.bytes_per_value,
                "receptive_field": None if r.field is None else ("global" if r.field.is_global else list(r.field.size)),
                "jump": None if r.field is None else list(r.field.jump),
                "start": None if r.field is None else list(r.field.start),
                "calls": r.calls,
            }
            for r in s.rows
        ],
        "total_params": s.total_params,
        "trainable_params": s.trainable_params,
        "macs": s.macs,
        "flops": s.flops,
        "macs_by_kind": s.macs_by_kind,
        "other_ops": s.other_ops,
        "other_ops_by_kind": s.other_ops_by_kind,
        "input_values": s.input_values,
        "activations": s.activations,
        "forward_memory_bytes": s.forward_memory,
        "training_memory": {
            "batch_size": mem.batch_size,
            "optimizer": mem.optimizer,
            "weights_bytes": mem.weights,
            "gradients_bytes": mem.gradients,
            "optimizer_state_bytes": mem.optimizer_state,
            "activations_bytes": mem.activations,
            "total_bytes": mem.total,
        },
        "unused_params": s.unused_params,
        "uncounted_ops": s.uncounted,
    }
    if video is not None:
        data["video"] = {
            "width": video.width,
            "height": video.height,
            "fps": video.fps,
            "conv_macs_per_image": video.conv_macs,
            "pixel_scale": video.scale,
            "macs_per_second": video.macs_per_second,
            "flops_per_second_2x": video.flops_per_second,
            "whole_network_macs_per_second": video.whole_network_macs_per_second,
        }
    return data


def summary_markdown(s: Summary, video: VideoCompute | None = None) -> str:
    lines = [
        f"**{s.model_name}**, input {shape_text(s.input_size)}, per image",
        "",
        to_markdown(COLUMNS, [_row_cells(s, row) for row in s.rows], right=NUMERIC).rstrip("\n"),
        "",
    ]
    for label, value in total_lines(s) + (video_lines(s, video) if video else []):
        lines.append(f"- **{label.strip()}**: {value}")
    return "\n".join(lines) + "\n"


def summary_csv(s: Summary) -> str:
    headers = ["name", "type", "output_shape", "params", "macs", "other_ops", "activations", "receptive_field", "jump", "start"]
    rows = [[r.name, r.type, shape_text(r.output_shape), r.params, r.macs, r.other_ops, r.activations, *_field_cells(r)]
            for r in s.rows]
    return to_csv(headers, rows)
