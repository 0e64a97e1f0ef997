"""ResNeXt: Xie, Girshick, Dollar, Tu, He 2017, "Aggregated Residual Transformations for Deep
Neural Networks", CVPR. https://arxiv.org/abs/1611.05431

A ResNeXt block splits the bottleneck's 3x3 conv into C parallel paths ("cardinality") of
width d each and sums them; Fig. 3c of the paper shows this is one grouped convolution with
C groups and C*d channels. "32x4d" means C = 32, d = 4 at conv2_x; like the bottleneck width,
d doubles at each later stage. Everything else is ResNet-50/101 (Table 1 of the paper):

    stage    output   ResNet-50                    ResNeXt-50 (32x4d)
    conv2    56x56    [1x1,64 3x3,64 1x1,256]x3    [1x1,128 3x3,128 C=32 1x1,256]x3
    conv3    28x28    [1x1,128 3x3,128 1x1,512]x4  [1x1,256 3x3,256 C=32 1x1,512]x4
    conv4    14x14    [..., 1x1,1024]x6            [1x1,512 3x3,512 C=32 1x1,1024]x6
    conv5    7x7      [..., 1x1,2048]x3            [1x1,1024 3x3,1024 C=32 1x1,2048]x3
    # params          25.5e6                       25.0e6
    FLOPs             4.1e9                        4.2e9

``resnext50(cardinality=C, width=d)`` builds any row of the cardinality-vs-width study (Table 2
of the paper, ``TABLE_2`` here), each about 25 M parameters and 4.1-4.2 GMACs.

Choices and deviations:
- The stride of a stage's first block is on the 3x3 (grouped) conv, as in the authors' Torch
  code and torchvision. This is what the paper's complexities assume: with it ResNet-50
  (1x64d) is 4.09 GMACs, the "4.1" of Table 1, and ResNeXt-50 4.23 GMACs, the "4.2"; with the
  stride on the first 1x1 they would be 3.86 and 3.77. ``stride_in_3x3=False`` gives the latter.
- Shortcuts are projections where shapes change (option B), as in the paper.
- State dict: torchvision's ``resnext50_32x4d`` / ``resnext101_32x4d`` / ``resnext101_32x8d``.
- ``resnext101_32x8d`` is not in the paper (its Table 4 has 2x64d and 64x4d at that budget);
  torchvision trained it later, so it has no reported accuracy here.
"""

from __future__ import annotations

from functools import partial

from cnnlab.layers.residual import BlockSpec
from cnnlab.models.registry import Reported, register_model
from cnnlab.models.resnet import TABLE_1, TEST_INPUT_SIZE, ResNet

XIE_2017 = "Xie, Girshick, Dollar, Tu, He 2017, Aggregated Residual Transformations for Deep Neural Networks"

# Table 2 of the paper: cardinality C and bottleneck width d at roughly constant complexity.
# The 3x3 conv of conv2 is C*d wide: 64, 80, 96, 112, 128.
TABLE_2: dict[str, tuple[int, int]] = {
    "1x64d": (1, 64),  # = ResNet-50
    "2x40d": (2, 40),
    "4x24d": (4, 24),
    "8x14d": (8, 14),
    "32x4d": (32, 4),
}

# Table 3 of the paper: top-1 error (%) of each Table 2 setting at 50 layers, ImageNet val,
# single 224x224 crop. Cardinality helps at constant complexity.
TABLE_3_TOP1_ERROR: dict[str, float] = {"1x64d": 23.9, "2x40d": 23.0, "4x24d": 22.6, "8x14d": 22.3, "32x4d": 22.2}


def _resnext(
    depth: int, *, cardinality: int, width: int, num_classes: int, in_chans: int, stride_in_3x3: bool
) -> ResNet:
    _, depths = TABLE_1[depth]
    block = BlockSpec("bottleneck", groups=cardinality, base_width=width, stride_in_3x3=stride_in_3x3)
    return ResNet(depths, block, num_classes=num_classes, in_chans=in_chans)


_resnext_register = partial(register_model, paper=XIE_2017, input_size=(3, 224, 224), test_input_size=TEST_INPUT_SIZE)
SINGLE_CROP = "single 224x224 crop"


@_resnext_register(params=25_028_904)
def resnext50(
    *, num_classes: int = 1000, in_chans: int = 3, cardinality: int = 32, width: int = 4, stride_in_3x3: bool = True
) -> ResNet:
    """ResNeXt-50 with C = ``cardinality`` paths of ``width`` (d) channels: the Table 2 study."""
    return _resnext(50, cardinality=cardinality, width=width, num_classes=num_classes, in_chans=in_chans,
                    stride_in_3x3=stride_in_3x3)


@_resnext_register(params=25_028_904, reported=Reported(top1=77.8, source="Xie et al. 2017, Table 3", note=SINGLE_CROP))
def resnext50_32x4d(*, num_classes: int = 1000, in_chans: int = 3, stride_in_3x3: bool = True) -> ResNet:
    """ResNeXt-50 (32x4d)."""
    return _resnext(50, cardinality=32, width=4, num_classes=num_classes, in_chans=in_chans,
                    stride_in_3x3=stride_in_3x3)


@_resnext_register(
    params=44_177_704, reported=Reported(top1=78.8, top5=94.4, source="Xie et al. 2017, Table 4", note=SINGLE_CROP)
)
def resnext101_32x4d(*, num_classes: int = 1000, in_chans: int = 3, stride_in_3x3: bool = True) -> ResNet:
    """ResNeXt-101 (32x4d)."""
    return _resnext(101, cardinality=32, width=4, num_classes=num_classes, in_chans=in_chans,
                    stride_in_3x3=stride_in_3x3)


@_resnext_register(params=88_791_336)
def resnext101_32x8d(*, num_classes: int = 1000, in_chans: int = 3, stride_in_3x3: bool = True) -> ResNet:
    """ResNeXt-101 (32x8d), torchvision's wider variant (not in the paper's tables)."""
    return _resnext(101, cardinality=32, width=8, num_classes=num_classes, in_chans=in_chans,
                    stride_in_3x3=stride_in_3x3)
