"""ResNet for ImageNet: He, Zhang, Ren, Sun 2016, "Deep Residual Learning for Image
Recognition", CVPR. https://arxiv.org/abs/1512.03385

Table 1 of the paper, on a 224x224 input:

    layer    output   18-layer      34-layer      50-layer            101-layer  152-layer
    conv1    112x112  7x7, 64, stride 2
                      3x3 max pool, stride 2
    conv2_x  56x56    [3x3, 64]x2   [3x3, 64]x3   [1x1,64 3x3,64 1x1,256]x3    x3     x3
    conv3_x  28x28    [3x3,128]x2   [3x3,128]x4   [1x1,128 3x3,128 1x1,512]x4  x4     x8
    conv4_x  14x14    [3x3,256]x2   [3x3,256]x6   [1x1,256 3x3,256 1x1,1024]x6 x23    x36
    conv5_x  7x7      [3x3,512]x2   [3x3,512]x3   [1x1,512 3x3,512 1x1,2048]x3 x3     x3
             1x1      average pool, 1000-d fc, softmax
    FLOPs             1.8e9         3.6e9         3.8e9               7.6e9      11.3e9

The paper's "FLOPs" are multiply-adds. ``plain18``/``plain34`` are the same networks without
shortcuts (Fig. 3 middle), for the degradation experiment (Table 2, Fig. 4).

Choices and deviations:
- Shortcuts are option B (projections where shapes change; Table 3), as in torchvision and in
  the released models. ``shortcut_option="A"`` (zero padding) or ``"C"`` (projections
  everywhere) give the other rows of Table 3.
- The bottleneck's downsampling stride sits on its first 1x1 conv, as in the paper and its
  Caffe models (3.86 GMACs for ResNet-50). ``stride_in_3x3=True`` moves it to the 3x3 conv,
  which is torchvision's "ResNet v1.5" (4.09 GMACs; NVIDIA measured ~0.5% better top-1); the parameters
  and state dict are the same either way.
- Weights: He initialisation (the paper's [13]) in its fan-out form, as torchvision and
  fb.resnet.torch do; BN scale 1 and shift 0. ``zero_init_residual=True`` starts the last BN
  of each residual branch at zero (Goyal et al. 2017, https://arxiv.org/abs/1706.02677) so
  each block starts as the identity.
- State dict: the key names and shapes of torchvision's ``resnet18`` .. ``resnet152``.

ResNeXt and SE-ResNet reuse ``ResNet`` with another ``BlockSpec`` (see resnext.py, senet.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from torch import Tensor, nn

from cnnlab.layers.residual import BasicBlock, BlockSpec, Bottleneck
from cnnlab.models.features import ImageModel
from cnnlab.models.registry import Reported, register_model

HE_2016 = "He, Zhang, Ren, Sun 2016, Deep Residual Learning for Image Recognition"
# The total stride is 32; 64x64 leaves 2x2 at conv5_x, so BN can still train on a batch of one.
TEST_INPUT_SIZE = (3, 64, 64)


@dataclass(frozen=True)
class Stage:
    name: str  # the paper's layer name (Table 1); torchvision calls conv2_x .. conv5_x layer1 .. layer4
    width: int  # the stage's 3x3 width; a bottleneck stage outputs 4x this
    stride: int  # stride of the stage's first block (halves the map)


STAGES = (
    Stage("conv2_x", 64, 1),  # the max pool has already halved the map
    Stage("conv3_x", 128, 2),
    Stage("conv4_x", 256, 2),
    Stage("conv5_x", 512, 2),
)

# Table 1: depth -> (block, blocks per stage conv2_x .. conv5_x).
TABLE_1: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


class ResNet(ImageModel):
    """The ImageNet residual network: stem, four stages of ``block``s, global pool, fc."""

    def __init__(
        self,
        depths: tuple[int, int, int, int],
        block: BlockSpec,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if len(depths) != len(STAGES) or min(depths) < 1:
            raise ValueError(f"depths must be {len(STAGES)} positive block counts, got {depths}")
        # conv1: 7x7, 64, stride 2, then 3x3 max pool, stride 2
        self.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        chans = 64
        for i, (stage, depth) in enumerate(zip(STAGES, depths), start=1):
            blocks = []
            for j in range(depth):
                blocks.append(block.build(chans, stage.width, stride=stage.stride if j == 0 else 1))
                chans = stage.width * block.expansion
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(chans, num_classes)
        self.num_features = chans
        init_resnet(self, zero_init_residual=zero_init_residual)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, 56, 56) conv1 + pool
        x = self.layer1(x)  # (B, 256, 56, 56) conv2_x; 64 channels for basic blocks
        x = self.layer2(x)  # (B, 512, 28, 28) conv3_x
        x = self.layer3(x)  # (B, 1024, 14, 14) conv4_x
        x = self.layer4(x)  # (B, 2048, 7, 7) conv5_x; 512 for basic blocks
        x = self.avgpool(x).flatten(1)  # (B, 2048)
        return self.fc(x)  # (B, num_classes)


def init_resnet(model: nn.Module, *, zero_init_residual: bool = False) -> None:
    """He (fan-out) normal init for convs, BN to (1, 0); optionally zero each branch's last BN."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:  # the SE block's 1x1 "FC" layers
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, (BasicBlock, Bottleneck)):
                nn.init.zeros_(m.last_bn.weight)


