"""Dense connectivity: Huang, Liu, van der Maaten, Weinberger 2017, "Densely Connected
Convolutional Networks", CVPR. https://arxiv.org/abs/1608.06993

Inside a dense block, layer l sees the concatenation of every earlier feature map,
x_l = H_l([x_0, x_1, ..., x_{l-1}]) (Eq. 2), and adds k ("growth rate") new maps. With the
bottleneck ("-B", Sec. 3), H_l is BN-ReLU-Conv(1x1, 4k)-BN-ReLU-Conv(3x3, k). A transition
layer between blocks is BN-ReLU-Conv(1x1)-AvgPool(2x2), shrinking the channels by the
compression factor theta ("-C"; 0.5 in DenseNet-BC).

Submodule names follow torchvision (``norm1``, ``relu1``, ``conv1``, ``norm2``, ``relu2``,
``conv2``; ``denselayer1``...; ``norm``, ``relu``, ``conv``, ``pool``) so its checkpoints load.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn


class DenseLayer(nn.Module):
    """H_l: takes the list [x_0, ..., x_{l-1}], returns the k new maps x_l.

    ``memory_efficient`` recomputes the concatenation and the 1x1 bottleneck in the backward
    pass instead of storing them (Pleiss et al. 2017, "Memory-Efficient Implementation of
    DenseNets", https://arxiv.org/abs/1707.06990): the concatenations are what makes a
    DenseNet's activation memory grow quadratically with depth.
    """

    def __init__(
        self,
        in_chans: int,
        growth_rate: int,
        *,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        width = bn_size * growth_rate  # the paper's 4k bottleneck channels
        self.norm1 = nn.BatchNorm2d(in_chans)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_chans, width, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.memory_efficient = memory_efficient

    def bottleneck(self, *features: Tensor) -> Tensor:
        return self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))

    def forward(self, features: list[Tensor]) -> Tensor:
        if self.memory_efficient and torch.is_grad_enabled() and any(f.requires_grad for f in features):
            x = torch.utils.checkpoint.checkpoint(self.bottleneck, *features, use_reentrant=False)
        else:
            x = self.bottleneck(*features)  # (B, 4k, H, W)
        x = self.conv2(self.relu2(self.norm2(x)))  # (B, k, H, W)
        return F.dropout(x, p=self.drop_rate, training=self.training)


class DenseBlock(nn.Module):
    """``num_layers`` dense layers; (B, C, H, W) -> (B, C + num_layers * k, H, W)."""

    def __init__(
        self,
        num_layers: int,
        in_chans: int,
        growth_rate: int,
        *,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(
                in_chans + i * growth_rate,
                growth_rate,
                bn_size=bn_size,
                drop_rate=drop_rate,
                memory_efficient=memory_efficient,
            )
            self.add_module(f"denselayer{i + 1}", layer)  # 1-based, as torchvision
        self.out_chans = in_chans + num_layers * growth_rate

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.children():
            features.append(layer(features))  # x_l = H_l([x_0, ..., x_{l-1}])
        return torch.cat(features, 1)


class Transition(nn.Module):
    """BN-ReLU-Conv(1x1)-AvgPool(2x2, stride 2) between dense blocks: halves H and W."""

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_chans)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_chans, out_chans, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.conv(self.relu(self.norm(x))))
