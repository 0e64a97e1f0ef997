"""Convolution arithmetic as the lectures do it by hand, with the working shown.

Output size of a convolution or pooling over an N-pixel side, kernel F, stride S, padding P,
dilation D (Dumoulin & Visin 2016, "A guide to convolution arithmetic for deep learning",
https://arxiv.org/abs/1603.07285):

    out = floor((N + 2P - D(F - 1) - 1) / S) + 1        (= (N - F + 2P) / S + 1 when D = 1)

Parameters of a convolution with C_in input channels, K filters, G groups:
K * (F * F * C_in / G + 1) with a bias, K * F * F * C_in / G without. Padding (F - 1) / 2 with
stride 1 keeps the size ("same" padding; odd F only).
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Sequence

__all__ = [
    "ConvLayer",
    "PoolResult",
    "conv_layer",
    "conv_output_size",
    "conv_params",
    "parse_matrix",
    "pool2d",
    "same_padding",
]


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


def conv_output_size(
    size: int, kernel: int, *, stride: int = 1, padding: int = 0, dilation: int = 1, ceil_mode: bool = False
) -> int:
    """Output side of a convolution or pooling: floor((N + 2P - D(F-1) - 1) / S) + 1.

    PyTorch floors when the windows do not tile the input exactly (the last partial window
    is dropped); ``ceil_mode=True`` keeps it, as pooling layers may.
    """
    _check_positive(size=size, kernel=kernel, stride=stride, dilation=dilation)
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if span < 0:
        raise ValueError(
            f"a {kernel}x{kernel} kernel (dilation {dilation}) does not fit a {size}-pixel input with padding {padding}"
        )
    steps = -(-span // stride) if ceil_mode else span // stride
    return steps + 1


def same_padding(kernel: int, dilation: int = 1) -> int:
    """Padding that keeps the size at stride 1: (F - 1) / 2, or D(F - 1) / 2 when dilated."""
    _check_positive(kernel=kernel, dilation=dilation)
    reach = dilation * (kernel - 1)
    if reach % 2:
        raise ValueError(f"a {kernel}x{kernel} kernel (dilation {dilation}) has no symmetric 'same' padding; use an odd kernel")
    return reach // 2


def conv_params(in_channels: int, out_channels: int, kernel: int | tuple[int, int], *, bias: bool = True, groups: int = 1) -> int:
    """Weights (+ biases) of a convolution: K * (F_h * F_w * C_in / G + 1)."""
    _check_positive(in_channels=in_channels, out_channels=out_channels, groups=groups)
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    return out_channels * (kh * kw * in_channels // groups + (1 if bias else 0))


@dataclass(frozen=True)
class ConvLayer:
    """One convolution layer's arithmetic, with the working for ``cnnlab conv layer``."""

    input: tuple[int, int, int]  # H, W, C (the lectures' notation)
    filters: int
    kernel: int
    stride: int
    padding: int
    dilation: int
    groups: int
    bias: bool
    output: tuple[int, int, int]  # H, W, K

    @property
    def params(self) -> int:
        return conv_params(self.input[2], self.filters, self.kernel, bias=self.bias, groups=self.groups)

    @property
    def macs(self) -> int:
        """One MAC per weight per output position (biases are additions, not counted)."""
        h, w, k = self.output
        return h * w * k * self.kernel * self.kernel * self.input[2] // self.groups

    def explain(self) -> list[str]:
        (h, w, c), (oh, ow, k) = self.input, self.output
        f, s, p, d = self.kernel, self.stride, self.padding, self.dilation
        reach = f if d == 1 else d * (f - 1) + 1
        lines = [f"input {h}x{w}x{c} (H x W x C), {k} filter{'s' if k > 1 else ''} {f}x{f}, stride {s}, padding {p}"
                 + (f", dilation {d} (a {f}x{f} kernel spans {reach} pixels)" if d != 1 else "")
                 + (f", {self.groups} groups" if self.groups != 1 else "")]
        for axis, n, o in (("height", h, oh), ("width", w, ow)):
            if axis == "width" and w == h:
                break
            exact = (n + 2 * p - reach) / s + 1
            note = "" if exact == o else "  (not a whole number: windows do not tile the input; PyTorch floors)"
            lines.append(f"output {axis}: (N - F + 2P) / S + 1 = ({n} - {reach} + 2*{p}) / {s} + 1 = {exact:g} -> {o}{note}")
        lines.append(f"output: {oh}x{ow}x{k} (one channel per filter)")
        per = f * f * c // self.groups
        bias = " + 1 bias" if self.bias else ""
        lines.append(
            f"parameters: each filter has {f}*{f}*{c // self.groups} = {per} weights{bias};"
            f" {k} filter{'s' if k > 1 else ''} x {per + self.bias} = {self.params:,}"
        )
        lines.append(f"MACs: {oh}*{ow}*{k} outputs x {per} weights each = {self.macs:,}")
        if s == 1 and d == 1 and f % 2 == 1:
            lines.append(f"'same' padding for a {f}x{f} kernel at stride 1: (F - 1) / 2 = {same_padding(f)}")
        return lines