def build_resnet(
    depth: int,
    *,
    num_classes: int,
    in_chans: int,
    stride_in_3x3: bool = False,
    shortcut: bool = True,
    shortcut_option: str = "B",
    zero_init_residual: bool = False,
) -> ResNet:
    """The Table 1 network of ``depth`` layers with the given block options."""
    kind, depths = TABLE_1[depth]
    spec = BlockSpec(kind, stride_in_3x3=stride_in_3x3, shortcut=shortcut, shortcut_option=shortcut_option)
    return ResNet(depths, spec, num_classes=num_classes, in_chans=in_chans, zero_init_residual=zero_init_residual)


# What every ImageNet ResNet registers. Reported accuracies: single model, ImageNet val,
# 10-crop testing (Tables 2 and 3 of the paper). Table 2 (ResNet-18, plain nets) gives top-1
# only and uses option A shortcuts.
_resnet = partial(register_model, paper=HE_2016, input_size=(3, 224, 224), test_input_size=TEST_INPUT_SIZE)
TEN_CROP = "10-crop testing"


@_resnet(
    reported=Reported(top1=72.12, source="He et al. 2016, Table 2", note=TEN_CROP + "; option A shortcuts"),
    params=11_689_512,
)
def resnet18(
    *, num_classes: int = 1000, in_chans: int = 3, shortcut_option: str = "B", zero_init_residual: bool = False
) -> ResNet:
    """ResNet-18: basic blocks [2, 2, 2, 2]."""
    return build_resnet(18, num_classes=num_classes, in_chans=in_chans,
                        shortcut_option=shortcut_option, zero_init_residual=zero_init_residual)


@_resnet(
    reported=Reported(top1=75.48, top5=92.54, source="He et al. 2016, Table 3 (ResNet-34 B)", note=TEN_CROP),
    params=21_797_672,
)
def resnet34(
    *, num_classes: int = 1000, in_chans: int = 3, shortcut_option: str = "B", zero_init_residual: bool = False
) -> ResNet:
    """ResNet-34: basic blocks [3, 4, 6, 3]."""
    return build_resnet(34, num_classes=num_classes, in_chans=in_chans,
                        shortcut_option=shortcut_option, zero_init_residual=zero_init_residual)


@_resnet(reported=Reported(top1=77.15, top5=93.29, source="He et al. 2016, Table 3", note=TEN_CROP), params=25_557_032)
def resnet50(
    *, num_classes: int = 1000, in_chans: int = 3, stride_in_3x3: bool = False, zero_init_residual: bool = False
) -> ResNet:
    """ResNet-50: bottleneck blocks [3, 4, 6, 3]."""
    return build_resnet(50, num_classes=num_classes, in_chans=in_chans,
                        stride_in_3x3=stride_in_3x3, zero_init_residual=zero_init_residual)


@_resnet(reported=Reported(top1=78.25, top5=93.95, source="He et al. 2016, Table 3", note=TEN_CROP), params=44_549_160)
def resnet101(
    *, num_classes: int = 1000, in_chans: int = 3, stride_in_3x3: bool = False, zero_init_residual: bool = False
) -> ResNet:
    """ResNet-101: bottleneck blocks [3, 4, 23, 3]."""
    return build_resnet(101, num_classes=num_classes, in_chans=in_chans,
                        stride_in_3x3=stride_in_3x3, zero_init_residual=zero_init_residual)


@_resnet(reported=Reported(top1=78.57, top5=94.29, source="He et al. 2016, Table 3", note=TEN_CROP), params=60_192_808)
def resnet152(
    *, num_classes: int = 1000, in_chans: int = 3, stride_in_3x3: bool = False, zero_init_residual: bool = False
) -> ResNet:
    """ResNet-152: bottleneck blocks [3, 8, 36, 3]."""
    return build_resnet(152, num_classes=num_classes, in_chans=in_chans,
                        stride_in_3x3=stride_in_3x3, zero_init_residual=zero_init_residual)


@_resnet(reported=Reported(top1=72.06, source="He et al. 2016, Table 2 (plain-18)", note=TEN_CROP), params=11_515_688)
def plain18(*, num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """The 18-layer plain network: ResNet-18 without its shortcuts (Fig. 3 middle)."""
    return build_resnet(18, num_classes=num_classes, in_chans=in_chans, shortcut=False)


@_resnet(
    reported=Reported(top1=71.46, top5=89.98, source="He et al. 2016, Table 3 (plain-34)", note=TEN_CROP),
    params=21_623_848,
)
def plain34(*, num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """The 34-layer plain network: ResNet-34 without its shortcuts (Fig. 3 middle)."""
    return build_resnet(34, num_classes=num_classes, in_chans=in_chans, shortcut=False)
