"""RegNetY: Radosavovic, Kosaraju, Girshick, He, Dollár 2020, "Designing Network Design Spaces",
CVPR. https://arxiv.org/abs/2003.13678

A RegNet is not a hand-drawn table but the output of a four-number generator (Section 3.3).
Block j of d gets a width on a line, u_j = w0 + wa * j; each u_j is snapped to the nearest
power of wm times w0 in log space (s_j = round(log(u_j / w0) / log(wm)), w_j = w0 * wm^s_j)
and quantised to a multiple of 8. Blocks of equal width form a stage. With bottleneck ratio
b = 1 and one group width g for all stages, the widths are finally made divisible by g.
RegNetY adds squeeze-and-excitation to every block, its hidden width a quarter of the
block's *input* width (Section 5, "RegNetY").

Body: stem 3x3/2 conv (32 channels) -> four stages of residual bottleneck blocks
(1x1 -> 3x3 grouped, stride 2 in the first block -> SE -> 1x1, projection shortcut where
the shape changes; the ReLU after the addition) -> global average pool -> FC.

The per-model (w0, wa, wm, d, g) are the pycls model-zoo configurations the paper's tables
report (RegNetY-4.0GF / 8.0GF / 16GF). Channel rounding follows pycls (round half to even),
which is why our ``regnety_8gf`` has 168 stem-stage channels and 39.18M parameters while
torchvision's ``regnet_y_8gf`` rounds 192/56 up to 224 and has 39.38M.

State dict: named like torchvision's RegNet (``stem.0``, ``trunk_output.block1.block1-0.f.a.0``,
``f.se.fc1``, ``proj.0``, ``fc``), so torchvision's ``regnet_y_16gf`` checkpoint loads into
``regnety_16gf`` (identical configuration). Deviation: pycls optionally zero-initialises each
block's last BN gamma; we keep gamma = 1 (pycls's default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

from torch import Tensor, nn

from cnnlab.layers.se import SqueezeExcite
from cnnlab.models.features import ImageModel
from cnnlab.models.registry import Reported, register_model

RADOSAVOVIC_2020 = "Radosavovic et al. 2020, Designing Network Design Spaces"
STEM_WIDTH = 32  # pycls "simple_stem_in": 3x3 conv, stride 2, 32 channels
WIDTH_QUANTUM = 8  # block widths are multiples of 8 (Section 3.3)


@dataclass(frozen=True)
class RegNetParams:
    """One point of the RegNet design space (Section 3.3)."""

    w0: int  # initial width: u_0
    wa: float  # slope of the width line, u_j = w0 + wa * j
    wm: float  # width multiplier between consecutive stages (quantisation in log space)
    depth: int  # d: total number of blocks
    group_width: int  # g: channels per group in the 3x3 conv
    se_ratio: float = 0.25  # SE hidden width / block input width (RegNetY)


@dataclass(frozen=True)
class Stage:
    """A stage the generator produces: ``depth`` blocks of one width."""

    depth: int  # blocks in the stage; the first has stride 2
    width: int  # output channels of every block in the stage (= bottleneck width, b = 1)
    group_width: int  # channels per group of the 3x3 conv


# The pycls model-zoo RegNetY configurations ("RegNetY-4.0GF" etc.).
REGNETY: dict[str, RegNetParams] = {
    "4.0GF": RegNetParams(w0=96, wa=31.41, wm=2.24, depth=22, group_width=64),
    "8.0GF": RegNetParams(w0=192, wa=76.82, wm=2.19, depth=17, group_width=56),
    "16GF": RegNetParams(w0=200, wa=106.23, wm=2.48, depth=18, group_width=112),
}


def regnet_stages(p: RegNetParams) -> list[Stage]:
    """The paper's generator: per-block widths from (w0, wa, wm, d), grouped into stages."""
    if p.w0 <= 0 or p.wa < 0 or p.wm <= 1 or p.depth < 1 or p.w0 % WIDTH_QUANTUM:
        raise ValueError(f"invalid RegNet parameters {p}; need w0 > 0 a multiple of 8, wa >= 0, wm > 1, d >= 1")
    widths = []
    for j in range(p.depth):
        u = p.w0 + p.wa * j  # linear widths, eq. (2)
        s = round(math.log(u / p.w0) / math.log(p.wm))  # eq. (3), rounded: eq. (4)
        widths.append(round(p.w0 * p.wm**s / WIDTH_QUANTUM) * WIDTH_QUANTUM)
    stages: list[Stage] = []
    for w in widths:  # consecutive blocks of equal width form a stage
        if stages and stages[-1].width == w:
            stages[-1] = Stage(stages[-1].depth + 1, w, p.group_width)
        else:
            stages.append(Stage(1, w, p.group_width))
    # The grouped conv needs width divisible by the group width: g <= w, w rounded to g.
    fitted = []
    for st in stages:
        g = min(st.group_width, st.width)
        fitted.append(Stage(st.depth, round(st.width / g) * g, g))
    return fitted


