"""Residual blocks: He, Zhang, Ren, Sun 2016, "Deep Residual Learning for Image Recognition",
CVPR. https://arxiv.org/abs/1512.03385

A block computes y = relu(F(x) + shortcut(x)) (Eq. 1 and 2 of the paper). ``F`` is either two
3x3 convs (``BasicBlock``, Fig. 5 left) or a 1x1-3x3-1x1 "bottleneck" (``Bottleneck``, Fig. 5
right). The shortcut is the identity where shapes agree; where the width or the resolution
changes the paper offers three options (Sec. 3.3, compared in Table 3):

- "A": identity with zero entries padded for the new channels, subsampled by taking every
  ``stride``-th pixel; no parameters (the CIFAR networks of Sec. 4.2);
- "B": a projection (1x1 conv + BN) where shapes change, identity elsewhere (the default);
- "C": a projection on every block.

``shortcut=False`` removes the shortcut entirely: the "plain" network of the degradation
experiment, identical to the residual one except for the addition.

The same ``Bottleneck`` builds ResNeXt (``groups`` = cardinality C, ``base_width`` = the group
width d of conv2_x; Xie et al. 2017, Fig. 3c) and SE-ResNet/SE-ResNeXt (``se_reduction`` puts a
squeeze-and-excitation block on the residual branch after its last BN, before the addition; Hu
et al. 2018, Fig. 3). Submodule names follow torchvision's ResNet (``conv1``, ``bn1``, ...,
``downsample.0``/``downsample.1``), so its checkpoints load.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.layers.se import SqueezeExcite

SHORTCUT_OPTIONS = ("A", "B", "C")


class ZeroPadShortcut(nn.Module):
    """Option A: the identity, subsampled by ``stride`` and zero-padded to ``out_chans``.

    The new channels are appended after the input's (the paper says only "extra zero entries
    padded"; where they go does not matter, since the following conv can learn any order).
    """

    def __init__(self, in_chans: int, out_chans: int, stride: int = 1) -> None:
        super().__init__()
        if out_chans < in_chans:
            raise ValueError(f"a zero-pad shortcut can only widen: got {in_chans} -> {out_chans} channels")
        self.extra = out_chans - in_chans
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # 1x1 "conv" of stride s with a fixed identity kernel
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))  # zeros for the extra channels

    def extra_repr(self) -> str:
        return f"extra_channels={self.extra}, stride={self.stride}"


def projection_shortcut(in_chans: int, out_chans: int, stride: int = 1) -> nn.Sequential:
    """Option B/C: W_s x, a strided 1x1 conv followed by BN (torchvision's ``downsample``)."""
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_chans),
    )


def make_shortcut(in_chans: int, out_chans: int, stride: int, option: str) -> nn.Module | None:
    """The shortcut module for one block, or None for the plain identity."""
    if option not in SHORTCUT_OPTIONS:
        raise ValueError(f"unknown shortcut option {option!r}; expected one of {', '.join(SHORTCUT_OPTIONS)}")
    shapes_change = stride != 1 or in_chans != out_chans
    if option == "C" or (option == "B" and shapes_change):
        return projection_shortcut(in_chans, out_chans, stride)
    if option == "A" and shapes_change:
        return ZeroPadShortcut(in_chans, out_chans, stride)
    return None


