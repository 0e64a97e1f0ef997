"""ConvNeXt: Liu, Mao, Wu, Feichtenhofer, Darrell, Xie 2022, "A ConvNet for the 2020s", CVPR.
https://arxiv.org/abs/2201.03545

A ResNet "modernised" step by step towards a Swin Transformer (Section 2): a 4x4/4 "patchify"
stem; stage ratio 1:1:3:1; separate downsampling layers (LayerNorm + 2x2/2 conv) between
stages; and an inverted-bottleneck block that reads like a transformer's MLP:

    7x7 depthwise conv -> LayerNorm -> 1x1 (Linear, 4C) -> GELU -> 1x1 (Linear, C)
    -> layer scale (per-channel gamma, initialised to 1e-6) -> drop path -> + x

The LayerNorms normalise over channels only (``LayerNorm2d`` on (B, C, H, W) tensors; inside
the block the tensor is permuted to (B, H, W, C) so the 1x1 convs are plain Linear layers).
Head: global average pool -> LayerNorm -> Linear. Weights: truncated normal, std 0.02.

State dict: named like torchvision's ``convnext_tiny``/``small``/``base`` (``features.0.0``
stem conv, ``features.0.1`` its norm, ``features.1.0.block.0`` the depthwise conv,
``block.2`` norm, ``block.3``/``block.5`` the MLP, ``layer_scale`` of shape (C, 1, 1),
``features.2.0``/``.1`` downsampling norm and conv, ``classifier.0`` norm, ``classifier.2``),
so their checkpoints load with ``strict=True``. Drop-path rates (0.1 / 0.4 / 0.5 for T / S / B)
are the paper's ImageNet-1K settings (Appendix A, Table 5), rising linearly over the blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cnnlab.layers.drop_path import DropPath
from cnnlab.models.features import ImageModel
from cnnlab.models.registry import Reported, register_model

LIU_2022 = "Liu et al. 2022, A ConvNet for the 2020s"
LN_EPS = 1e-6
LAYER_SCALE_INIT = 1e-6  # gamma starts near 0: each block begins close to the identity


@dataclass(frozen=True)
class ConvNeXtConfig:
    """Section 3's variants: C = channels per stage, B = blocks per stage."""

    depths: tuple[int, int, int, int]  # B: blocks in each stage
    widths: tuple[int, int, int, int]  # C: channels in each stage
    drop_path: float  # stochastic-depth rate of the last block for ImageNet-1K training


CONFIGS: dict[str, ConvNeXtConfig] = {
    "T": ConvNeXtConfig(depths=(3, 3, 9, 3), widths=(96, 192, 384, 768), drop_path=0.1),
    "S": ConvNeXtConfig(depths=(3, 3, 27, 3), widths=(96, 192, 384, 768), drop_path=0.4),
    "B": ConvNeXtConfig(depths=(3, 3, 27, 3), widths=(128, 256, 512, 1024), drop_path=0.5),
}


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) tensor, at every position."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # (B, C, H, W)


class Permute(nn.Module):
    def __init__(self, *dims: int) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(*self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class ConvNeXtBlock(nn.Module):
    """Figure 4 (right): x + drop_path(gamma * mlp(norm(dwconv(x))))."""

    def __init__(self, dim: int, *, drop_path: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, 7, padding=3, groups=dim),  # depthwise 7x7
            Permute(0, 2, 3, 1),  # (B, H, W, C): the 1x1 convs become Linear layers
            nn.LayerNorm(dim, eps=LN_EPS),
            nn.Linear(dim, 4 * dim),  # inverted bottleneck: expand x4
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            Permute(0, 3, 1, 2),  # back to (B, C, H, W)
        )
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), LAYER_SCALE_INIT))
        self.stochastic_depth = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.stochastic_depth(self.layer_scale * self.block(x))


class ConvNeXt(ImageModel):
    def __init__(self, config: ConvNeXtConfig, *, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        c = config.widths
        # features: [stem, stage1, down2, stage2, down3, stage3, down4, stage4] (torchvision's order)
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(in_chans, c[0], 4, stride=4), LayerNorm2d(c[0], eps=LN_EPS))  # patchify
        )
        total = sum(config.depths)
        index = 0
        for i, (depth, width) in enumerate(zip(config.depths, config.widths)):
            if i > 0:  # separate downsampling layer between stages (Section 2.6)
                self.features.append(
                    nn.Sequential(LayerNorm2d(c[i - 1], eps=LN_EPS), nn.Conv2d(c[i - 1], width, 2, stride=2))
                )
            stage = nn.Sequential()
            for _ in range(depth):
                stage.append(ConvNeXtBlock(width, drop_path=config.drop_path * index / (total - 1)))
                index += 1
            self.features.append(stage)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(LayerNorm2d(c[-1], eps=LN_EPS), nn.Flatten(1), nn.Linear(c[-1], num_classes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (B, C4, H/32, W/32): (B, 768, 7, 7) for T at 224
        x = self.avgpool(x)  # (B, C4, 1, 1)
        return self.classifier(x)  # (B, num_classes)


def _table_1(top1: float) -> Reported:
    return Reported(top1=top1, source="Liu et al. 2022, Table 1 (ImageNet-1K trained, 224)")


_convnext = partial(register_model, paper=LIU_2022, input_size=(3, 224, 224), test_input_size=(3, 32, 32))


@_convnext(reported=_table_1(82.1), params=28_589_128)
def convnext_t(*, num_classes: int = 1000, in_chans: int = 3) -> ConvNeXt:
    """ConvNeXt-T (28.6M parameters, 4.5 GMACs)."""
    return ConvNeXt(CONFIGS["T"], num_classes=num_classes, in_chans=in_chans)


@_convnext(reported=_table_1(83.1), params=50_223_688)
def convnext_s(*, num_classes: int = 1000, in_chans: int = 3) -> ConvNeXt:
    """ConvNeXt-S (50.2M parameters, 8.7 GMACs)."""
    return ConvNeXt(CONFIGS["S"], num_classes=num_classes, in_chans=in_chans)


@_convnext(reported=_table_1(83.8), params=88_591_464)
def convnext_b(*, num_classes: int = 1000, in_chans: int = 3) -> ConvNeXt:
    """ConvNeXt-B (88.6M parameters, 15.4 GMACs)."""
    return ConvNeXt(CONFIGS["B"], num_classes=num_classes, in_chans=in_chans)
