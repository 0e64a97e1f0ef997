"""Patch embedding: cut the image into non-overlapping P x P patches and project each linearly.

Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words", Eq. 1: a linear map of flattened
patches, which is exactly a convolution with kernel = stride = P. Swin (Liu et al. 2021) uses
the same layer with P = 4.

``PatchEmbed`` *is* an ``nn.Conv2d`` (no wrapper level), so its parameters are named
``weight``/``bias`` wherever the model puts it: torchvision's ``conv_proj`` in ViT and
``features.0.0`` in Swin.
"""

from __future__ import annotations

from torch import Tensor, nn


class PatchEmbed(nn.Conv2d):
    """(B, C, H, W) -> (B, dim, H / P, W / P): one ``dim``-vector per P x P patch.

    The input's height and width must be multiples of ``patch_size``; a strided conv would
    silently drop the remainder, so that is an error here.
    """

    def __init__(self, in_chans: int, dim: int, patch_size: int) -> None:
        if patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {patch_size}")
        super().__init__(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.patch_size = patch_size

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"input of {h}x{w} pixels is not divisible into {self.patch_size}x{self.patch_size} patches; "
                f"expected height and width to be multiples of {self.patch_size}"
            )
        return super().forward(x)


class ChannelsLast(nn.Module):
    """(B, C, H, W) -> (B, H, W, C), the layout Swin's LayerNorms and linear layers work in.

    Sits where torchvision's ``Permute([0, 2, 3, 1])`` sits, so the module indices (and thus
    the state-dict keys) after it line up.
    """

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 2, 3, 1)