def conv_bn(in_chans: int, out_chans: int, kernel_size: int, *, stride: int = 1, groups: int = 1, act: bool = True):
    """conv -> BN [-> ReLU] as an indexed Sequential (``0``, ``1``, ``2``), torchvision's names."""
    layers = [
        nn.Conv2d(in_chans, out_chans, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_chans),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class YBlock(nn.Module):
    """Residual bottleneck with SE (the "Y block"): x -> relu(shortcut(x) + f(x))."""

    def __init__(self, in_chans: int, width: int, stride: int, group_width: int, se_ratio: float) -> None:
        super().__init__()
        needs_proj = in_chans != width or stride != 1
        self.proj = conv_bn(in_chans, width, 1, stride=stride, act=False) if needs_proj else None
        self.f = nn.Sequential()
        self.f.add_module("a", conv_bn(in_chans, width, 1))
        self.f.add_module("b", conv_bn(width, width, 3, stride=stride, groups=width // group_width))
        # SE width from the block's input, not its bottleneck width (pycls; paper Section 5).
        self.f.add_module("se", SqueezeExcite(width, hidden=round(se_ratio * in_chans)))
        self.f.add_module("c", conv_bn(width, width, 1, act=False))
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.proj is None else self.proj(x)
        return self.activation(shortcut + self.f(x))


class RegNet(ImageModel):
    def __init__(self, params: RegNetParams, *, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        self.stages = regnet_stages(params)
        self.stem = conv_bn(in_chans, STEM_WIDTH, 3, stride=2)
        self.trunk_output = nn.Sequential()
        chans = STEM_WIDTH
        for i, st in enumerate(self.stages, start=1):
            stage = nn.Sequential()
            for j in range(st.depth):
                block = YBlock(chans, st.width, 2 if j == 0 else 1, st.group_width, params.se_ratio)
                stage.add_module(f"block{i}-{j}", block)
                chans = st.width
            self.trunk_output.add_module(f"block{i}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(chans, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # pycls: He init (fan-out) for convs, N(0, 0.01) for the classifier.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # (B, 32, 112, 112) at 224
        x = self.trunk_output(x)  # (B, w4, 7, 7)
        x = self.avgpool(x).flatten(1)  # (B, w4)
        return self.fc(x)  # (B, num_classes)


def _reported(error: float, source: str) -> Reported:
    return Reported(top1=round(100.0 - error, 1), source=source)


_regnet = partial(register_model, paper=RADOSAVOVIC_2020, input_size=(3, 224, 224), test_input_size=(3, 32, 32))


@_regnet(reported=_reported(20.6, "Radosavovic et al. 2020, Table 4 (top-1 error 20.6)"), params=20_646_656)
def regnety_4gf(*, num_classes: int = 1000, in_chans: int = 3) -> RegNet:
    """RegNetY-4.0GF (20.6M parameters, 4.0 GMACs)."""
    return RegNet(REGNETY["4.0GF"], num_classes=num_classes, in_chans=in_chans)


@_regnet(reported=_reported(20.1, "Radosavovic et al. 2020, Table 4 (top-1 error 20.1)"), params=39_180_068)
def regnety_8gf(*, num_classes: int = 1000, in_chans: int = 3) -> RegNet:
    """RegNetY-8.0GF (39.2M parameters, 8.0 GMACs)."""
    return RegNet(REGNETY["8.0GF"], num_classes=num_classes, in_chans=in_chans)


@_regnet(reported=_reported(19.6, "pycls model zoo (MODEL_ZOO.md), RegNetY-16GF top-1 error 19.6"), params=83_590_140)
def regnety_16gf(*, num_classes: int = 1000, in_chans: int = 3) -> RegNet:
    """RegNetY-16GF (83.6M parameters, 15.9 GMACs)."""
    return RegNet(REGNETY["16GF"], num_classes=num_classes, in_chans=in_chans)
