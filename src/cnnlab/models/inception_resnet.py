"""Inception-ResNet-v1 and -v2: Szegedy, Ioffe, Vanhoucke, Alemi 2017, "Inception-v4,
Inception-ResNet and the Impact of Residual Connections on Learning", AAAI.
https://arxiv.org/abs/1602.07261

Figure 15 of the paper, on a 299x299 input: stem, Inception-ResNet-A blocks (35x35),
Reduction-A, Inception-ResNet-B blocks (17x17), Reduction-B, Inception-ResNet-C blocks (8x8),
average pool, dropout (keep 0.8), linear. Each residual block concatenates its branches,
projects them back to the trunk's width with a linear 1x1 conv (bias, no batch norm), scales
the result by a constant and adds it to its input, then applies a ReLU (Section 3.3: scaling
residuals by 0.1-0.3 before the addition keeps very wide residual Inception nets from
dying early in training). Other convolutions are conv -> BN (eps 0.001) -> ReLU, bias-free.

    inception_resnet_v1: stem of Figure 14 (35x35x256), 5 x A (Figure 10), Reduction-A
        (k, l, m, n = 192, 192, 256, 384), 10 x B (Figure 11), Reduction-B (Figure 12),
        5 x C (Figure 13): 8x8x1792.
    inception_resnet_v2: the architecture of the released TF-slim checkpoint that the
        paper's results come from (also the Cadene and timm ports): 35x35x320 after a stem
        ending in max pool and an Inception module ("Mixed_5b"), 10 x A (Figure 16),
        Reduction-A (256, 256, 384, 384), 20 x B (Figure 17), Reduction-B (Figure 18),
        10 x C (Figure 19, the last one without ReLU and unscaled), a 1x1 conv to 1536.

Deviations and choices: the paper's Inception-ResNet-v2 figures are not self-consistent
(Figure 17 projects to 1154 channels where Reduction-A gives 1152; Figure 19 to 2048 where
Reduction-B gives 2144), and Figure 15 shows 5/10/5 blocks where the release has 10/20/10;
v2 therefore follows the release. v1 was never released; it follows Figures 10-15 as drawn,
with the release's residual scales (0.17, 0.10, 0.20 for A, B, C; the paper only gives the
range). ``se=True`` rescales each block's residual branch with squeeze-and-excitation before
the scaling and addition (SE-Inception-ResNet, Hu et al. 2018, Figure 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from cnnlab.layers.se import SqueezeExcite
from cnnlab.models.features import ImageModel
from cnnlab.models.inception_v4 import (
    NON_BLACKLISTED,
    SZEGEDY_2017,
    TABLE1,
    Conv,
    ReductionA,
    ReductionASpec,
    avg_pool_3x3,
    init_inception_weights,
)
from cnnlab.models.registry import Reported, register_model


@dataclass(frozen=True)
class InceptionResNetConfig:
    stem: str  # "figure14" (v1: conv 3x3/2 to 256) or "mixed_5b" (v2 release: pool + Inception to 320)
    block_a: tuple[int, int, int, int, int, int]  # A: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 widths
    reduction_a: ReductionASpec  # Table 1's k, l, m, n
    block_b: tuple[int, int, int, int]  # B: 1x1 | 1x1 -> 1x7 -> 7x1 widths
    reduction_b: tuple[int, int, int, int]  # 3x3/2 widths after 1x1 256: a | b | c1 -> c2
    block_c: tuple[int, int, int, int]  # C: 1x1 | 1x1 -> 1x3 -> 3x1 widths
    depths: tuple[int, int, int]  # how many A, B, C blocks
    scales: tuple[float, float, float]  # residual scale of A, B, C blocks
    last_block_linear: bool  # v2 release: the last C block has scale 1 and no ReLU
    head_chans: int | None  # 1x1 conv before the pool (v2 release: 1536); None = none


CONFIGS: dict[str, InceptionResNetConfig] = {
    "inception_resnet_v1": InceptionResNetConfig(
        stem="figure14",
        block_a=(32, 32, 32, 32, 32, 32),  # Figure 10
        reduction_a=TABLE1["inception_resnet_v1"],
        block_b=(128, 128, 128, 128),  # Figure 11
        reduction_b=(384, 256, 256, 256),  # Figure 12
        block_c=(192, 192, 192, 192),  # Figure 13
        depths=(5, 10, 5),  # Figure 15
        scales=(0.17, 0.10, 0.20),
        last_block_linear=False,
        head_chans=None,
    ),
    "inception_resnet_v2": InceptionResNetConfig(
        stem="mixed_5b",
        block_a=(32, 32, 32, 32, 48, 64),  # Figure 16
        reduction_a=TABLE1["inception_resnet_v2"],
        block_b=(192, 128, 160, 192),  # Figure 17
        reduction_b=(384, 288, 288, 320),  # Figure 18
        block_c=(192, 192, 224, 256),  # Figure 19
        depths=(10, 20, 10),  # the release (Figure 15 says 5, 10, 5)
        scales=(0.17, 0.10, 0.20),
        last_block_linear=True,
        head_chans=1536,
    ),
}


class Stem(nn.Module):
    """Figure 14 (v1) or the v2 release's stem; both start 3x3/2 32 V, 3x3 32 V, 3x3 64,
    max pool V, 1x1 80, 3x3 192 V (71x71)."""

    def __init__(self, in_chans: int, kind: str) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            Conv(in_chans, 32, 3, stride=2, padding=0),  # (B, 32, 149, 149)
            Conv(32, 32, 3, padding=0),  # (B, 32, 147, 147)
            Conv(32, 64, 3),  # (B, 64, 147, 147)
            nn.MaxPool2d(3, stride=2),  # (B, 64, 73, 73)
            Conv(64, 80, 1),
            Conv(80, 192, 3, padding=0),  # (B, 192, 71, 71)
        )
        if kind == "figure14":
            self.reduce = Conv(192, 256, 3, stride=2, padding=0)  # (B, 256, 35, 35)
            self.out_chans = 256
        elif kind == "mixed_5b":
            self.reduce = nn.Sequential(nn.MaxPool2d(3, stride=2), Mixed5b(192))  # (B, 320, 35, 35)
            self.out_chans = 320
        else:
            raise ValueError(f"unknown Inception-ResNet stem {kind!r}; expected 'figure14' or 'mixed_5b'")

    def forward(self, x: Tensor) -> Tensor:
        return self.reduce(self.convs(x))


class Mixed5b(nn.Module):
    """The v2 release's Inception module ending the stem: 1x1 96 | 1x1 48 -> 5x5 64 |
    1x1 64 -> 3x3 96 -> 3x3 96 | avg pool -> 1x1 64."""

    def __init__(self, in_chans: int) -> None:
        super().__init__()
        self.branch1x1 = Conv(in_chans, 96, 1)
        self.branch5x5 = nn.Sequential(Conv(in_chans, 48, 1), Conv(48, 64, 5))
        self.branch_dbl3x3 = nn.Sequential(Conv(in_chans, 64, 1), Conv(64, 96, 3), Conv(96, 96, 3))
        self.branch_pool = nn.Sequential(avg_pool_3x3(), Conv(in_chans, 64, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1x1(x), self.branch5x5(x), self.branch_dbl3x3(x), self.branch_pool(x)], dim=1)


class ResidualBlock(nn.Module):
    """x -> act(x + scale * up(concat(branches(x)))): the shape of Figures 10-13 and 16-19."""

    def __init__(
        self, chans: int, branches: list[nn.Module], branch_chans: int, *, scale: float, relu: bool, se: bool
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.up = nn.Conv2d(branch_chans, chans, 1)  # "1x1 Conv (Linear)": bias, no BN, no ReLU
        self.se = SqueezeExcite(chans) if se else nn.Identity()
        self.scale = scale
        self.act = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        residual = self.se(self.up(torch.cat([branch(x) for branch in self.branches], dim=1)))
        return self.act(x + self.scale * residual)


def block_a(chans: int, widths: tuple[int, ...], *, scale: float, se: bool) -> ResidualBlock:
    """Inception-ResNet-A (35x35): 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3."""
    w0, w1r, w1, w2r, w2a, w2b = widths
    branches = [
        Conv(chans, w0, 1),
        nn.Sequential(Conv(chans, w1r, 1), Conv(w1r, w1, 3)),
        nn.Sequential(Conv(chans, w2r, 1), Conv(w2r, w2a, 3), Conv(w2a, w2b, 3)),
    ]
    return ResidualBlock(chans, branches, w0 + w1 + w2b, scale=scale, relu=True, se=se)


def block_factorized(
    chans: int, widths: tuple[int, int, int, int], k: int, *, scale: float, relu: bool, se: bool
) -> ResidualBlock:
    """Inception-ResNet-B (k=7, 17x17) and -C (k=3, 8x8): 1x1 | 1x1 -> 1xk -> kx1."""
    w0, w1r, w1a, w1b = widths
    branches = [
        Conv(chans, w0, 1),
        nn.Sequential(Conv(chans, w1r, 1), Conv(w1r, w1a, (1, k)), Conv(w1a, w1b, (k, 1))),
    ]
    return ResidualBlock(chans, branches, w0 + w1b, scale=scale, relu=relu, se=se)


class ReductionB(nn.Module):
    """Figures 12 and 18, 17x17 -> 8x8: max pool | 1x1 256 -> 3x3/2 a | 1x1 256 -> 3x3/2 b |
    1x1 256 -> 3x3 c1 -> 3x3/2 c2."""

    def __init__(self, in_chans: int, widths: tuple[int, int, int, int]) -> None:
        super().__init__()
        a, b, c1, c2 = widths
        self.branch_pool = nn.MaxPool2d(3, stride=2)
        self.branch_a = nn.Sequential(Conv(in_chans, 256, 1), Conv(256, a, 3, stride=2, padding=0))
        self.branch_b = nn.Sequential(Conv(in_chans, 256, 1), Conv(256, b, 3, stride=2, padding=0))
        self.branch_c = nn.Sequential(Conv(in_chans, 256, 1), Conv(256, c1, 3), Conv(c1, c2, 3, stride=2, padding=0))
        self.out_chans = in_chans + a + b + c2

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch_pool(x), self.branch_a(x), self.branch_b(x), self.branch_c(x)], dim=1)


class InceptionResNet(ImageModel):
    def __init__(self, cfg: InceptionResNetConfig, *, num_classes: int = 1000, in_chans: int = 3, se: bool = False):
        super().__init__()
        depth_a, depth_b, depth_c = cfg.depths
        scale_a, scale_b, scale_c = cfg.scales
        self.stem = Stem(in_chans, cfg.stem)
        chans = self.stem.out_chans
        self.blocks_a = nn.Sequential(*[block_a(chans, cfg.block_a, scale=scale_a, se=se) for _ in range(depth_a)])
        self.reduction_a = ReductionA(chans, cfg.reduction_a)
        chans = self.reduction_a.out_chans
        self.blocks_b = nn.Sequential(
            *[block_factorized(chans, cfg.block_b, 7, scale=scale_b, relu=True, se=se) for _ in range(depth_b)]
        )
        self.reduction_b = ReductionB(chans, cfg.reduction_b)
        chans = self.reduction_b.out_chans
        self.blocks_c = nn.Sequential()
        for i in range(depth_c):
            linear = cfg.last_block_linear and i == depth_c - 1
            block = block_factorized(
                chans, cfg.block_c, 3, scale=1.0 if linear else scale_c, relu=not linear, se=se
            )
            self.blocks_c.append(block)
        if cfg.head_chans is not None:
            self.head = Conv(chans, cfg.head_chans, 1)
            chans = cfg.head_chans
        else:
            self.head = nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)  # "Dropout (keep 0.8)"
        self.fc = nn.Linear(chans, num_classes)
        init_inception_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks_a(self.stem(x))  # v1: (B, 256, 35, 35); v2: (B, 320, 35, 35)
        x = self.blocks_b(self.reduction_a(x))  # v1: (B, 896, 17, 17); v2: (B, 1088, 17, 17)
        x = self.blocks_c(self.reduction_b(x))  # v1: (B, 1792, 8, 8); v2: (B, 2080, 8, 8)
        x = self.head(x)  # v2: (B, 1536, 8, 8)
        return self.fc(self.dropout(self.pool(x).flatten(1)))  # (B, num_classes)


_inception_resnet = partial(register_model, paper=SZEGEDY_2017, input_size=(3, 299, 299), test_input_size=(3, 75, 75))


# NOTE: no reported accuracy for v1. Table 2 of the paper has an Inception-ResNet-v1 row, but
# its figures could not be verified against the paper's text and v1 was never released to
# reproduce, so cnnlab quotes none rather than an unchecked number.
@_inception_resnet(params=22_756_328)
def inception_resnet_v1(*, num_classes: int = 1000, in_chans: int = 3, se: bool = False) -> InceptionResNet:
    """Inception-ResNet-v1 as drawn in Figures 10-15; ``se=True`` adds SE to each residual branch."""
    return InceptionResNet(CONFIGS["inception_resnet_v1"], num_classes=num_classes, in_chans=in_chans, se=se)


@_inception_resnet(
    reported=Reported(
        top1=80.1,
        top5=95.1,
        source="Szegedy et al. 2017, Table 2: 19.9% / 4.9% error, single crop",
        note=NON_BLACKLISTED,
    ),
    params=55_843_464,
)
def inception_resnet_v2(*, num_classes: int = 1000, in_chans: int = 3, se: bool = False) -> InceptionResNet:
    """Inception-ResNet-v2 as released (TF-slim); ``se=True`` adds SE to each residual branch."""
    return InceptionResNet(CONFIGS["inception_resnet_v2"], num_classes=num_classes, in_chans=in_chans, se=se)