class BasicBlock(nn.Module):
    """Two 3x3 convs with a shortcut around them (Fig. 2; ResNet-18/34 and the CIFAR nets)."""

    expansion = 1  # output channels = width * expansion

    def __init__(
        self, in_chans: int, width: int, *, stride: int = 1, shortcut: bool = True, shortcut_option: str = "B"
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = shortcut
        self.downsample = make_shortcut(in_chans, width, stride, shortcut_option) if shortcut else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))  # F(x)
        if self.shortcut:
            identity = x if self.downsample is None else self.downsample(x)
            out = out + identity  # F(x) + x
        return self.relu(out)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        """The BN that ends the residual branch (zeroed by ``zero_init_residual``)."""
        return self.bn2


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 -> 1x1 (expand x4), with a shortcut around them (Fig. 5 right).

    The 3x3 conv has ``int(width * base_width / 64) * groups`` channels: ``width`` for ResNet
    (groups=1, base_width=64), C x d at conv2_x for ResNeXt C x d, doubling per stage as the
    paper's Table 1 does. ``stride_in_3x3`` moves the stage's downsampling stride from the first
    1x1 conv (the paper, and the Caffe models it released) to the 3x3 conv (fb.resnet.torch,
    ResNeXt, torchvision: "ResNet v1.5", about 0.2 GMACs more for ResNet-50).
    """

    expansion = 4

    def __init__(
        self,
        in_chans: int,
        width: int,
        *,
        stride: int = 1,
        groups: int = 1,
        base_width: int = 64,
        stride_in_3x3: bool = False,
        se_reduction: int | None = None,
        shortcut: bool = True,
        shortcut_option: str = "B",
    ) -> None:
        super().__init__()
        inner = int(width * base_width / 64) * groups
        out_chans = width * self.expansion
        stride_1x1, stride_3x3 = (1, stride) if stride_in_3x3 else (stride, 1)
        self.conv1 = nn.Conv2d(in_chans, inner, 1, stride=stride_1x1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, inner, 3, stride=stride_3x3, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = nn.Conv2d(inner, out_chans, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chans)
        self.relu = nn.ReLU(inplace=True)
        self.se = SqueezeExcite(out_chans, reduction=se_reduction) if se_reduction is not None else None
        self.shortcut = shortcut
        self.downsample = make_shortcut(in_chans, out_chans, stride, shortcut_option) if shortcut else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # 1x1, reduce
        out = self.relu(self.bn2(self.conv2(out)))  # 3x3 (grouped for ResNeXt)
        out = self.bn3(self.conv3(out))  # 1x1, expand: F(x)
        if self.se is not None:
            out = self.se(out)  # SENet: recalibrate the residual before the addition
        if self.shortcut:
            identity = x if self.downsample is None else self.downsample(x)
            out = out + identity  # F(x) + x
        return self.relu(out)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


@dataclass(frozen=True)
class BlockSpec:
    """Everything that varies between the blocks of the residual families, as data."""

    kind: str = "bottleneck"  # "basic" (two 3x3 convs) or "bottleneck" (1x1-3x3-1x1)
    groups: int = 1  # cardinality C of the grouped 3x3 conv (ResNeXt); 1 for ResNet
    base_width: int = 64  # group width d at conv2_x (ResNeXt's "32x4d" -> 4); 64 for ResNet
    stride_in_3x3: bool = False  # False: the paper's stride on the first 1x1; True: "v1.5"
    se_reduction: int | None = None  # SENet's reduction ratio r; None = no SE block
    shortcut: bool = True  # False = the plain network (no shortcuts at all)
    shortcut_option: str = "B"  # "A" zero-pad, "B" projection where shapes change, "C" always

    def __post_init__(self) -> None:
        if self.kind not in BLOCKS:
            raise ValueError(f"unknown block kind {self.kind!r}; expected one of {', '.join(BLOCKS)}")
        if self.shortcut_option not in SHORTCUT_OPTIONS:
            raise ValueError(
                f"unknown shortcut option {self.shortcut_option!r}; expected one of {', '.join(SHORTCUT_OPTIONS)}"
            )
        if self.kind == "basic" and (self.groups, self.base_width, self.se_reduction) != (1, 64, None):
            raise ValueError(
                "a basic block has no groups, base width or SE here; got "
                f"groups={self.groups}, base_width={self.base_width}, se_reduction={self.se_reduction}"
            )
        if self.groups < 1 or self.base_width < 1:
            raise ValueError(f"groups and base_width must be >= 1, got {self.groups} and {self.base_width}")

    @property
    def expansion(self) -> int:
        return BLOCKS[self.kind].expansion

    def build(self, in_chans: int, width: int, stride: int) -> BasicBlock | Bottleneck:
        """One block of this kind, ``in_chans`` -> ``width * expansion`` channels."""
        if self.kind == "basic":
            return BasicBlock(
                in_chans, width, stride=stride, shortcut=self.shortcut, shortcut_option=self.shortcut_option
            )
        return Bottleneck(
            in_chans,
            width,
            stride=stride,
            groups=self.groups,
            base_width=self.base_width,
            stride_in_3x3=self.stride_in_3x3,
            se_reduction=self.se_reduction,
            shortcut=self.shortcut,
            shortcut_option=self.shortcut_option,
        )
