"""DenseNet-BC: Huang, Liu, van der Maaten, Weinberger 2017, "Densely Connected Convolutional
Networks", CVPR. https://arxiv.org/abs/1608.06993

The ImageNet networks of Table 1, all DenseNet-BC (bottleneck width 4k, compression 0.5):

    stem        7x7 conv, 2k channels, stride 2; 3x3 max pool, stride 2     -> 56x56
    block 1     [1x1 conv, 3x3 conv] x 6                                    -> 56x56
    transition  1x1 conv (halve channels), 2x2 avg pool, stride 2           -> 28x28
    block 2     [1x1 conv, 3x3 conv] x 12                                   -> 28x28
    transition                                                              -> 14x14
    block 3     [1x1 conv, 3x3 conv] x 24 / 32 / 48 / 36                    -> 14x14
    transition                                                              -> 7x7
    block 4     [1x1 conv, 3x3 conv] x 16 / 32 / 32 / 24                    -> 7x7
    classifier  BN-ReLU, global average pool, 1000-way fully connected

with growth rate k = 32 (DenseNet-121/169/201) and k = 48 for DenseNet-161, whose stem has
96 channels. The name counts the weighted layers: 121 = 1 (stem) + 2 * 58 (dense layers)
+ 3 (transitions) + 1 (classifier).

Deviations and notes:
- DenseNet-161 is not in the paper's Table 1; it comes from the authors' released models
  (github.com/liuzhuang13/DenseNet) and torchvision.
- Module names follow torchvision (``features.conv0``, ``features.denseblock1.denselayer1.norm1``,
  ``features.transition1.conv``, ``features.norm5``, ``classifier``): its checkpoints load.
- Compute: counting every conv and the classifier at 224x224 gives 2.83 G multiply-accumulates
  for DenseNet-121 (3.36 / 4.29 / 7.73 G for 169 / 201 / 161), the figures torchvision lists
  as "GFLOPS"; BN, ReLU, pooling and the concatenations are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.layers.dense import DenseBlock, Transition
from cnnlab.models.features import ImageModel
from cnnlab.models.registry import Reported, register_model

HUANG_2017 = "Huang, Liu, van der Maaten, Weinberger 2017, Densely Connected Convolutional Networks"

BN_SIZE = 4  # bottleneck: the 1x1 conv outputs 4k maps (DenseNet-B)
COMPRESSION = 0.5  # a transition keeps theta = 0.5 of its input channels (DenseNet-C)


@dataclass(frozen=True)
class DenseNetConfig:
    growth_rate: int  # k: feature maps each dense layer adds
    block_layers: tuple[int, int, int, int]  # dense layers in each of the four blocks
    stem_chans: int  # output channels of the 7x7 stem conv (2k in the paper)


# Table 1 of the paper (and torchvision for DenseNet-161).
DENSENET_CONFIGS: dict[str, DenseNetConfig] = {
    "121": DenseNetConfig(growth_rate=32, block_layers=(6, 12, 24, 16), stem_chans=64),
    "169": DenseNetConfig(growth_rate=32, block_layers=(6, 12, 32, 32), stem_chans=64),
    "201": DenseNetConfig(growth_rate=32, block_layers=(6, 12, 48, 32), stem_chans=64),
    "161": DenseNetConfig(growth_rate=48, block_layers=(6, 12, 36, 24), stem_chans=96),
}


class DenseNet(ImageModel):
    def __init__(
        self,
        config: DenseNetConfig,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        k = config.growth_rate
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(in_chans, config.stem_chans, 7, stride=2, padding=3, bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(config.stem_chans))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("pool0", nn.MaxPool2d(3, stride=2, padding=1))
        chans = config.stem_chans
        for i, num_layers in enumerate(config.block_layers, start=1):
            block = DenseBlock(num_layers, chans, k, bn_size=BN_SIZE, memory_efficient=memory_efficient)
            self.features.add_module(f"denseblock{i}", block)
            chans = block.out_chans
            if i < len(config.block_layers):
                out = int(chans * COMPRESSION)
                self.features.add_module(f"transition{i}", Transition(chans, out))
                chans = out
        # The last BN before the classifier; its ReLU is applied in forward (torchvision).
        self.features.add_module("norm5", nn.BatchNorm2d(chans))
        self.classifier = nn.Linear(chans, num_classes)
        self.num_features = chans
        self._init_weights()

    def _init_weights(self) -> None:
        # He et al. 2015 init for the convs, as the reference Torch code; BN to identity.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (B, 1024, 7, 7) for DenseNet-121 at 224x224
        x = F.relu(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (B, 1024)
        return self.classifier(x)  # (B, num_classes)


def _densenet(depth: str, num_classes: int, in_chans: int, memory_efficient: bool) -> DenseNet:
    return DenseNet(
        DENSENET_CONFIGS[depth], num_classes=num_classes, in_chans=in_chans, memory_efficient=memory_efficient
    )


# The smallest input that still leaves a 1x1 map after the last transition:
# 29 -> conv0 15 -> pool0 8 -> transitions 4, 2, 1.
_SMALLEST_INPUT = (3, 29, 29)
_TABLE3 = "Huang et al. 2017, Table 3 (single-crop error 25.02/7.71, 23.80/6.85, 22.58/6.34)"
_densenet_bc = partial(register_model, paper=HUANG_2017, input_size=(3, 224, 224), test_input_size=_SMALLEST_INPUT)


@_densenet_bc(reported=Reported(top1=74.98, top5=92.29, source=_TABLE3), params=7_978_856)
def densenet121(*, num_classes: int = 1000, in_chans: int = 3, memory_efficient: bool = False) -> DenseNet:
    """DenseNet-BC-121, k = 32."""
    return _densenet("121", num_classes, in_chans, memory_efficient)


@_densenet_bc(reported=Reported(top1=76.20, top5=93.15, source=_TABLE3), params=14_149_480)
def densenet169(*, num_classes: int = 1000, in_chans: int = 3, memory_efficient: bool = False) -> DenseNet:
    """DenseNet-BC-169, k = 32."""
    return _densenet("169", num_classes, in_chans, memory_efficient)


@_densenet_bc(reported=Reported(top1=77.42, top5=93.66, source=_TABLE3), params=20_013_928)
def densenet201(*, num_classes: int = 1000, in_chans: int = 3, memory_efficient: bool = False) -> DenseNet:
    """DenseNet-BC-201, k = 32."""
    return _densenet("201", num_classes, in_chans, memory_efficient)


@_densenet_bc(
    reported=Reported(
        top1=77.138,
        top5=93.560,
        source="torchvision DenseNet161_Weights.IMAGENET1K_V1 (the paper's Table 3 has no DenseNet-161)",
    ),
    params=28_681_000,
)
def densenet161(*, num_classes: int = 1000, in_chans: int = 3, memory_efficient: bool = False) -> DenseNet:
    """DenseNet-BC-161, k = 48, 96-channel stem."""
    return _densenet("161", num_classes, in_chans, memory_efficient)