def conv_layer(
    input_hwc: Sequence[int],
    filters: int,
    kernel: int,
    *,
    stride: int = 1,
    padding: int | str = 0,
    dilation: int = 1,
    groups: int = 1,
    bias: bool = True,
) -> ConvLayer:
    """The lectures' exercise: input H x W x C, K filters F x F, stride S, padding P (or "same")."""
    if len(input_hwc) != 3:
        raise ValueError(f"input must be (height, width, channels), got {tuple(input_hwc)}")
    h, w, c = (int(v) for v in input_hwc)
    _check_positive(height=h, width=w, channels=c, filters=filters)
    if padding == "same":
        padding = same_padding(kernel, dilation)
    elif not isinstance(padding, int):
        raise ValueError(f"padding must be an integer or 'same', got {padding!r}")
    conv_params(c, filters, kernel, bias=bias, groups=groups)  # validates groups
    out = (
        conv_output_size(h, kernel, stride=stride, padding=padding, dilation=dilation),
        conv_output_size(w, kernel, stride=stride, padding=padding, dilation=dilation),
        filters,
    )
    return ConvLayer((h, w, c), filters, kernel, stride, padding, dilation, groups, bias, out)


@dataclass(frozen=True)
class PoolResult:
    """A pooling worked through window by window."""

    output: list[list[float]]
    windows: list[tuple[int, int, list[float], float]]  # (out row, out col, window values, result)
    mode: str
    size: int
    stride: int

    def explain(self) -> list[str]:
        lines = [f"{self.size}x{self.size} {self.mode} pooling, stride {self.stride}:"]
        for i, j, values, result in self.windows:
            shown = ", ".join(f"{v:g}" for v in values)
            lines.append(f"  out[{i}][{j}] = {self.mode}({shown}) = {result:g}")
        return lines


def pool2d(matrix: Sequence[Sequence[float]], size: int = 2, *, stride: int | None = None, mode: str = "max") -> PoolResult:
    """Max or average pooling of a small matrix, keeping every window for the explanation."""
    if mode not in ("max", "avg"):
        raise ValueError(f"unknown pooling mode {mode!r}; expected 'max' or 'avg'")
    rows = [list(map(float, r)) for r in matrix]
    if not rows or any(len(r) != len(rows[0]) for r in rows):
        raise ValueError("matrix must be a non-empty list of rows of equal length")
    stride = stride or size
    out_h = conv_output_size(len(rows), size, stride=stride)
    out_w = conv_output_size(len(rows[0]), size, stride=stride)
    output, windows = [], []
    for i in range(out_h):
        out_row = []
        for j in range(out_w):
            values = [rows[i * stride + a][j * stride + b] for a in range(size) for b in range(size)]
            result = max(values) if mode == "max" else math.fsum(values) / len(values)
            out_row.append(result)
            windows.append((i, j, values, result))
        output.append(out_row)
    return PoolResult(output, windows, mode, size, stride)


def parse_matrix(text: str) -> list[list[float]]:
    """``"1 2; 3 4"`` (rows separated by ``;``, values by spaces or commas) or ``"[[1, 2], [3, 4]]"``."""
    try:
        if text.strip().startswith("["):
            return [[float(v) for v in row] for row in ast.literal_eval(text)]
        return [[float(v) for v in row.replace(",", " ").split()] for row in text.split(";") if row.strip()]
    except (ValueError, SyntaxError, TypeError) as e:
        raise ValueError(f"bad matrix {text!r} ({e}); expected rows separated by ';', e.g. \"1 2; 3 4\", "
                         "or a Python list of lists") from None
