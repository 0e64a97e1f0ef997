"""ResNet for CIFAR-10: He, Zhang, Ren, Sun 2016, "Deep Residual Learning for Image
Recognition", CVPR, Section 4.2. https://arxiv.org/abs/1512.03385

The networks of the paper's CIFAR-10 analysis, on a 32x32 input: a 3x3 conv, then three
stages of n basic blocks (2n 3x3 conv layers each), then global average pooling and a 10-way
fully connected layer: 6n + 2 weighted layers.

    output map size   32x32   16x16   8x8
    # layers          1+2n    2n      2n
    # filters         16      32      64

Subsampling is by stride-2 convs at the first block of the second and third stages. All
shortcuts are identities; where the width doubles they are option A: subsampled and
zero-padded, so a residual net has exactly as many parameters as its plain counterpart
(``plain20`` .. ``plain110``), the pair compared in the degradation experiment (Fig. 6).

``width`` scales the three stages (16/32/64 by default); narrow nets train fast on a CPU.
``CifarResNet(n, BlockSpec("basic", shortcut_option="B"))`` gives projection shortcuts instead
(the paper's ImageNet choice). Initialisation as for the ImageNet
nets (He, fan-out; BN at (1, 0)). There is no torchvision counterpart, so names follow
torchvision's ImageNet ResNet (``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``fc``).
"""

from __future__ import annotations

from functools import partial

from torch import Tensor, nn

from cnnlab.layers.residual import BlockSpec
from cnnlab.models.features import ImageModel
from cnnlab.models.registry import Reported, register_model
from cnnlab.models.resnet import HE_2016, init_resnet

# The three stages of Sec. 4.2 as (width multiple of the base width, stride of the first block).
CIFAR_STAGES: tuple[tuple[int, int], ...] = ((1, 1), (2, 2), (4, 2))


