"""BN-Inception: Ioffe & Szegedy 2015, "Batch Normalization: Accelerating Deep Network Training
by Reducing Internal Covariate Shift", ICML. https://arxiv.org/abs/1502.03167

The Inception network of the paper's Figure 5 (appendix), on a 224x224 input. Against
GoogLeNet: batch norm after every convolution (before the ReLU); each 5x5 convolution is
replaced by two stacked 3x3 ("double #3x3"); the pooling branch averages or takes the
maximum, as the table says; modules 3c and 4e downsample themselves with stride-2
convolutions and a max pool passed through unprojected, instead of separate pooling layers.

    conv 7x7/2 64, max pool 3x3/2                  56x56x64
    conv 1x1 64 -> conv 3x3 192, max pool 3x3/2    28x28x192
    inception 3a, 3b, 3c (stride 2)                14x14x576
    inception 4a .. 4e (4e stride 2)                7x7x1056
    inception 5a, 5b                                7x7x1024
    avg pool 7x7, linear, softmax

Deviations and choices: Figure 5's output-size column says 576 channels after 4c and 4d and
1024 after 4e, but its own rows add up to 608, 608 and 1056; we follow the rows (as the
released Caffe model does). Convolutions have no bias (batch norm's shift replaces it; the
Caffe port keeps both). There is no dropout: the accelerated networks
of Section 4.2.1, whose results the paper reports, remove it. Weights are He-initialised;
the paper does not say how.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cnnlab.layers.conv import ConvNormAct
from cnnlab.layers.se import SqueezeExcite
from cnnlab.models.features import ImageModel
from cnnlab.models.registry import Reported, register_model

IOFFE_2015 = (
    "Ioffe & Szegedy 2015, Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift"
)


@dataclass(frozen=True)
class BNInceptionSpec:
    """One row of Figure 5 of Ioffe & Szegedy 2015."""

    ch1x1: int  # "#1x1" (0 in the stride-2 modules 3c and 4e, which have no 1x1 branch)
    ch3x3red: int  # "#3x3 reduce"
    ch3x3: int  # "#3x3"
    dbl3x3red: int  # "double #3x3 reduce"
    dbl3x3: int  # "double #3x3": two stacked 3x3 convs in place of GoogLeNet's 5x5
    pool: str  # "Pool +proj": "avg" or "max"
    pool_proj: int  # ... and its 1x1 projection; 0 = "pass through"
    stride: int = 1  # 2 in 3c and 4e

    def out_chans(self, in_chans: int) -> int:
        pool_out = self.pool_proj if self.pool_proj else in_chans
        return self.ch1x1 + self.ch3x3 + self.dbl3x3 + pool_out


FIGURE5: dict[str, BNInceptionSpec] = {
    "3a": BNInceptionSpec(64, 64, 64, 64, 96, "avg", 32),
    "3b": BNInceptionSpec(64, 64, 96, 64, 96, "avg", 64),
    "3c": BNInceptionSpec(0, 128, 160, 64, 96, "max", 0, stride=2),
    "4a": BNInceptionSpec(224, 64, 96, 96, 128, "avg", 128),
    "4b": BNInceptionSpec(192, 96, 128, 96, 128, "avg", 128),
    "4c": BNInceptionSpec(160, 128, 160, 128, 160, "avg", 128),
    "4d": BNInceptionSpec(96, 128, 192, 160, 192, "avg", 128),
    "4e": BNInceptionSpec(0, 128, 192, 192, 256, "max", 0, stride=2),
    "5a": BNInceptionSpec(352, 192, 320, 160, 224, "avg", 128),
    "5b": BNInceptionSpec(352, 192, 320, 192, 224, "max", 128),
}

POOLS: dict[str, type[nn.Module]] = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


class BNInceptionModule(nn.Module):
    """Up to four branches concatenated: 1x1, 1x1 -> 3x3, 1x1 -> 3x3 -> 3x3, pool (-> 1x1)."""

    def __init__(self, in_chans: int, spec: BNInceptionSpec, *, se: bool = False) -> None:
        super().__init__()
        s = spec.stride
        self.out_chans = spec.out_chans(in_chans)
        self.branch1x1 = ConvNormAct(in_chans, spec.ch1x1, 1) if spec.ch1x1 else None
        self.branch3x3 = nn.Sequential(
            ConvNormAct(in_chans, spec.ch3x3red, 1), ConvNormAct(spec.ch3x3red, spec.ch3x3, 3, stride=s)
        )
        self.branch_dbl3x3 = nn.Sequential(
            ConvNormAct(in_chans, spec.dbl3x3red, 1),
            ConvNormAct(spec.dbl3x3red, spec.dbl3x3, 3),
            ConvNormAct(spec.dbl3x3, spec.dbl3x3, 3, stride=s),
        )
        # Padding 1 keeps the pool's output size equal to the stride-s convs' for any input.
        pool = POOLS[spec.pool](3, stride=s, padding=1)
        proj = ConvNormAct(in_chans, spec.pool_proj, 1) if spec.pool_proj else nn.Identity()
        self.branch_pool = nn.Sequential(pool, proj)
        self.se = SqueezeExcite(self.out_chans) if se else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.branch3x3(x), self.branch_dbl3x3(x), self.branch_pool(x)]
        if self.branch1x1 is not None:
            branches.insert(0, self.branch1x1(x))
        return self.se(torch.cat(branches, dim=1))


class BNInception(ImageModel):
    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, se: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            ConvNormAct(in_chans, 64, 7, stride=2),  # (B, 64, 112, 112)
            nn.MaxPool2d(3, stride=2, ceil_mode=True),  # (B, 64, 56, 56)
            ConvNormAct(64, 64, 1),  # Figure 5's "#3x3 reduce" of the stem
            ConvNormAct(64, 192, 3),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),  # (B, 192, 28, 28)
        )
        # Stages 3, 4, 5 of Figure 5; modules keep the paper's names ("3a", ...).
        self.inception3, self.inception4, self.inception5 = nn.Sequential(), nn.Sequential(), nn.Sequential()
        chans = 192
        for name, spec in FIGURE5.items():
            module = BNInceptionModule(chans, spec, se=se)
            getattr(self, f"inception{name[0]}").add_module(name, module)
            chans = module.out_chans
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(chans, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # (B, 192, 28, 28)
        x = self.inception3(x)  # (B, 576, 14, 14)
        x = self.inception4(x)  # (B, 1056, 7, 7)
        x = self.inception5(x)  # (B, 1024, 7, 7)
        return self.fc(self.pool(x).flatten(1))  # (B, num_classes)


@register_model(
    paper=IOFFE_2015,
    input_size=(3, 224, 224),
    reported=Reported(
        top1=74.8,
        top5=92.18,
        source="Ioffe & Szegedy 2015, Figure 4: BN-Inception single crop, 25.2% / 7.82% error",
        note="Figure 3: 74.8% top-1 for BN-x30; Figure 4, 144 crops: 21.99% / 5.82%",
    ),
    test_input_size=(3, 32, 32),
    params=11_285_224,
)
def bn_inception(*, num_classes: int = 1000, in_chans: int = 3, se: bool = False) -> BNInception:
    """BN-Inception (Figure 5); ``se=True`` gives SE-BN-Inception (Hu et al. 2018)."""
    return BNInception(num_classes=num_classes, in_chans=in_chans, se=se)
