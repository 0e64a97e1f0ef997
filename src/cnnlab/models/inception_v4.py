"""Inception-v4: Szegedy, Ioffe, Vanhoucke, Alemi 2017, "Inception-v4, Inception-ResNet and
the Impact of Residual Connections on Learning", AAAI. https://arxiv.org/abs/1602.07261

Figure 9 of the paper, on a 299x299 input:

    stem (Figure 3)             35x35x384
    4 x Inception-A (Figure 4)  35x35x384
    Reduction-A (Figure 7)      17x17x1024
    7 x Inception-B (Figure 5)  17x17x1024
    Reduction-B (Figure 8)       8x8x1536
    3 x Inception-C (Figure 6)   8x8x1536
    avg pool, dropout (keep 0.8), linear, softmax

Every convolution is conv -> batch norm -> ReLU, without conv bias. "V" in the figures marks
a valid (unpadded) convolution or pool; all others keep the spatial size. Reduction-A is
shared with the Inception-ResNets (``inception_resnet.py``); its four widths k, l, m, n are
the paper's Table 1.

Deviations and choices: batch norm eps is 0.001 (TensorFlow's; the paper does not say),
which the widely used TF-slim, Cadene and timm ports share with our parameter count. The
average pools in the Inception modules exclude padding from the mean (TF-slim). The paper
draws Figure 5's last conv of the 7x7 branch as "1x7"; it must be 7x1 to complete the
factorised 7x7, as in the released model. ``se=True`` adds squeeze-and-excitation (Hu et
al. 2018) to the output of each Inception-A/B/C module (not the stem or reductions).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cnnlab.layers.conv import ConvNormAct
from cnnlab.layers.se import SqueezeExcite
from cnnlab.models.features import ImageModel
from cnnlab.models.registry import Reported, register_model

SZEGEDY_2017 = "Szegedy et al. 2017, Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning"

# conv -> BN (eps 0.001) -> ReLU, no conv bias; padding "same" unless the figure says V.
Conv = functools.partial(ConvNormAct, bn_eps=1e-3)


def avg_pool_3x3() -> nn.AvgPool2d:
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


@dataclass(frozen=True)
class ReductionASpec:
    """Table 1: the filter-bank sizes of Reduction-A (Figure 7) in each network."""

    k: int  # 1x1 conv of the 3x3 -> 3x3 branch
    l: int  # its first 3x3 conv (the paper's letters)
    m: int  # its stride-2 3x3 conv
    n: int  # the single stride-2 3x3 conv branch

    def out_chans(self, in_chans: int) -> int:
        return in_chans + self.n + self.m  # max-pool passes the input through


TABLE1: dict[str, ReductionASpec] = {
    "inception_v4": ReductionASpec(192, 224, 256, 384),
    "inception_resnet_v1": ReductionASpec(192, 192, 256, 384),
    "inception_resnet_v2": ReductionASpec(256, 256, 384, 384),
}


class Stem(nn.Module):
    """Figure 3: the stem of Inception-v4 (and of the paper's Inception-ResNet-v2)."""

    def __init__(self, in_chans: int) -> None:
        super().__init__()
        self.conv1 = Conv(in_chans, 32, 3, stride=2, padding=0)  # (B, 32, 149, 149)
        self.conv2 = Conv(32, 32, 3, padding=0)  # (B, 32, 147, 147)
        self.conv3 = Conv(32, 64, 3)  # (B, 64, 147, 147)
        self.mixed1_pool = nn.MaxPool2d(3, stride=2)
        self.mixed1_conv = Conv(64, 96, 3, stride=2, padding=0)
        self.mixed2_a = nn.Sequential(Conv(160, 64, 1), Conv(64, 96, 3, padding=0))
        self.mixed2_b = nn.Sequential(
            Conv(160, 64, 1), Conv(64, 64, (7, 1)), Conv(64, 64, (1, 7)), Conv(64, 96, 3, padding=0)
        )
        self.mixed3_conv = Conv(192, 192, 3, stride=2, padding=0)
        self.mixed3_pool = nn.MaxPool2d(3, stride=2)
        self.out_chans = 384

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3(self.conv2(self.conv1(x)))  # (B, 64, 147, 147)
        x = torch.cat([self.mixed1_pool(x), self.mixed1_conv(x)], dim=1)  # (B, 160, 73, 73)
        x = torch.cat([self.mixed2_a(x), self.mixed2_b(x)], dim=1)  # (B, 192, 71, 71)
        return torch.cat([self.mixed3_conv(x), self.mixed3_pool(x)], dim=1)  # (B, 384, 35, 35)


class InceptionA(nn.Module):
    """Figure 4, 35x35 grid: avg pool -> 1x1 96 | 1x1 96 | 1x1 64 -> 3x3 96 | 1x1 64 -> 3x3 96 -> 3x3 96."""

    def __init__(self, in_chans: int, *, se: bool = False) -> None:
        super().__init__()
        self.branch_pool = nn.Sequential(avg_pool_3x3(), Conv(in_chans, 96, 1))
        self.branch1x1 = Conv(in_chans, 96, 1)
        self.branch3x3 = nn.Sequential(Conv(in_chans, 64, 1), Conv(64, 96, 3))
        self.branch_dbl3x3 = nn.Sequential(Conv(in_chans, 64, 1), Conv(64, 96, 3), Conv(96, 96, 3))
        self.out_chans = 384
        self.se = SqueezeExcite(self.out_chans) if se else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.branch_pool(x), self.branch1x1(x), self.branch3x3(x), self.branch_dbl3x3(x)]
        return self.se(torch.cat(branches, dim=1))


