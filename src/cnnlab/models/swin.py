"""Swin Transformer: Liu et al. 2021, "Swin Transformer: Hierarchical Vision Transformer using
Shifted Windows", ICCV. https://arxiv.org/abs/2103.14030

Fig. 3 of the paper, for a 224x224 image (C = embedding width of stage 1):

    patch partition + linear embedding   4x4 patches -> C channels       56x56
    stage 1   Swin blocks x d1                                           56x56, C
    stage 2   patch merging (2x2 -> 2C), Swin blocks x d2                28x28, 2C
    stage 3   patch merging, Swin blocks x d3                            14x14, 4C
    stage 4   patch merging, Swin blocks x d4                            7x7,   8C
    head      LayerNorm, global average pool, linear

Blocks come in pairs (Eq. 3): the first attends within 7x7 windows (W-MSA), the second within
windows shifted by 3 (SW-MSA), both with a relative position bias; each is followed by a
2-layer MLP with GELU, with pre-LayerNorms and residual connections. Heads are 32 wide.
Variants (Sec. 3.3): Swin-T C=96 {2,2,6,2}, Swin-S C=96 {2,2,18,2}, Swin-B C=128 {2,2,18,2},
Swin-L C=192 {2,2,18,2}.

Deviations and notes:
- Module names follow torchvision's ``SwinTransformer`` (``features.0.0`` patch conv,
  ``features.0.2`` its LayerNorm, ``features.1.0.attn.qkv``, ``...relative_position_bias_table``,
  the ``relative_position_index`` buffer, ``features.2.reduction``/``norm`` for patch merging,
  ``norm``, ``head``), so torchvision's swin_t/s/b checkpoints load. torchvision has no Swin-L;
  ours has 196,532,476 parameters with 1000 classes.
- Input sizes: any multiple of the 4-pixel patch works. Like torchvision, feature maps that
  are not a multiple of the 7x7 window are zero-padded before attention (the paper assumes
  divisible sizes: 224 and 384 are), odd maps are padded before patch merging, and a shift
  is skipped where one window covers the whole map (stage 4 at 224). So the network runs on
  any multiple of 4 pixels; 32x32 is the registry's test size (stage 4 is then 1x1, and every
  stage's map is padded). No padding happens, i.e. the network is exactly the paper's, when
  the stage-1 map (input / 4) is a multiple of 7 at each stage: inputs of 224 x n pixels.
- Patch merging concatenates the 2x2 neighbours in torchvision's (and the reference code's)
  order (0,0), (1,0), (0,1), (1,1), then LayerNorm(4C), then a bias-free Linear(4C -> 2C).
- Stochastic depth grows linearly from 0 to the paper's rate (0.2 / 0.3 / 0.5 for T / S / B)
  over all blocks; Swin-L uses 0.2 (the reference code's ImageNet-22k setting).
- Compute counts the attention matmuls: Swin-T is 4.5 G MACs at 224x224 (paper: 4.5G FLOPs).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.layers.attention import WindowAttention
from cnnlab.layers.drop_path import DropPath
from cnnlab.layers.patch_embed import ChannelsLast, PatchEmbed
from cnnlab.models.features import ImageModel
from cnnlab.models.registry import Reported, register_model

LIU_2021 = "Liu et al. 2021, Swin Transformer: Hierarchical Vision Transformer using Shifted Windows"

PATCH_SIZE = 4  # the patch partition's 4x4 patches
WINDOW_SIZE = 7  # M: tokens per window side
MLP_RATIO = 4  # MLP hidden width / block width
LN_EPS = 1e-5  # nn.LayerNorm's default, as the reference code and torchvision


@dataclass(frozen=True)
class SwinConfig:
    embed_dim: int  # C: channels of stage 1; stage i has C * 2^(i-1)
    depths: tuple[int, int, int, int]  # Swin blocks per stage (pairs of W-MSA, SW-MSA)
    heads: tuple[int, int, int, int]  # attention heads per stage (32 channels per head)
    drop_path: float  # stochastic depth rate of the last block


SWIN_CONFIGS: dict[str, SwinConfig] = {
    "T": SwinConfig(embed_dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), drop_path=0.2),
    "S": SwinConfig(embed_dim=96, depths=(2, 2, 18, 2), heads=(3, 6, 12, 24), drop_path=0.3),
    "B": SwinConfig(embed_dim=128, depths=(2, 2, 18, 2), heads=(4, 8, 16, 32), drop_path=0.5),
    "L": SwinConfig(embed_dim=192, depths=(2, 2, 18, 2), heads=(6, 12, 24, 48), drop_path=0.2),
}


class SwinBlock(nn.Module):
    """Eq. 3: x + (S)W-MSA(LN(x)), then x + MLP(LN(x)); (B, H, W, C) -> same."""

    def __init__(self, dim: int, heads: int, *, shift: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = WindowAttention(dim, heads, window_size=WINDOW_SIZE, shift=shift)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        # Indices 0 and 3 hold the linear layers, as torchvision's MLP (2 and 4 are dropouts).
        hidden = MLP_RATIO * dim
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, dim), nn.Dropout(0.0)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class PatchMerging(nn.Module):
    """2x2 neighbouring tokens -> one token of twice the width; (B, H, W, C) -> (B, H/2, W/2, 2C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=LN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[1:3]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))  # odd maps: pad one row/column
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class SwinTransformer(ImageModel):
    def __init__(self, config: SwinConfig, *, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        c = config.embed_dim
        total = sum(config.depths)
        rates = [config.drop_path * i / (total - 1) for i in range(total)]
        # features.0 = patch partition + linear embedding; then stage, merge, stage, ... (torchvision).
        self.features = nn.Sequential(
            nn.Sequential(PatchEmbed(in_chans, c, PATCH_SIZE), ChannelsLast(), nn.LayerNorm(c, eps=LN_EPS))
        )
        block_id = 0
        for stage, (depth, heads) in enumerate(zip(config.depths, config.heads)):
            dim = c * 2**stage
            blocks = []
            for i in range(depth):
                shift = 0 if i % 2 == 0 else WINDOW_SIZE // 2  # W-MSA, then SW-MSA
                blocks.append(SwinBlock(dim, heads, shift=shift, drop_path=rates[block_id]))
                block_id += 1
            self.features.append(nn.Sequential(*blocks))
            if stage < len(config.depths) - 1:
                self.features.append(PatchMerging(dim))
        self.num_features = c * 2 ** (len(config.depths) - 1)
        self.norm = nn.LayerNorm(self.num_features, eps=LN_EPS)
        self.head = nn.Linear(self.num_features, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # Reference code: truncated normal (std 0.02) for every linear layer, zero biases.
        # The relative position bias tables get the same in WindowAttention.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (B, 7, 7, 8C) at 224x224: channels last throughout
        x = self.norm(x)
        x = x.mean(dim=(1, 2))  # global average pool -> (B, 8C)
        return self.head(x)  # (B, num_classes)


def _swin(variant: str, num_classes: int, in_chans: int) -> SwinTransformer:
    return SwinTransformer(SWIN_CONFIGS[variant], num_classes=num_classes, in_chans=in_chans)


_TABLE1A = "Liu et al. 2021, Table 1(a): ImageNet-1k training, 224x224"
_swin_register = partial(register_model, paper=LIU_2021, input_size=(3, 224, 224), test_input_size=(3, 32, 32))


@_swin_register(reported=Reported(top1=81.3, source=_TABLE1A), params=28_288_354)
def swin_t(*, num_classes: int = 1000, in_chans: int = 3) -> SwinTransformer:
    """Swin-T: C = 96, depths {2, 2, 6, 2}."""
    return _swin("T", num_classes, in_chans)


@_swin_register(reported=Reported(top1=83.0, source=_TABLE1A), params=49_606_258)
def swin_s(*, num_classes: int = 1000, in_chans: int = 3) -> SwinTransformer:
    """Swin-S: C = 96, depths {2, 2, 18, 2}."""
    return _swin("S", num_classes, in_chans)


@_swin_register(reported=Reported(top1=83.5, source=_TABLE1A), params=87_768_224)
def swin_b(*, num_classes: int = 1000, in_chans: int = 3) -> SwinTransformer:
    """Swin-B: C = 128, depths {2, 2, 18, 2}."""
    return _swin("B", num_classes, in_chans)


@_swin_register(
    reported=Reported(
        top1=86.3,
        top5=97.9,
        source="microsoft/Swin-Transformer model zoo (MODELHUB.md): Swin-L, ImageNet-22K pre-trained, 224x224",
        note="ImageNet-22k pre-training, ImageNet-1k fine-tuning. The paper's Table 1(b) has Swin-L only at "
        "384x384 (87.3); it trains no Swin-L on ImageNet-1k alone",
    ),
    params=196_532_476,
)
def swin_l(*, num_classes: int = 1000, in_chans: int = 3) -> SwinTransformer:
    """Swin-L: C = 192, depths {2, 2, 18, 2}."""
    return _swin("L", num_classes, in_chans)
