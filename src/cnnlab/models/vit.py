"""Vision Transformer (ViT) and its data-efficient training variants (DeiT).

- Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words: Transformers for Image Recognition
  at Scale", ICLR. https://arxiv.org/abs/2010.11929
- Touvron et al. 2021, "Training data-efficient image transformers & distillation through
  attention", ICML. https://arxiv.org/abs/2012.12877

Eqs. 1-4 of the ViT paper, for an H x W image and P x P patches (N = HW / P^2 tokens):

    z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos        patch embedding + class token
    z'_l = MSA(LN(z_{l-1})) + z_{l-1}                     l = 1..L
    z_l  = MLP(LN(z'_l)) + z'_l                           MLP: Linear-GELU-Linear
    y    = LN(z_L^0)  -> linear head                      the class token's final state

Variants (ViT Table 1, DeiT Table 1); every head is 64 wide:

    name      width D  depth L  heads  MLP    params at 224
    ViT-B/16  768      12       12     3072   86.6 M  (= DeiT-B)
    ViT-L/16  1024     24       16     4096   304.3 M
    DeiT-Ti   192      12       3      768    5.7 M
    DeiT-S    384      12       6      1536   22.1 M

DeiT changes only the training recipe (strong augmentation, stochastic depth 0.1, ...), not
the network, so the same class builds both; the builders differ in their default drop-path.

Deviations and notes:
- Module and parameter names follow torchvision's ``VisionTransformer`` (``conv_proj``,
  ``class_token``, ``encoder.pos_embedding``, ``encoder.layers.encoder_layer_0.ln_1``,
  ``self_attention.in_proj_weight``, ``mlp.0``/``mlp.3``, ``encoder.ln``, ``heads.head``):
  torchvision checkpoints load with ``strict=True``. DeiT checkpoints (timm layout) need
  their keys renamed.
- The classifier is a single linear layer: the ViT paper's pre-training head has a tanh
  hidden layer, its fine-tuning head (used for all ImageNet results) does not.
- The position embedding is sized for ``image_size``; running at another resolution means
  building the model for it (and, for pretrained weights, interpolating E_pos, ViT Sec. 3.2).
- Initialisation follows DeiT (timm): truncated normal (std 0.02) for linear layers, the
  position embedding and class token; zero biases. The patch projection uses the ViT
  reference's LeCun normal. (torchvision zero-initialises the head instead.)
- Compute counts the attention matmuls Q K^T and A V: ViT-B/16 is 17.6 G MACs at 224x224.
- DeiT's distillation token is not implemented.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from cnnlab.layers.attention import MultiHeadSelfAttention
from cnnlab.layers.drop_path import DropPath
from cnnlab.layers.patch_embed import PatchEmbed
from cnnlab.models.features import ImageModel
from cnnlab.models.registry import Reported, register_model

DOSOVITSKIY_2021 = "Dosovitskiy et al. 2021, An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale"
TOUVRON_2021 = "Touvron et al. 2021, Training data-efficient image transformers & distillation through attention"

LN_EPS = 1e-6  # the reference JAX code's LayerNorm epsilon (torchvision and timm use it too)


@dataclass(frozen=True)
class ViTConfig:
    patch_size: int  # P: side of the square patches, in pixels
    width: int  # D: token width ("hidden size")
    depth: int  # L: encoder blocks
    heads: int  # attention heads; D / heads = 64 in every published variant
    mlp_dim: int  # hidden width of each block's MLP (4D)


VIT_CONFIGS: dict[str, ViTConfig] = {
    "B/16": ViTConfig(patch_size=16, width=768, depth=12, heads=12, mlp_dim=3072),
    "L/16": ViTConfig(patch_size=16, width=1024, depth=24, heads=16, mlp_dim=4096),
    "Ti/16": ViTConfig(patch_size=16, width=192, depth=12, heads=3, mlp_dim=768),
    "S/16": ViTConfig(patch_size=16, width=384, depth=12, heads=6, mlp_dim=1536),
}


class EncoderBlock(nn.Module):
    """Pre-norm transformer block, Eqs. 2-3; (B, N, D) -> (B, N, D)."""

    def __init__(self, config: ViTConfig, *, dropout: float, drop_path: float) -> None:
        super().__init__()
        d = config.width
        self.ln_1 = nn.LayerNorm(d, eps=LN_EPS)
        self.self_attention = MultiHeadSelfAttention(d, config.heads)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(d, eps=LN_EPS)
        # Indices 0 and 3 hold the linear layers, as torchvision's MLPBlock.
        self.mlp = nn.Sequential(
            nn.Linear(d, config.mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(config.mlp_dim, d),
            nn.Dropout(dropout),
        )
        self.drop_path = DropPath(drop_path)  # stochastic depth (DeiT); identity at 0

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.dropout(self.self_attention(self.ln_1(x))))
        x = x + self.drop_path(self.mlp(self.ln_2(x)))
        return x


class Encoder(nn.Module):
    """Adds E_pos, runs the L blocks, applies the final LayerNorm."""

    def __init__(self, config: ViTConfig, seq_len: int, *, dropout: float, drop_path: float) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.zeros(1, seq_len, config.width))
        self.dropout = nn.Dropout(dropout)
        # Stochastic depth grows linearly with depth, from 0 to drop_path at the last block.
        rates = [drop_path * i / max(config.depth - 1, 1) for i in range(config.depth)]
        self.layers = nn.Sequential(
            OrderedDict(
                (f"encoder_layer_{i}", EncoderBlock(config, dropout=dropout, drop_path=rate))
                for i, rate in enumerate(rates)
            )
        )
        self.ln = nn.LayerNorm(config.width, eps=LN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        x = self.dropout(x + self.pos_embedding)
        return self.ln(self.layers(x))


class VisionTransformer(ImageModel):
    def __init__(
        self,
        config: ViTConfig,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        image_size: int = 224,
        dropout: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if image_size < config.patch_size or image_size % config.patch_size:
            raise ValueError(
                f"image_size {image_size} is not a positive multiple of the patch size {config.patch_size}"
            )
        self.config = config
        self.image_size = image_size
        num_patches = (image_size // config.patch_size) ** 2
        self.conv_proj = PatchEmbed(in_chans, config.width, config.patch_size)  # E of Eq. 1
        self.class_token = nn.Parameter(torch.zeros(1, 1, config.width))
        self.encoder = Encoder(config, num_patches + 1, dropout=dropout, drop_path=drop_path)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(config.width, num_classes)))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, MultiHeadSelfAttention):
                nn.init.trunc_normal_(m.in_proj_weight, std=0.02)
                nn.init.zeros_(m.in_proj_bias)
        nn.init.trunc_normal_(self.encoder.pos_embedding, std=0.02)
        nn.init.trunc_normal_(self.class_token, std=0.02)
        fan_in = self.conv_proj.in_channels * self.config.patch_size**2
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))  # LeCun normal
        nn.init.zeros_(self.conv_proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"this model was built for {self.image_size}x{self.image_size} inputs (its position "
                f"embedding has one entry per patch), got {x.shape[-2]}x{x.shape[-1]}; "
                "build it with image_size=... to match"
            )
        x = self.conv_proj(x)  # (B, D, 14, 14) for P = 16 at 224x224
        x = x.flatten(2).transpose(1, 2)  # (B, 196, D): one token per patch
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 197, D)
        x = self.encoder(x)  # (B, 197, D)
        return self.heads(x[:, 0])  # the class token -> (B, num_classes)


def _vit(
    variant: str, num_classes: int, in_chans: int, image_size: int, dropout: float, drop_path: float
) -> VisionTransformer:
    return VisionTransformer(
        VIT_CONFIGS[variant],
        num_classes=num_classes,
        in_chans=in_chans,
        image_size=image_size,
        dropout=dropout,
        drop_path=drop_path,
    )


_DEIT = "Touvron et al. 2021, Table 5 (ImageNet-1k only, 224x224, no distillation)"
_vit_register = partial(register_model, paper=DOSOVITSKIY_2021, input_size=(3, 224, 224))
_deit_register = partial(register_model, paper=TOUVRON_2021, input_size=(3, 224, 224))


@_vit_register(
    reported=Reported(
        top1=81.072,
        top5=95.318,
        source="torchvision ViT_B_16_Weights.IMAGENET1K_V1: trained from scratch on ImageNet-1k "
        "with a modified version of DeiT's training recipe, 224x224",
        note="ViT paper, Table 5: 77.9 trained on ImageNet-1k only, 84.15 JFT-300M pre-trained (384x384)",
    ),
    params=86_567_656,
)
def vit_b_16(
    *, num_classes: int = 1000, in_chans: int = 3, image_size: int = 224, dropout: float = 0.0, drop_path: float = 0.0
) -> VisionTransformer:
    """ViT-Base, 16x16 patches."""
    return _vit("B/16", num_classes, in_chans, image_size, dropout, drop_path)


@_vit_register(
    reported=Reported(
        top1=79.662,
        top5=94.638,
        source="torchvision ViT_L_16_Weights.IMAGENET1K_V1: trained from scratch on ImageNet-1k "
        "with a modified version of TorchVision's new training recipe; evaluated at resize 242, crop 224",
        note="ViT paper: 76.5 trained on ImageNet-1k only (Table 5, 384x384), 87.76 JFT-300M pre-trained (Table 2)",
    ),
    params=304_326_632,
)
def vit_l_16(
    *, num_classes: int = 1000, in_chans: int = 3, image_size: int = 224, dropout: float = 0.0, drop_path: float = 0.0
) -> VisionTransformer:
    """ViT-Large, 16x16 patches."""
    return _vit("L/16", num_classes, in_chans, image_size, dropout, drop_path)


@_deit_register(reported=Reported(top1=72.2, source=_DEIT), params=5_717_416)
def deit_tiny(
    *, num_classes: int = 1000, in_chans: int = 3, image_size: int = 224, dropout: float = 0.0, drop_path: float = 0.1
) -> VisionTransformer:
    """DeiT-Ti: ViT with D = 192, 3 heads."""
    return _vit("Ti/16", num_classes, in_chans, image_size, dropout, drop_path)


@_deit_register(reported=Reported(top1=79.8, source=_DEIT), params=22_050_664)
def deit_small(
    *, num_classes: int = 1000, in_chans: int = 3, image_size: int = 224, dropout: float = 0.0, drop_path: float = 0.1
) -> VisionTransformer:
    """DeiT-S: ViT with D = 384, 6 heads."""
    return _vit("S/16", num_classes, in_chans, image_size, dropout, drop_path)


@_deit_register(reported=Reported(top1=81.8, source=_DEIT), params=86_567_656)
def deit_base(
    *, num_classes: int = 1000, in_chans: int = 3, image_size: int = 224, dropout: float = 0.0, drop_path: float = 0.1
) -> VisionTransformer:
    """DeiT-B: the ViT-B/16 network, trained with DeiT's recipe."""
    return _vit("B/16", num_classes, in_chans, image_size, dropout, drop_path)
