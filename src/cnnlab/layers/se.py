"""Squeeze-and-excitation: Hu, Shen, Sun 2018, "Squeeze-and-Excitation Networks", CVPR.
https://arxiv.org/abs/1709.01507

Squeeze: global average pool to one value per channel. Excite: a bottleneck of two fully
connected layers (reduction ratio r, ReLU, then sigmoid) gives per-channel weights that
rescale the input. The FC layers are 1x1 convolutions, which is the same computation.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn


class SqueezeExcite(nn.Module):
    def __init__(
        self,
        chans: int,
        *,
        reduction: int = 16,
        hidden: int | None = None,
        act: Callable[[], nn.Module] = lambda: nn.ReLU(inplace=True),
    ) -> None:
        """``hidden`` overrides ``chans // reduction`` (RegNet and EfficientNet size it from
        the block's input width rather than its own); ``act`` is the activation between
        the two FC layers (EfficientNet uses swish there)."""
        super().__init__()
        hidden = hidden if hidden is not None else max(1, chans // reduction)
        self.fc1 = nn.Conv2d(chans, hidden, 1)
        self.act = act()
        self.fc2 = nn.Conv2d(hidden, chans, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean((2, 3), keepdim=True)  # squeeze: (B, C, 1, 1)
        s = self.gate(self.fc2(self.act(self.fc1(s))))  # excite
        return x * s
