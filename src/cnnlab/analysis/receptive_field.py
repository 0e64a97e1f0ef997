"""Receptive fields: the patch of the input image one unit of a layer can see.

For one layer with kernel ``k``, stride ``s``, padding ``p`` and dilation ``d`` applied to a
map whose units have field ``r``, are ``j`` input pixels apart ("jump", the effective stride)
and whose first unit is centred on input pixel ``start``:

    r_out     = r_in + (k - 1) * d * j_in
    j_out     = j_in * s
    start_out = start_in + ((k - 1) * d / 2 - p) * j_in

(Araujo, Norris, Sim 2019, "Computing Receptive Fields of Convolutional Neural Networks",
Distill, https://distill.pub/2019/computing-receptive-fields/). A stack of L n x n stride-1
convolutions therefore sees 1 + L(n - 1) pixels: two 3x3 see 5x5, three see 7x7.

For whole networks :class:`Field` values travel with the tensors of a forward pass (the
:class:`~cnnlab.analysis.tracer.Tracer` calls :func:`field_after` for every ATen op):
convolutions and poolings grow them by the rule above, elementwise ops, concatenations and
additions take the largest field of their inputs, and ops that mix every position (global
pooling, a fully connected layer on flattened features, attention) make the field the whole
image ("global").
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Callable, ClassVar, Sequence

from torch import Tensor

from cnnlab.analysis.ops import (
    ADAPTIVE_POOLS,
    CONVS,
    FUSED_ATTENTION,
    INTERPOLATIONS,
    MATMULS,
    NEAREST,
    REDUCTIONS,
    WINDOW_POOLS,
    OpCall,
    aten,
    matmul_operands,
)

__all__ = [
    "Field",
    "LayerSpec",
    "StackWorking",
    "field_after",
    "field_of_stack",
    "grow",
    "stack_working",
    "stacked_field",
    "widest",
]


@dataclass(frozen=True)
class Field:
    """The receptive field of the units of one feature map, per spatial axis (H, W)."""

    size: tuple[float, ...]  # field size in input pixels; the whole image when `is_global`
    jump: tuple[float, ...]  # input pixels between neighbouring units (the effective stride)
    start: tuple[float, ...]  # centre of the first unit's field, in input pixel indices
    grid: tuple[int, ...]  # the map's own size in units (positions per channel)
    is_global: bool = False  # every unit sees the whole input

    @classmethod
    def of_input(cls, spatial: Sequence[int]) -> Field:
        """The field of the input image itself: each pixel sees itself."""
        n = len(spatial)
        return cls(size=(1,) * n, jump=(1,) * n, start=(0,) * n, grid=tuple(spatial))

    def made_global(self, image: Sequence[int]) -> Field:
        return replace(self, size=tuple(image), is_global=True)

    @property
    def positions(self) -> int:
        return math.prod(self.grid)

    def describe(self, what: str = "size") -> str:
        """``size``, ``jump`` or ``start`` as text: ``7`` for square, ``7x5`` otherwise."""
        if what == "size" and self.is_global:
            return "global"
        return _axes_text(getattr(self, what))


def _axes_text(values: Sequence[float]) -> str:
    texts = [f"{v:g}" for v in values]
    return texts[0] if len(set(texts)) == 1 else "x".join(texts)


def _per_axis(value: int | Sequence[int], n: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(value)
    if len(value) == 1:
        return value * n
    return value[-n:] if len(value) >= n else (1,) * (n - len(value)) + value


def grow(
    field: Field,
    kernel: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    grid: Sequence[int] | None = None,
) -> Field:
    """The field after one convolution or pooling layer (the rule in the module docstring).

    Kernel, stride, padding and dilation are ints or per-axis tuples; a tuple longer than the
    field's axes applies its last entries (a 3-D pooling over (channels, H, W) as in LRN).
    ``grid`` is the output map's size in units, when known.
    """
    n = len(field.size)
    k, s, p, d = (_per_axis(v, n) for v in (kernel, stride, padding, dilation))
    if field.is_global:
        return replace(field, jump=tuple(j * si for j, si in zip(field.jump, s)), grid=tuple(grid or field.grid))
    size = tuple(r + (ki - 1) * di * j for r, ki, di, j in zip(field.size, k, d, field.jump))
    start = tuple(st + ((ki - 1) * di / 2 - pi) * j for st, ki, di, pi, j in zip(field.start, k, d, p, field.jump))
    jump = tuple(j * si for j, si in zip(field.jump, s))
    return Field(size=size, jump=jump, start=start, grid=tuple(grid or field.grid))


def widest(fields: Sequence[Field]) -> Field:
    """The largest of several fields (branches meeting at an addition or a concatenation)."""
    return max(fields, key=lambda f: (f.is_global, math.prod(f.size)))


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a stack, for :func:`field_of_stack` and ``cnnlab conv field``."""

    kernel: int  # n for an n x n window
    stride: int = 1
    padding: int = 0
    dilation: int = 1

    @classmethod
    def parse(cls, text: str) -> LayerSpec:
        """``3`` (3x3, stride 1), ``2s2`` (2x2 stride 2), ``3s1p1``, ``3d2`` (dilation 2)."""
        m = re.fullmatch(r"(\d+)(?:s(\d+))?(?:p(\d+))?(?:d(\d+))?", text.strip())
        if not m:
            raise ValueError(f"bad layer {text!r}; expected KERNEL[sSTRIDE][pPADDING][dDILATION], e.g. 3, 2s2, 3s1p1, 3d2")
        k, s, p, d = (int(g) if g else default for g, default in zip(m.groups(), (None, 1, 0, 1)))
        if k < 1 or s < 1 or d < 1:
            raise ValueError(f"bad layer {text!r}: kernel, stride and dilation must be >= 1")
        return cls(kernel=k, stride=s, padding=p, dilation=d)

    def __str__(self) -> str:
        text = f"{self.kernel}x{self.kernel}"
        if self.stride != 1:
            text += f" stride {self.stride}"
        if self.padding:
            text += f" pad {self.padding}"
        if self.dilation != 1:
            text += f" dilation {self.dilation}"
        return text