class CifarResNet(ImageModel):
    """6n + 2 layers: conv 3x3, 3 stages of n basic blocks, global average pool, fc."""

    def __init__(
        self, n: int, block: BlockSpec, *, width: int = 16, num_classes: int = 10, in_chans: int = 3
    ) -> None:
        super().__init__()
        if n < 1:
            raise ValueError(f"blocks per stage n must be >= 1 (depth 6n + 2), got {n}")
        if width < 1:
            raise ValueError(f"width must be >= 1 (the paper's is 16), got {width}")
        if block.kind != "basic":
            raise ValueError(f"the CIFAR ResNets use basic blocks, got {block.kind!r}")
        self.conv1 = nn.Conv2d(in_chans, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        chans = width
        for i, (multiple, stride) in enumerate(CIFAR_STAGES, start=1):
            blocks = []
            for j in range(n):
                blocks.append(block.build(chans, width * multiple, stride=stride if j == 0 else 1))
                chans = width * multiple
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(chans, num_classes)
        self.num_features = chans
        init_resnet(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 16, 32, 32)
        x = self.layer1(x)  # (B, 16, 32, 32)
        x = self.layer2(x)  # (B, 32, 16, 16)
        x = self.layer3(x)  # (B, 64, 8, 8)
        x = self.avgpool(x).flatten(1)  # (B, 64)
        return self.fc(x)  # (B, num_classes)


def _cifar_resnet(depth: int, *, shortcut: bool, num_classes: int, in_chans: int, width: int) -> CifarResNet:
    n = (depth - 2) // 6
    block = BlockSpec("basic", shortcut=shortcut, shortcut_option="A")
    return CifarResNet(n, block, width=width, num_classes=num_classes, in_chans=in_chans)


def _table_6(error: float, note: str = "") -> Reported:
    """Table 6 of the paper: CIFAR-10 test error (%), reported as accuracy."""
    return Reported(top1=round(100 - error, 2), dataset="CIFAR-10", source="He et al. 2016, Table 6", note=note)


# Every CIFAR-10 net. The plain nets have no table, only curves (Fig. 6): their test error
# rises with depth.
_cifar = partial(register_model, paper=HE_2016, input_size=(3, 32, 32), test_input_size=(3, 32, 32))


@_cifar(reported=_table_6(8.75), params=269_722)
def resnet20(*, num_classes: int = 10, in_chans: int = 3, width: int = 16) -> CifarResNet:
    """ResNet-20 for CIFAR-10 (n = 3)."""
    return _cifar_resnet(20, shortcut=True, num_classes=num_classes, in_chans=in_chans, width=width)


@_cifar(reported=_table_6(7.51), params=464_154)
def resnet32(*, num_classes: int = 10, in_chans: int = 3, width: int = 16) -> CifarResNet:
    """ResNet-32 for CIFAR-10 (n = 5)."""
    return _cifar_resnet(32, shortcut=True, num_classes=num_classes, in_chans=in_chans, width=width)


@_cifar(reported=_table_6(7.17), params=658_586)
def resnet44(*, num_classes: int = 10, in_chans: int = 3, width: int = 16) -> CifarResNet:
    """ResNet-44 for CIFAR-10 (n = 7)."""
    return _cifar_resnet(44, shortcut=True, num_classes=num_classes, in_chans=in_chans, width=width)


@_cifar(reported=_table_6(6.97), params=853_018)
def resnet56(*, num_classes: int = 10, in_chans: int = 3, width: int = 16) -> CifarResNet:
    """ResNet-56 for CIFAR-10 (n = 9)."""
    return _cifar_resnet(56, shortcut=True, num_classes=num_classes, in_chans=in_chans, width=width)


@_cifar(reported=_table_6(6.43, "best of 5 runs; mean 6.61 +- 0.16"), params=1_727_962)
def resnet110(*, num_classes: int = 10, in_chans: int = 3, width: int = 16) -> CifarResNet:
    """ResNet-110 for CIFAR-10 (n = 18)."""
    return _cifar_resnet(110, shortcut=True, num_classes=num_classes, in_chans=in_chans, width=width)


@_cifar(reported=_table_6(7.93, "overfits: worse than ResNet-110"), params=19_421_274)
def resnet1202(*, num_classes: int = 10, in_chans: int = 3, width: int = 16) -> CifarResNet:
    """ResNet-1202 for CIFAR-10 (n = 200)."""
    return _cifar_resnet(1202, shortcut=True, num_classes=num_classes, in_chans=in_chans, width=width)


@_cifar(params=269_722)
def plain20(*, num_classes: int = 10, in_chans: int = 3, width: int = 16) -> CifarResNet:
    """The 20-layer plain net for CIFAR-10: ResNet-20 without shortcuts."""
    return _cifar_resnet(20, shortcut=False, num_classes=num_classes, in_chans=in_chans, width=width)


@_cifar(params=464_154)
def plain32(*, num_classes: int = 10, in_chans: int = 3, width: int = 16) -> CifarResNet:
    """The 32-layer plain net for CIFAR-10: ResNet-32 without shortcuts."""
    return _cifar_resnet(32, shortcut=False, num_classes=num_classes, in_chans=in_chans, width=width)


@_cifar(params=658_586)
def plain44(*, num_classes: int = 10, in_chans: int = 3, width: int = 16) -> CifarResNet:
    """The 44-layer plain net for CIFAR-10: ResNet-44 without shortcuts."""
    return _cifar_resnet(44, shortcut=False, num_classes=num_classes, in_chans=in_chans, width=width)


@_cifar(params=853_018)
def plain56(*, num_classes: int = 10, in_chans: int = 3, width: int = 16) -> CifarResNet:
    """The 56-layer plain net for CIFAR-10: ResNet-56 without shortcuts."""
    return _cifar_resnet(56, shortcut=False, num_classes=num_classes, in_chans=in_chans, width=width)


@_cifar(params=1_727_962)
def plain110(*, num_classes: int = 10, in_chans: int = 3, width: int = 16) -> CifarResNet:
    """The 110-layer plain net for CIFAR-10: ResNet-110 without shortcuts."""
    return _cifar_resnet(110, shortcut=False, num_classes=num_classes, in_chans=in_chans, width=width)