class ReductionA(nn.Module):
    """Figure 7, 35x35 -> 17x17: max pool | 3x3/2 n | 1x1 k -> 3x3 l -> 3x3/2 m."""

    def __init__(self, in_chans: int, spec: ReductionASpec) -> None:
        super().__init__()
        self.branch_pool = nn.MaxPool2d(3, stride=2)
        self.branch3x3 = Conv(in_chans, spec.n, 3, stride=2, padding=0)
        self.branch_dbl3x3 = nn.Sequential(
            Conv(in_chans, spec.k, 1), Conv(spec.k, spec.l, 3), Conv(spec.l, spec.m, 3, stride=2, padding=0)
        )
        self.out_chans = spec.out_chans(in_chans)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch_pool(x), self.branch3x3(x), self.branch_dbl3x3(x)], dim=1)


class InceptionB(nn.Module):
    """Figure 5, 17x17 grid: the 7x7 convolutions factorised into 1x7 and 7x1."""

    def __init__(self, in_chans: int, *, se: bool = False) -> None:
        super().__init__()
        self.branch_pool = nn.Sequential(avg_pool_3x3(), Conv(in_chans, 128, 1))
        self.branch1x1 = Conv(in_chans, 384, 1)
        self.branch7x7 = nn.Sequential(Conv(in_chans, 192, 1), Conv(192, 224, (1, 7)), Conv(224, 256, (7, 1)))
        self.branch_dbl7x7 = nn.Sequential(
            Conv(in_chans, 192, 1),
            Conv(192, 192, (1, 7)),
            Conv(192, 224, (7, 1)),
            Conv(224, 224, (1, 7)),
            Conv(224, 256, (7, 1)),
        )
        self.out_chans = 1024
        self.se = SqueezeExcite(self.out_chans) if se else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.branch_pool(x), self.branch1x1(x), self.branch7x7(x), self.branch_dbl7x7(x)]
        return self.se(torch.cat(branches, dim=1))


class ReductionB(nn.Module):
    """Figure 8, 17x17 -> 8x8: max pool | 1x1 192 -> 3x3/2 192 | 1x1 256 -> 1x7 256 -> 7x1 320 -> 3x3/2 320."""

    def __init__(self, in_chans: int) -> None:
        super().__init__()
        self.branch_pool = nn.MaxPool2d(3, stride=2)
        self.branch3x3 = nn.Sequential(Conv(in_chans, 192, 1), Conv(192, 192, 3, stride=2, padding=0))
        self.branch7x7_3x3 = nn.Sequential(
            Conv(in_chans, 256, 1),
            Conv(256, 256, (1, 7)),
            Conv(256, 320, (7, 1)),
            Conv(320, 320, 3, stride=2, padding=0),
        )
        self.out_chans = in_chans + 192 + 320

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch_pool(x), self.branch3x3(x), self.branch7x7_3x3(x)], dim=1)


