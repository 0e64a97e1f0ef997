"""SE-ResNet and SE-ResNeXt: Hu, Shen, Albanie, Sun, Wu 2018, "Squeeze-and-Excitation
Networks", CVPR / TPAMI. https://arxiv.org/abs/1709.01507

An SE block (``cnnlab.layers.se.SqueezeExcite``) squeezes a feature map to one value per
channel by global average pooling, passes it through two fully connected layers (C -> C/r,
ReLU, C/r -> C, sigmoid) and rescales the channels with the result. SE-ResNet puts one on the
residual branch of every bottleneck, after its last BN and before the addition with the
shortcut (Fig. 3 of the paper), with r = 16. The rest is ResNet-50/101/152 or ResNeXt-50:

    stage    output   SE-ResNet-50                                   SE-ResNeXt-50 (32x4d)
    conv2    56x56    [1x1,64 3x3,64 1x1,256 fc,[16,256]]x3           [1x1,128 3x3,128 C=32 1x1,256 fc,[16,256]]x3
    conv3    28x28    [1x1,128 3x3,128 1x1,512 fc,[32,512]]x4         [... 1x1,512 fc,[32,512]]x4
    conv4    14x14    [1x1,256 3x3,256 1x1,1024 fc,[64,1024]]x6       [... 1x1,1024 fc,[64,1024]]x6
    conv5    7x7      [1x1,512 3x3,512 1x1,2048 fc,[128,2048]]x3      [... 1x1,2048 fc,[128,2048]]x3

The SE blocks add 10% parameters (2.5 M for ResNet-50) and under 1% multiply-adds.

Choices and deviations:
- The FC layers have biases and are 1x1 convs (``se.fc1``, ``se.fc2``), the names timm uses
  for its ``seresnet*`` models; torchvision has no SE-ResNet.
- SE-ResNets put the stride on the bottleneck's first 1x1 conv, like the ResNets of the paper
  (its Table 2 gives 3.86 GFLOPs for ResNet-50 and 3.87 for SE-ResNet-50). SE-ResNeXt puts it
  on the 3x3 conv, like ResNeXt (4.24 and 4.25 GFLOPs for ResNeXt-50 and SE-ResNeXt-50).
  ``stride_in_3x3`` switches either; timm's pretrained SE-ResNets use ``stride_in_3x3=True``.
- ``reduction`` is the ratio r of the paper's ablation (Table 10): 2 .. 32.
- Reported accuracies are the paper's own retrained models (Table 2, "SENet" column), not the
  released Caffe models, which used heavier augmentation and score about 1% better.
"""

from __future__ import annotations

from functools import partial

from cnnlab.layers.residual import BlockSpec
from cnnlab.models.registry import Reported, register_model
from cnnlab.models.resnet import TABLE_1, TEST_INPUT_SIZE, ResNet

HU_2018 = "Hu, Shen, Albanie, Sun, Wu 2018, Squeeze-and-Excitation Networks"


def _table_2(top1_error: float, top5_error: float) -> Reported:
    """Table 2 of the paper: ImageNet val, single 224x224 crop, errors reported as accuracies."""
    return Reported(
        top1=round(100 - top1_error, 2),
        top5=round(100 - top5_error, 2),
        source="Hu et al. 2018, Table 2",
        note="single 224x224 crop",
    )


def _se_resnet(
    depth: int,
    *,
    num_classes: int,
    in_chans: int,
    reduction: int,
    stride_in_3x3: bool,
    cardinality: int = 1,
    width: int = 64,
) -> ResNet:
    if reduction < 1:
        raise ValueError(f"SE reduction ratio must be >= 1 (the paper uses 16), got {reduction}")
    _, depths = TABLE_1[depth]
    block = BlockSpec(
        "bottleneck", groups=cardinality, base_width=width, stride_in_3x3=stride_in_3x3, se_reduction=reduction
    )
    return ResNet(depths, block, num_classes=num_classes, in_chans=in_chans)


_senet = partial(register_model, paper=HU_2018, input_size=(3, 224, 224), test_input_size=TEST_INPUT_SIZE)


@_senet(reported=_table_2(23.29, 6.62), params=28_088_024)
def seresnet50(
    *, num_classes: int = 1000, in_chans: int = 3, reduction: int = 16, stride_in_3x3: bool = False
) -> ResNet:
    """SE-ResNet-50."""
    return _se_resnet(50, num_classes=num_classes, in_chans=in_chans, reduction=reduction, stride_in_3x3=stride_in_3x3)


@_senet(reported=_table_2(22.38, 6.07), params=49_326_872)
def seresnet101(
    *, num_classes: int = 1000, in_chans: int = 3, reduction: int = 16, stride_in_3x3: bool = False
) -> ResNet:
    """SE-ResNet-101."""
    return _se_resnet(101, num_classes=num_classes, in_chans=in_chans, reduction=reduction, stride_in_3x3=stride_in_3x3)


@_senet(reported=_table_2(21.57, 5.73), params=66_821_848)
def seresnet152(
    *, num_classes: int = 1000, in_chans: int = 3, reduction: int = 16, stride_in_3x3: bool = False
) -> ResNet:
    """SE-ResNet-152."""
    return _se_resnet(152, num_classes=num_classes, in_chans=in_chans, reduction=reduction, stride_in_3x3=stride_in_3x3)


@_senet(reported=_table_2(21.10, 5.49), params=27_559_896)
def seresnext50_32x4d(
    *, num_classes: int = 1000, in_chans: int = 3, reduction: int = 16, stride_in_3x3: bool = True
) -> ResNet:
    """SE-ResNeXt-50 (32x4d)."""
    return _se_resnet(50, num_classes=num_classes, in_chans=in_chans, reduction=reduction, stride_in_3x3=stride_in_3x3,
                      cardinality=32, width=4)
