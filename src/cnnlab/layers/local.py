"""The locally connected layer: a convolution whose filters are not shared across positions.

Each output location (i, j) has its own ``out_chans x in_chans x k x k`` filter bank, so the
layer keeps the convolution's local receptive fields but drops weight sharing: the lectures'
"locally connected layer", used where features differ by position (aligned faces, e.g.
DeepFace, Taigman et al. 2014). PyTorch has none.

Computation: ``F.unfold`` cuts the input into its L = out_h * out_w patches, each of
in_chans * k * k values, and one ``einsum`` applies patch l's own weight matrix:

    y[b, o, l] = sum_p W[l, o, p] * patches[b, p, l] + bias[o, l]

Parameters: out_h * out_w * out_chans * in_chans * k * k weights, plus one bias per output
unit (out_chans * out_h * out_w), since biases are unshared too. The input size must be known
at construction: it fixes out_h and out_w, and hence the number of filters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class LocallyConnected2d(nn.Module):
    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        input_size: int | tuple[int, int],
        kernel_size: int | tuple[int, int],
        *,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_chans, self.out_chans = in_chans, out_chans
        self.input_size = _pair(input_size)
        self.kernel_size, self.stride, self.padding = _pair(kernel_size), _pair(stride), _pair(padding)
        (h, w), (kh, kw), (sh, sw), (ph, pw) = self.input_size, self.kernel_size, self.stride, self.padding
        self.output_size = ((h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
        if min(self.output_size) < 1:
            raise ValueError(
                f"kernel {self.kernel_size} with padding {self.padding} does not fit input {self.input_size}"
            )
        locations = self.output_size[0] * self.output_size[1]
        patch = in_chans * kh * kw
        self.weight = nn.Parameter(torch.empty(locations, out_chans, patch))  # one filter bank per location
        self.bias = nn.Parameter(torch.empty(out_chans, *self.output_size)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same scale as nn.Conv2d's default: each location's filters see the same fan-in.
        bound = 1.0 / math.sqrt(self.weight.shape[-1])
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != (self.in_chans, *self.input_size):
            raise ValueError(
                f"LocallyConnected2d expects input (B, {self.in_chans}, {self.input_size[0]}, "
                f"{self.input_size[1]}), got {tuple(x.shape)}"
            )
        patches = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)  # (B, C*k*k, L)
        y = torch.einsum("bpl,lop->bol", patches, self.weight)  # (B, out_chans, L)
        y = y.reshape(x.shape[0], self.out_chans, *self.output_size)
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return (
            f"{self.in_chans}, {self.out_chans}, input_size={self.input_size}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"
        )