def field_of_stack(layers: Sequence[LayerSpec]) -> list[Field]:
    """The field after each layer of a plain stack, starting from one input pixel (1-D view)."""
    field = Field.of_input((1,))
    fields = []
    for layer in layers:
        field = grow(field, layer.kernel, stride=layer.stride, padding=layer.padding, dilation=layer.dilation)
        fields.append(field)
    return fields


def stacked_field(num_layers: int, kernel: int) -> int:
    """Closed form for L stacked n x n stride-1 convolutions: 1 + L(n - 1)."""
    if num_layers < 0 or kernel < 1:
        raise ValueError(f"need num_layers >= 0 and kernel >= 1, got {num_layers} and {kernel}")
    return 1 + num_layers * (kernel - 1)


@dataclass(frozen=True)
class StackWorking:
    """A plain stack's receptive field layer by layer, with the working (``cnnlab conv field``)."""

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "layer", "kernel", "field r", "jump j", "start", "working: r_out = r_in + (k - 1) * dilation * j_in",
    )
    NUMERIC: ClassVar[tuple[str, ...]] = ("field r", "jump j", "start")

    layers: tuple[LayerSpec, ...]
    fields: tuple[Field, ...]  # after each layer, from one input pixel (1-D view)

    def rows(self) -> list[list[str]]:
        """One row per layer: its number, the layer, r, j, start and the rule with its numbers."""
        rows = []
        r_in, j_in = 1.0, 1.0
        for i, (spec, f) in enumerate(zip(self.layers, self.fields), start=1):
            working = f"{r_in:g} + ({spec.kernel} - 1) * {spec.dilation} * {j_in:g} = {f.size[0]:g}"
            rows.append([str(i), str(spec), f"{f.size[0]:g}", f"{f.jump[0]:g}", f"{f.start[0]:g}", working])
            r_in, j_in = f.size[0], f.jump[0]
        return rows

    def closed_form(self) -> str | None:
        """The 1 + L(n - 1) line when every layer is the same n x n stride-1, undilated window."""
        first = self.layers[0]
        if len({(s.kernel, s.stride, s.dilation) for s in self.layers}) != 1 or first.stride != 1 or first.dilation != 1:
            return None
        n, L = first.kernel, len(self.layers)
        return f"closed form for {L} stacked {n}x{n} stride-1 layers: 1 + L(n - 1) = 1 + {L}*({n} - 1) = {stacked_field(L, n)}"


def stack_working(layers: Sequence[LayerSpec | str]) -> StackWorking:
    """The field after each layer of a stack given as specs or texts such as ``"3"``, ``"2s2"``."""
    specs = tuple(LayerSpec.parse(s) if isinstance(s, str) else s for s in layers)
    if not specs:
        raise ValueError("need at least one layer, e.g. 3 3 3")
    return StackWorking(specs, tuple(field_of_stack(specs)))


