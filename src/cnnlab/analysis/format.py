"""Turning a :class:`~cnnlab.analysis.summary.Summary` into tables: rich, Markdown, CSV, dict."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from cnnlab.analysis.summary import LayerRow, Summary, VideoCompute

__all__ = ["human", "render_text", "summary_csv", "summary_dict", "summary_markdown", "summary_renderable", "video_lines"]

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


def _columns() -> list[str]:
    return ["layer", "type", "output", "params", "MACs", "other ops", "activations", "MB", "RF", "jump", "start"]


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
    table = Table(title=title, title_justify="left", header_style="bold", pad_edge=False, box=None)
    numeric = {"params", "MACs", "other ops", "activations", "MB", "RF", "jump", "start"}
    dropped = {col for col, needs in _OPTIONAL if width is not None and width < needs}
    keep = [i for i, col in enumerate(_columns()) if col not in dropped]
    for i in keep:
        col = _columns()[i]
        table.add_column(col, justify="right" if col in numeric else "left", no_wrap=col not in ("type", "layer"),
                         overflow="fold")
    for row in s.rows:
        cells = _row_cells(s, row)
        table.add_row(*(cells[i] for i in keep))
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
    cols = _columns()
    right = {"params", "MACs", "other ops", "activations", "MB", "RF", "jump", "start"}
    lines = [
        f"**{s.model_name}**, input {shape_text(s.input_size)}, per image",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "|".join("---:" if c in right else "---" for c in cols) + "|",
    ]
    for row in s.rows:
        lines.append("| " + " | ".join(_row_cells(s, row)) + " |")
    lines.append("")
    for label, value in total_lines(s) + (video_lines(s, video) if video else []):
        lines.append(f"- **{label.strip()}**: {value}")
    return "\n".join(lines) + "\n"


def summary_csv(s: Summary) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["name", "type", "output_shape", "params", "macs", "other_ops", "activations", "receptive_field", "jump", "start"])
    for r in s.rows:
        rf, jump, start = _field_cells(r)
        writer.writerow([r.name, r.type, shape_text(r.output_shape), r.params, r.macs, r.other_ops, r.activations, rf, jump, start])
    return out.getvalue()
