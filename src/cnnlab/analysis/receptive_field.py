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

For whole networks :class:`Field` values travel with the tensors of a forward pass (see
:mod:`cnnlab.analysis.counting`): convolutions and poolings grow them by the rule above,
elementwise ops, concatenations and additions take the largest field of their inputs, and
ops that mix every position (global pooling, a fully connected layer on flattened features,
attention) make the field the whole image ("global").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

__all__ = ["Field", "LayerSpec", "field_of_stack", "grow", "stacked_field", "widest"]


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
        import re

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