# --- tracing a forward pass, one ATen op at a time ------------------------------------------------
def field_after(
    call: OpCall,
    in_fields: Sequence[Field],
    *,
    image: tuple[int, ...],
    batch: int,
    is_activation: Callable[[Tensor], bool],
) -> Field:
    """The field of ``call``'s result, given the fields of its inputs computed from the image.

    ``image``: the input's spatial size; ``batch``: images in the forward pass;
    ``is_activation(t)``: whether ``t`` carries a field (was computed from the image).
    """
    packet = call.packet
    base = widest(in_fields)
    first = call.result
    n = len(image)
    out_grid = tuple(first.shape[-n:]) if first is not None and first.dim() >= n + 1 else base.grid

    if packet in CONVS:
        k = tuple(call.args[1].shape[2:])
        if call.is_transposed_conv:
            # A transposed convolution spreads each unit over k outputs `stride` apart:
            # the jump shrinks by the stride and the field grows by (k - 1) new jumps.
            jump = tuple(j / s for j, s in zip(base.jump, _tail(call.arg("stride"), n)))
            thin = Field(base.size, jump, base.start, base.grid, base.is_global)
            return grow(thin, k, grid=out_grid)
        return grow(base, k, stride=call.arg("stride"), padding=call.arg("padding"), dilation=call.arg("dilation"),
                    grid=out_grid)
    if (packet in WINDOW_POOLS or packet is aten.constant_pad_nd) and not _spatial(call.args[0], base, n):
        return base  # a window over other axes (LRN's pool across channels) leaves the field alone
    if packet in WINDOW_POOLS:
        kernel = call.arg("kernel_size")
        stride = call.arg("stride") or kernel  # PyTorch: stride defaults to the kernel
        dilation = call.arg("dilation") or 1
        return grow(base, kernel, stride=stride, padding=call.arg("padding"), dilation=dilation, grid=out_grid)
    if packet in ADAPTIVE_POOLS:
        size_in = tuple(call.args[0].shape[-n:])
        if all(o == 1 for o in out_grid) and math.prod(size_in) > 1:
            return base.made_global(image)
        # Approximation: an adaptive pool as a fixed window of ceil(in/out), stride in // out.
        kernel = tuple(-(-i // o) for i, o in zip(size_in, out_grid))
        stride = tuple(max(i // o, 1) for i, o in zip(size_in, out_grid))
        return grow(base, kernel, stride=stride, grid=out_grid)
    if packet in FUSED_ATTENTION:
        return base.made_global(image)
    if packet in MATMULS:
        a, b = matmul_operands(call)
        if is_activation(a) and is_activation(b):
            return base.made_global(image)  # attention: every token sees every token
        # A weight applied per position (1x1 conv, a transformer's MLP) keeps the field; one
        # applied to a flattened map (a classifier on features) sees every position.
        rows = (a.numel() // a.shape[-1]) if is_activation(a) else (b.numel() // b.shape[-2])
        if rows // max(batch, 1) < base.positions:
            return base.made_global(image)
        return base
    if packet in REDUCTIONS:
        return _reduced(call, base, image)
    if packet in INTERPOLATIONS or packet in NEAREST:
        size_in = tuple(call.args[0].shape[-n:])
        jump = tuple(j * i / o for j, i, o in zip(base.jump, size_in, out_grid))
        return Field(base.size, jump, base.start, out_grid, base.is_global)
    if packet is aten.constant_pad_nd:
        pad = list(call.arg("pad"))
        before = [pad[2 * i] if 2 * i < len(pad) else 0 for i in range(n)][::-1]  # pad lists the last axis first
        start = tuple(s - p * j for s, p, j in zip(base.start, before, base.jump))
        return Field(base.size, base.jump, start, out_grid, base.is_global)
    return base


def _spatial(x: Tensor, base: Field, n: int) -> bool:
    """Whether ``x``'s last ``n`` axes are the map the field describes (N, C, H, W layout)."""
    return x.dim() >= n + 1 and tuple(x.shape[-n:]) == base.grid


def _reduced(call: OpCall, base: Field, image: tuple[int, ...]) -> Field:
    x = call.args[0]
    dims = call.arg("dim")
    if dims is None or dims == []:
        return base.made_global(image)
    dims = {d % x.dim() for d in ([dims] if isinstance(dims, int) else dims)}
    n = len(image)
    if _spatial(x, base, n) and dims & set(range(x.dim() - n, x.dim())):
        return base.made_global(image)  # global pooling over H, W
    if x.dim() == 3 and x.shape[1] >= base.positions and 1 in dims:
        return base.made_global(image)  # mean over a transformer's tokens
    return base


def _tail(value: Any, n: int) -> tuple[int, ...]:
    value = [value] if isinstance(value, int) else list(value)
    value = value * n if len(value) == 1 else value
    return tuple(value[-n:])