class InceptionC(nn.Module):
    """Figure 6, 8x8 grid: the 3x3 convolutions split into parallel 1x3 and 3x1 outputs."""

    def __init__(self, in_chans: int, *, se: bool = False) -> None:
        super().__init__()
        self.branch_pool = nn.Sequential(avg_pool_3x3(), Conv(in_chans, 256, 1))
        self.branch1x1 = Conv(in_chans, 256, 1)
        self.branch3x3_reduce = Conv(in_chans, 384, 1)
        self.branch3x3_1x3 = Conv(384, 256, (1, 3))
        self.branch3x3_3x1 = Conv(384, 256, (3, 1))
        self.branch_dbl3x3_reduce = nn.Sequential(
            Conv(in_chans, 384, 1), Conv(384, 448, (1, 3)), Conv(448, 512, (3, 1))
        )
        self.branch_dbl3x3_3x1 = Conv(512, 256, (3, 1))
        self.branch_dbl3x3_1x3 = Conv(512, 256, (1, 3))
        self.out_chans = 1536
        self.se = SqueezeExcite(self.out_chans) if se else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch3x3_reduce(x)
        b = self.branch_dbl3x3_reduce(x)
        branches = [
            self.branch_pool(x),
            self.branch1x1(x),
            self.branch3x3_1x3(a),
            self.branch3x3_3x1(a),
            self.branch_dbl3x3_3x1(b),
            self.branch_dbl3x3_1x3(b),
        ]
        return self.se(torch.cat(branches, dim=1))


class InceptionV4(ImageModel):
    # Figure 9: how many of each Inception module.
    DEPTHS = {"A": 4, "B": 7, "C": 3}

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, se: bool = False) -> None:
        super().__init__()
        self.stem = Stem(in_chans)
        chans = self.stem.out_chans
        self.inception_a = nn.Sequential(*[InceptionA(chans, se=se) for _ in range(self.DEPTHS["A"])])
        self.reduction_a = ReductionA(chans, TABLE1["inception_v4"])
        chans = self.reduction_a.out_chans
        self.inception_b = nn.Sequential(*[InceptionB(chans, se=se) for _ in range(self.DEPTHS["B"])])
        self.reduction_b = ReductionB(chans)
        chans = self.reduction_b.out_chans
        self.inception_c = nn.Sequential(*[InceptionC(chans, se=se) for _ in range(self.DEPTHS["C"])])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)  # "Dropout (keep 0.8)"
        self.fc = nn.Linear(chans, num_classes)
        init_inception_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # (B, 384, 35, 35)
        x = self.reduction_a(self.inception_a(x))  # (B, 1024, 17, 17)
        x = self.reduction_b(self.inception_b(x))  # (B, 1536, 8, 8)
        x = self.inception_c(x)  # (B, 1536, 8, 8)
        return self.fc(self.dropout(self.pool(x).flatten(1)))  # (B, num_classes)


def init_inception_weights(model: nn.Module) -> None:
    """He (fan-in) normal weights and zero biases: the variance-scaling initialiser of TF-slim's
    ``inception_arg_scope``, which trained the released models (the paper names none)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# Table 2 of the paper reports single-model, single-crop errors on the non-blacklisted subset
# of the ILSVRC-2012 validation set (the blacklist is the val images ILSVRC flags as unreliable),
# not on all 50,000 images.
NON_BLACKLISTED = "non-blacklisted subset of the ILSVRC-2012 validation set"


@register_model(
    paper=SZEGEDY_2017,
    input_size=(3, 299, 299),
    reported=Reported(
        top1=80.0,
        top5=95.0,
        source="Szegedy et al. 2017, Table 2: 20.0% / 5.0% error, single crop",
        note=NON_BLACKLISTED,
    ),
    test_input_size=(3, 75, 75),
    params=42_679_816,
)
def inception_v4(*, num_classes: int = 1000, in_chans: int = 3, se: bool = False) -> InceptionV4:
    """Inception-v4 (Figure 9); ``se=True`` adds SE to each Inception-A/B/C module."""
    return InceptionV4(num_classes=num_classes, in_chans=in_chans, se=se)
