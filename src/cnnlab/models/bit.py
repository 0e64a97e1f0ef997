"""BiT (Big Transfer) ResNet-v2: Kolesnikov, Beyer, Zhai, Puigcerver, Yung, Gelly, Houlsby 2020,
"Big Transfer (BiT): General Visual Representation Learning", ECCV.
https://arxiv.org/abs/1912.11370

The backbone is a pre-activation ResNet (He et al. 2016, "Identity Mappings in Deep Residual
Networks") made wider (x1 to x4 channels) and made independent of the batch: every BatchNorm
becomes GroupNorm with 32 groups and every convolution standardises its weights (Qiao et al.
2019, Weight Standardization) before it is applied (Section 4.3). "R152x4" = ResNet-152
depths, four times the channels.

    root:   7x7/2 conv (64w) -> pad 1 -> 3x3/2 max-pool
    body:   stages of pre-activation bottlenecks (ResNet-50/101/152 depths), widths
            64w/128w/256w/512w, output 4x that; stride 2 on the 3x3 conv of each stage's
            first unit (stages 2-4)
    unit:   y = GN-ReLU(x); shortcut = proj(y) if the shape changes else x;
            x + conv1x1(GN-ReLU(conv3x3(GN-ReLU(conv1x1(y)))))
    head:   GN -> ReLU -> global average pool -> 1x1 conv (a linear layer) with bias

Module names follow the authors' PyTorch release (``root.conv``, ``body.block1.unit01.gn1``,
``conv1``..``conv3``, ``downsample``, ``head.gn``, ``head.conv``). torchvision has no BiT.
The canonical input size is BiT-HyperRule's fine-tuning resolution for ImageNet-sized images
(resize to 512, crop 480). Initialisation is He normal for the convolutions; the paper
zero-initialises the head only when transferring, which this module leaves to the user.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cnnlab.models.features import ImageModel
from cnnlab.models.registry import Reported, register_model

KOLESNIKOV_2020 = "Kolesnikov et al. 2020, Big Transfer (BiT): General Visual Representation Learning"
GN_GROUPS = 32
WS_EPS = 1e-10  # the authors' code: (w - mean) / sqrt(var + 1e-10)


@dataclass(frozen=True)
class BiTConfig:
    depths: tuple[int, int, int, int]  # bottleneck units per stage: ResNet-50/101/152
    width: int  # width factor: 1, 3 or 4 times ResNet's channels


CONFIGS: dict[str, BiTConfig] = {
    "R50x1": BiTConfig(depths=(3, 4, 6, 3), width=1),
    "R101x3": BiTConfig(depths=(3, 4, 23, 3), width=3),
    "R152x4": BiTConfig(depths=(3, 8, 36, 3), width=4),
}


class StdConv2d(nn.Conv2d):
    """Conv whose kernel is standardised (zero mean, unit variance per output channel) each call."""

    def forward(self, x: Tensor) -> Tensor:
        var, mean = torch.var_mean(self.weight, dim=(1, 2, 3), keepdim=True, unbiased=False)
        w = (self.weight - mean) / torch.sqrt(var + WS_EPS)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


def std_conv(in_chans: int, out_chans: int, kernel_size: int, *, stride: int = 1) -> StdConv2d:
    return StdConv2d(in_chans, out_chans, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck (He et al. 2016, Fig. 4e) with GroupNorm and standardised convs."""

    def __init__(self, in_chans: int, out_chans: int, mid_chans: int, stride: int) -> None:
        super().__init__()
        self.gn1 = nn.GroupNorm(GN_GROUPS, in_chans)
        self.conv1 = std_conv(in_chans, mid_chans, 1)
        self.gn2 = nn.GroupNorm(GN_GROUPS, mid_chans)
        self.conv2 = std_conv(mid_chans, mid_chans, 3, stride=stride)
        self.gn3 = nn.GroupNorm(GN_GROUPS, mid_chans)
        self.conv3 = std_conv(mid_chans, out_chans, 1)
        self.relu = nn.ReLU(inplace=True)
        needs_proj = stride != 1 or in_chans != out_chans
        self.downsample = std_conv(in_chans, out_chans, 1, stride=stride) if needs_proj else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.relu(self.gn1(x))  # pre-activation, shared by the projection shortcut
        shortcut = x if self.downsample is None else self.downsample(y)
        y = self.conv1(y)
        y = self.conv2(self.relu(self.gn2(y)))
        y = self.conv3(self.relu(self.gn3(y)))
        return shortcut + y


class BiTResNetV2(ImageModel):
    def __init__(self, config: BiTConfig, *, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        w = config.width
        self.root = nn.Sequential()
        self.root.add_module("conv", std_conv(in_chans, 64 * w, 7, stride=2))
        self.root.add_module("pad", nn.ConstantPad2d(1, 0.0))
        self.root.add_module("pool", nn.MaxPool2d(3, stride=2))
        self.body = nn.Sequential()
        chans = 64 * w
        for i, depth in enumerate(config.depths):
            mid = 64 * w * 2**i
            stage = nn.Sequential()
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                stage.add_module(f"unit{j + 1:02d}", PreActBottleneck(chans, 4 * mid, mid, stride))
                chans = 4 * mid
            self.body.add_module(f"block{i + 1}", stage)
        self.head = nn.Sequential()
        self.head.add_module("gn", nn.GroupNorm(GN_GROUPS, chans))  # the last unit is not normalised
        self.head.add_module("relu", nn.ReLU(inplace=True))
        self.head.add_module("avg", nn.AdaptiveAvgPool2d(1))
        self.head.add_module("conv", nn.Conv2d(chans, num_classes, 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.root(x)  # (B, 64w, H/4, W/4)
        x = self.body(x)  # (B, 2048w, H/32, W/32)
        return self.head(x).flatten(1)  # (B, num_classes)


_bit = partial(register_model, paper=KOLESNIKOV_2020, input_size=(3, 480, 480), test_input_size=(3, 32, 32))


@_bit(params=25_549_352)
def bit_r50x1(*, num_classes: int = 1000, in_chans: int = 3) -> BiTResNetV2:
    """BiT ResNet-50x1: the smallest BiT backbone."""
    return BiTResNetV2(CONFIGS["R50x1"], num_classes=num_classes, in_chans=in_chans)


@_bit(params=387_934_888)
def bit_r101x3(*, num_classes: int = 1000, in_chans: int = 3) -> BiTResNetV2:
    """BiT ResNet-101x3."""
    return BiTResNetV2(CONFIGS["R101x3"], num_classes=num_classes, in_chans=in_chans)


@_bit(
    reported=Reported(
        top1=87.54,
        source="Kolesnikov et al. 2020, Table 1: BiT-L (JFT-300M pre-training) fine-tuned on ImageNet",
        note="BiT-M (ImageNet-21k pre-training): 85.39",
    ),
    params=936_533_224,
)
def bit_r152x4(*, num_classes: int = 1000, in_chans: int = 3) -> BiTResNetV2:
    """BiT ResNet-152x4, the BiT-L model."""
    return BiTResNetV2(CONFIGS["R152x4"], num_classes=num_classes, in_chans=in_chans)
