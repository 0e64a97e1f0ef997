"""The Inception module: Szegedy et al. 2015, "Going deeper with convolutions", CVPR.
https://arxiv.org/abs/1409.4842

Figure 2(b) of the paper: four parallel branches over the same input, concatenated along
channels.

    1x1 conv                    (#1x1)
    1x1 conv -> 3x3 conv        (#3x3 reduce, #3x3)
    1x1 conv -> 5x5 conv        (#5x5 reduce, #5x5)
    3x3 max-pool -> 1x1 conv    (pool proj)

The six widths are the columns of the paper's Table 1, so GoogLeNet's Table 1 is a list of
:class:`InceptionSpec` rows. The 1x1 "reduce" convolutions are the point of the design: they
shrink the channels before the expensive 3x3 and 5x5 convolutions.

Branch and submodule names (``branch1`` ... ``branch4``, ``branch2.0`` ...) follow
torchvision's ``Inception``, so its GoogLeNet checkpoints load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from cnnlab.layers.se import SqueezeExcite

# A conv unit ``conv(in_chans, out_chans, kernel_size, *, stride=1)`` with "same" padding and
# its activation, e.g. ``ConvNormAct`` with or without batch norm.
ConvFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class InceptionSpec:
    """One row of Table 1 of Szegedy et al. 2015: the widths of an Inception module."""

    ch1x1: int  # "#1x1": the 1x1 branch
    ch3x3red: int  # "#3x3 reduce": 1x1 conv in front of the 3x3
    ch3x3: int  # "#3x3"
    ch5x5red: int  # "#5x5 reduce": 1x1 conv in front of the 5x5
    ch5x5: int  # "#5x5"
    pool_proj: int  # "pool proj": 1x1 conv after the 3x3 max-pool

    @property
    def out_chans(self) -> int:
        """Channels of the concatenated output."""
        return self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj


class Inception(nn.Module):
    """Four branches over the same input, concatenated along channels (Figure 2(b)).

    ``conv`` builds each conv unit (ReLU included). ``kernel_5x5`` is the kernel of the
    "#5x5" branch: 5 in the paper; torchvision's GoogLeNet uses 3 (a known bug it keeps for
    its pretrained weights, pytorch/vision#906). ``se=True`` rescales the concatenated output
    with squeeze-and-excitation (the SE-Inception module, Figure 2 of Hu et al. 2018).
    """

    def __init__(
        self,
        in_chans: int,
        spec: InceptionSpec,
        *,
        conv: ConvFactory,
        kernel_5x5: int = 5,
        se: bool = False,
    ) -> None:
        super().__init__()
        if kernel_5x5 % 2 != 1:
            raise ValueError(f"kernel_5x5 must be odd to keep the spatial size, got {kernel_5x5}")
        self.out_chans = spec.out_chans
        self.branch1 = conv(in_chans, spec.ch1x1, 1)
        self.branch2 = nn.Sequential(conv(in_chans, spec.ch3x3red, 1), conv(spec.ch3x3red, spec.ch3x3, 3))
        self.branch3 = nn.Sequential(conv(in_chans, spec.ch5x5red, 1), conv(spec.ch5x5red, spec.ch5x5, kernel_5x5))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), conv(in_chans, spec.pool_proj, 1)
        )
        # Identity when off: no parameters, no state-dict keys, so checkpoints still load.
        self.se = SqueezeExcite(spec.out_chans) if se else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)
        return self.se(out)
