"""A CIFAR-10 speedrun network in the style of airbench: Keller Jordan 2024, "94% on CIFAR-10 in
3.29 Seconds on a Single GPU", arXiv:2404.00498. https://arxiv.org/abs/2404.00498

Written here from the paper's description (no code taken from its repository). The paper's
claim for its airbench94 recipe: 94% mean test accuracy on CIFAR-10 in a few seconds on one
A100 (3.83 s for the version the issue quotes), from about ten epochs.

    input 3x32x32
    whitening: 2x2 conv, no padding, 24 filters: the 12 eigenvectors of the training
               images' 2x2x3 patch covariance, scaled by 1/sqrt(eigenvalue), and their
               negations (both signs pass the GELU); weights frozen        # (B, 24, 31, 31)
    3 blocks:  conv 3x3 -> max-pool 2 -> BN -> GELU -> conv 3x3 -> BN -> GELU
               widths 64, 256, 256                                        # (B, 256, 3, 3)
    head:      max-pool 3, linear without bias, logits scaled by 1/9      # (B, 10)

The whitening weights come from data: :meth:`Airbench.init_whitening` takes normalised
training images (the trainer calls it once, before the first step, for models that have it).
Until then the layer holds a fixed random init, so the model also builds and runs alone.

As in the paper: BatchNorm's running statistics keep 0.6 of the old value per step (torch
momentum 0.4: at ~500 steps the statistics must follow the weights quickly), and each 3x3
convolution starts with its first ``in_channels`` filters as the identity (dirac init), so a
freshly built block passes its input through.

BatchNorm learns its bias only, as in the paper (its scale stays 1; ``learn_bn_scale=True``
learns both); the paper trains those biases at 64x the learning rate (the recipe's
``norm_lr_scale``).

NOTE deviations from the paper: torch's BatchNorm eps (the paper: 1e-12); the whitening bias is trained
throughout (the paper freezes it after 3 epochs); the paper's alternating (derandomised) flips
are independent random flips here. Its lookahead and its six-view test-time augmentation are
the trainer's (``lookahead`` in the ``cifar-speedrun`` recipe, ``cnnlab eval --tta
flip-translate``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cnnlab.models.features import ImageModel
from cnnlab.models.registry import Reported, register_model

JORDAN_2024 = 'Keller Jordan 2024, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU", arXiv:2404.00498'
WHITEN_EPS = 5e-4  # added to the patch covariance's eigenvalues: keeps near-constant directions from blowing up
LOGIT_SCALE = 1 / 9  # the paper's output temperature: the linear layer's logits are divided by 9
AUTOCAST_DEVICES = ("cpu", "cuda", "mps", "xpu")  # where torch.is_autocast_enabled may be asked
BN_MOMENTUM = 0.4  # torch's convention (weight of the new batch); the paper writes it as 0.6 kept


@dataclass(frozen=True)
class Block:
    width: int  # output channels of both 3x3 convolutions


# The paper's airbench94 widths.
AIRBENCH94: tuple[Block, ...] = (Block(64), Block(256), Block(256))


class ConvGroup(nn.Module):
    """conv 3x3 -> max-pool 2 -> BN -> GELU -> conv 3x3 -> BN -> GELU (halves the map)."""

    def __init__(self, in_chans: int, width: int, *, learn_bn_scale: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, width, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = nn.BatchNorm2d(width, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width, momentum=BN_MOMENTUM)
        self.act = nn.GELU()
        for conv in (self.conv1, self.conv2):
            # Jordan 2024: identity init of the first in_channels filters, the rest torch's default.
            nn.init.dirac_(conv.weight.data[: conv.in_channels])
        for bn in (self.bn1, self.bn2):
            bn.weight.requires_grad_(learn_bn_scale)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.bn1(self.pool(self.conv1(x))))
        return self.act(self.bn2(self.conv2(x)))


class Airbench(ImageModel):
    """Whitening 2x2 conv, three conv groups, max-pool, scaled linear head."""

    def __init__(self, blocks: tuple[Block, ...] = AIRBENCH94, *, num_classes: int = 10, in_chans: int = 3,
                 learn_bn_scale: bool = False) -> None:
        super().__init__()
        patch = in_chans * 2 * 2
        self.whiten = nn.Conv2d(in_chans, 2 * patch, 2, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)  # set from the data, not learnt
        self.act = nn.GELU()
        groups, chans = [], 2 * patch
        for block in blocks:
            groups.append(ConvGroup(chans, block.width, learn_bn_scale=learn_bn_scale))
            chans = block.width
        self.layers = nn.Sequential(*groups)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(chans, num_classes, bias=False)

    @torch.no_grad()
    def init_whitening(self, images: Tensor) -> None:
        """Set the whitening filters from normalised training images (N, C, H, W): patch PCA."""
        c = self.whiten.in_channels
        patches = images.float().unfold(2, 2, 1).unfold(3, 2, 1)  # (N, C, H-1, W-1, 2, 2)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * 4).double()
        cov = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending
        filters = (eigenvectors.T / (eigenvalues + WHITEN_EPS).sqrt().unsqueeze(1)).view(c * 4, c, 2, 2)
        self.whiten.weight.copy_(torch.cat([filters, -filters]).to(self.whiten.weight.dtype))
        self.whiten.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type in AUTOCAST_DEVICES and torch.is_autocast_enabled(x.device.type):
            # Whitening in fp32 under mixed precision: its filters for the weakest directions
            # are large differences of neighbouring pixels (gain up to 1/sqrt(eps) ~ 45),
            # which bf16's 8-bit mantissa cancels badly: measured on cifar10-jpeg, the three
            # weakest whitened channels came out with 9-17% rms error in bf16 (0.2-5% for the
            # rest). The layer is 0.3% of the network's MACs.
            with torch.autocast(x.device.type, enabled=False):
                x = self.act(self.whiten(x.float()))  # (B, 24, 31, 31)
        else:
            x = self.act(self.whiten(x))  # (B, 24, 31, 31)
        x = self.layers(x)  # (B, 256, 3, 3)
        x = self.pool(x).flatten(1)  # (B, 256)
        return self.fc(x) * LOGIT_SCALE


@register_model(
    paper=JORDAN_2024, input_size=(3, 32, 32), test_input_size=(3, 32, 32), params=1_972_792,
    reported=Reported(top1=94.0, dataset="CIFAR-10", source="Jordan 2024, abstract (airbench94, mean of many runs)",
                      note="with the paper's test-time augmentation"),
)
def airbench94(*, num_classes: int = 10, in_chans: int = 3, learn_bn_scale: bool = False) -> Airbench:
    """The airbench94 network: widths 64, 256, 256 after a 24-filter whitening layer."""
    return Airbench(AIRBENCH94, num_classes=num_classes, in_chans=in_chans, learn_bn_scale=learn_bn_scale)
