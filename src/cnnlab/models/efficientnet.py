"""EfficientNet: Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML. https://arxiv.org/abs/1905.11946

One baseline, B0 (Table 1, found by architecture search), and one rule to grow it: compound
scaling (Section 3.3) multiplies depth by d = alpha^phi, width by w = beta^phi and resolution
by r = gamma^phi (alpha = 1.2, beta = 1.1, gamma = 1.15). B1..B7 use the multipliers of the
paper's reference code (the table ``SCALING`` below), which follow that rule only roughly
(B7: depth 3.1, width 2.0, 600 px; alpha^6 = 3.0, beta^6 = 1.8); every channel count becomes
``round8(c * w)`` (nearest multiple of 8, never below 90% of c * w) and every stage's layer
count ``ceil(L * d)``.

Block: MBConv (inverted bottleneck from MobileNetV2): 1x1 expand (x6, skipped when the ratio is
1) -> kxk depthwise -> squeeze-and-excitation (hidden width 1/4 of the block *input*) -> 1x1
linear projection; swish (SiLU) everywhere; identity shortcut with stochastic depth when the
shape is unchanged, drop rate growing linearly from 0 towards 0.2 over the blocks; dropout before
the classifier (0.2 for B0 up to 0.5 for B7).

State dict: named like torchvision's ``efficientnet_b0``..``b7`` (``features.0.0`` stem conv,
``features.N.M.block.K`` MBConv layers, ``block.K.fc1`` SE, ``features.8`` head conv,
``classifier.1``), so its checkpoints load with ``strict=True``.

BatchNorm: eps and momentum are a column of the scaling table, as torchvision sets them (checked
against its source, tests/models/test_torchvision_oracle.py): B5-B7 use the paper's TensorFlow
values (eps 1e-3, momentum 0.01, i.e. decay 0.99), since their published weights were ported
from TF; B0-B4 use PyTorch's defaults (eps 1e-5, momentum 0.1), since theirs were trained in
PyTorch (Wightman's timm recipe). With those, torchvision's files give torchvision's outputs
bit for bit.

Deviation: the paper's SE uses swish inside; cnnlab's shared SE layer uses ReLU (Hu et al.),
so this module swaps it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

from torch import Tensor, nn

from cnnlab.layers.drop_path import DropPath
from cnnlab.layers.se import SqueezeExcite
from cnnlab.models.features import ImageModel
from cnnlab.models.registry import Reported, register_model

TAN_LE_2019 = "Tan & Le 2019, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks"
# BatchNorm (eps, momentum): the paper's TF code (epsilon 1e-3, decay 0.99), and PyTorch's defaults.
TF_BN, TORCH_BN = (1e-3, 0.01), (1e-5, 0.1)
SE_RATIO = 0.25  # SE hidden width / block input width
DROP_CONNECT = 0.2  # stochastic-depth rate of the last block ("survival probability 0.8")


@dataclass(frozen=True)
class MBStage:
    """One row of Table 1 (stages 2-8): ``layers`` MBConv blocks."""

    expand: int  # expansion ratio of the 1x1 conv ("MBConv6" -> 6)
    kernel: int  # depthwise kernel size
    stride: int  # stride of the stage's first block
    out_chans: int  # output channels of B0
    layers: int  # number of blocks in B0


# Table 1: EfficientNet-B0. Stage 1 is the 3x3/2 stem conv, stage 9 the 1x1 conv + pool + FC.
B0_STEM = 32
B0_STAGES = (
    MBStage(expand=1, kernel=3, stride=1, out_chans=16, layers=1),  # 112x112
    MBStage(expand=6, kernel=3, stride=2, out_chans=24, layers=2),  # 112 -> 56
    MBStage(expand=6, kernel=5, stride=2, out_chans=40, layers=2),  # 56 -> 28
    MBStage(expand=6, kernel=3, stride=2, out_chans=80, layers=3),  # 28 -> 14
    MBStage(expand=6, kernel=5, stride=1, out_chans=112, layers=3),  # 14
    MBStage(expand=6, kernel=5, stride=2, out_chans=192, layers=4),  # 14 -> 7
    MBStage(expand=6, kernel=3, stride=1, out_chans=320, layers=1),  # 7
)
B0_HEAD = 1280


@dataclass(frozen=True)
class Scaling:
    """Compound-scaling coefficients of one model (beta^phi, alpha^phi, resolution)."""

    width: float  # channel multiplier w
    depth: float  # layer multiplier d
    resolution: int  # input side r * 224, rounded
    dropout: float  # dropout before the classifier
    # BatchNorm (eps, momentum). NOTE: not the paper's everywhere: B0-B4 take PyTorch's
    # defaults because torchvision's B0-B4 weights were trained with them (module docstring).
    bn: tuple[float, float] = TF_BN


SCALING: dict[str, Scaling] = {
    "b0": Scaling(width=1.0, depth=1.0, resolution=224, dropout=0.2, bn=TORCH_BN),
    "b3": Scaling(width=1.2, depth=1.4, resolution=300, dropout=0.3, bn=TORCH_BN),
    "b4": Scaling(width=1.4, depth=1.8, resolution=380, dropout=0.4, bn=TORCH_BN),
    "b5": Scaling(width=1.6, depth=2.2, resolution=456, dropout=0.4, bn=TF_BN),
    "b6": Scaling(width=1.8, depth=2.6, resolution=528, dropout=0.5, bn=TF_BN),
    "b7": Scaling(width=2.0, depth=3.1, resolution=600, dropout=0.5, bn=TF_BN),
}


def round_channels(chans: float, divisor: int = 8) -> int:
    """Nearest multiple of ``divisor``, but never more than 10% below ``chans``."""
    rounded = max(divisor, int(chans + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * chans else rounded


def scale_depth(layers: int, multiplier: float) -> int:
    return math.ceil(layers * multiplier)


def conv_bn(
    in_chans: int, out_chans: int, kernel_size: int, *, stride: int = 1, groups: int = 1, act: bool = True,
    bn: tuple[float, float] = TF_BN,
):
    """conv -> BN [-> SiLU] as an indexed Sequential (``0``, ``1``, ``2``), torchvision's names."""
    eps, momentum = bn
    layers = [
        nn.Conv2d(in_chans, out_chans, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_chans, eps=eps, momentum=momentum),
    ]
    if act:
        layers.append(nn.SiLU(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Mobile inverted bottleneck with SE: x + drop_path(project(se(depthwise(expand(x)))))."""

    def __init__(
        self, in_chans: int, out_chans: int, *, expand: int, kernel: int, stride: int, drop_path: float,
        bn: tuple[float, float] = TF_BN,
    ):
        super().__init__()
        mid = round_channels(in_chans * expand)
        layers = []
        if expand != 1:
            layers.append(conv_bn(in_chans, mid, 1, bn=bn))  # expand
        layers.append(conv_bn(mid, mid, kernel, stride=stride, groups=mid, bn=bn))  # depthwise
        # SE with swish between its FC layers, as in the paper's reference code
        layers.append(SqueezeExcite(mid, hidden=max(1, int(in_chans * SE_RATIO)), act=nn.SiLU))
        layers.append(conv_bn(mid, out_chans, 1, act=False, bn=bn))  # linear projection
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_chans == out_chans
        self.stochastic_depth = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        if self.use_residual:
            return x + self.stochastic_depth(self.block(x))
        return self.block(x)


class EfficientNet(ImageModel):
    def __init__(self, scaling: Scaling, *, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        w, d = scaling.width, scaling.depth
        stem = round_channels(B0_STEM * w)
        bn = scaling.bn
        self.features = nn.Sequential(conv_bn(in_chans, stem, 3, stride=2, bn=bn))
        total_blocks = sum(scale_depth(s.layers, d) for s in B0_STAGES)
        chans, index = stem, 0
        for s in B0_STAGES:
            out = round_channels(s.out_chans * w)
            stage = nn.Sequential()
            for i in range(scale_depth(s.layers, d)):
                rate = DROP_CONNECT * index / total_blocks  # linear in block index
                stride = s.stride if i == 0 else 1
                stage.append(MBConv(chans, out, expand=s.expand, kernel=s.kernel, stride=stride, drop_path=rate, bn=bn))
                chans, index = out, index + 1
            self.features.append(stage)
        head = round_channels(B0_HEAD * w)
        self.features.append(conv_bn(chans, head, 1, bn=bn))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(scaling.dropout, inplace=True), nn.Linear(head, num_classes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The reference code: He normal (fan-out) convs, uniform(+-1/sqrt(classes)) classifier.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (B, round8(1280 w), r/32, r/32)
        x = self.avgpool(x).flatten(1)  # (B, round8(1280 w))
        return self.classifier(x)  # (B, num_classes)


def _input_size(variant: str) -> tuple[int, int, int]:
    return (3, SCALING[variant].resolution, SCALING[variant].resolution)


def _table_2(top1: float, top5: float) -> Reported:
    return Reported(top1=top1, top5=top5, source="Tan & Le 2019, Table 2")


_efficientnet = partial(register_model, paper=TAN_LE_2019, test_input_size=(3, 32, 32))


# Each docstring quotes the paper's Table 2 (parameters rounded, "FLOPS" as the paper counts
# them) and then cnnlab's own count at the model's resolution: exact parameters and
# multiply-accumulates (GMACs) counted by cnnlab.analysis (tests/models/test_efficientnet.py).


@_efficientnet(input_size=_input_size("b0"), reported=_table_2(77.1, 93.3), params=5_288_548)
def efficientnet_b0(*, num_classes: int = 1000, in_chans: int = 3) -> EfficientNet:
    """EfficientNet-B0, the searched baseline. Paper: 5.3M parameters, 0.39B FLOPS; counted: 0.39 GMACs at 224."""
    return EfficientNet(SCALING["b0"], num_classes=num_classes, in_chans=in_chans)


@_efficientnet(input_size=_input_size("b3"), reported=_table_2(81.6, 95.7), params=12_233_232)
def efficientnet_b3(*, num_classes: int = 1000, in_chans: int = 3) -> EfficientNet:
    """EfficientNet-B3. Paper: 12M parameters, 1.8B FLOPS; counted: 1.83 GMACs at 300."""
    return EfficientNet(SCALING["b3"], num_classes=num_classes, in_chans=in_chans)


@_efficientnet(input_size=_input_size("b4"), reported=_table_2(82.9, 96.4), params=19_341_616)
def efficientnet_b4(*, num_classes: int = 1000, in_chans: int = 3) -> EfficientNet:
    """EfficientNet-B4. Paper: 19M parameters, 4.2B FLOPS; counted: 4.39 GMACs at 380."""
    return EfficientNet(SCALING["b4"], num_classes=num_classes, in_chans=in_chans)


@_efficientnet(input_size=_input_size("b5"), reported=_table_2(83.6, 96.7), params=30_389_784)
def efficientnet_b5(*, num_classes: int = 1000, in_chans: int = 3) -> EfficientNet:
    """EfficientNet-B5. Paper: 30M parameters, 9.9B FLOPS; counted: 10.27 GMACs at 456."""
    return EfficientNet(SCALING["b5"], num_classes=num_classes, in_chans=in_chans)


@_efficientnet(input_size=_input_size("b6"), reported=_table_2(84.0, 96.8), params=43_040_704)
def efficientnet_b6(*, num_classes: int = 1000, in_chans: int = 3) -> EfficientNet:
    """EfficientNet-B6. Paper: 43M parameters, 19B FLOPS; counted: 19.07 GMACs at 528."""
    return EfficientNet(SCALING["b6"], num_classes=num_classes, in_chans=in_chans)


@_efficientnet(input_size=_input_size("b7"), reported=_table_2(84.3, 97.0), params=66_347_960)
def efficientnet_b7(*, num_classes: int = 1000, in_chans: int = 3) -> EfficientNet:
    """EfficientNet-B7. Paper: 66M parameters, 37B FLOPS; counted: 37.75 GMACs at 600."""
    return EfficientNet(SCALING["b7"], num_classes=num_classes, in_chans=in_chans)
