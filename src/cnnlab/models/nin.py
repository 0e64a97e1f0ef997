"""Network in Network: Lin, Chen, Yan 2014, "Network In Network", ICLR.
https://arxiv.org/abs/1312.4400

Two ideas (Section 3): the *mlpconv* layer, a small multilayer perceptron slid over the input
like a convolution, which is a k x k convolution followed by two 1x1 convolutions ("cascaded
cross channel parametric pooling", Caffe's ``cccp`` layers), each with a ReLU; and *global
average pooling* in place of the fully connected classifier: the last mlpconv emits one map
per class and each map's mean is that class's score.

The paper reports CIFAR-10/100, SVHN and MNIST; its ImageNet model was published in the
Caffe Model Zoo (Lin's ``nin_imagenet`` prototxt). Both are here, as tables:

``nin`` (ImageNet, 224x224; 7,595,176 parameters, about 1.1 GMACs):

    mlpconv1  11x11/4 conv 96, 1x1 96, 1x1 96     (B, 96, 54, 54)  max pool 3x3/2 -> 27x27
    mlpconv2  5x5 conv 256 (pad 2), 1x1 256, 1x1 256  (B, 256, 27, 27)  max pool 3x3/2 -> 13x13
    mlpconv3  3x3 conv 384 (pad 1), 1x1 384, 1x1 384  (B, 384, 13, 13)  max pool 3x3/2 -> 6x6, dropout 0.5
    mlpconv4  3x3 conv 1024 (pad 1), 1x1 1024, 1x1 1000  (B, 1000, 6, 6)  global average pool

``nin_cifar`` (CIFAR-10, 32x32; 966,986 parameters), the paper's Section 4.2 model
(Lin's ``cifar10_nin`` definition): mlpconv 192-160-96 (5x5), max pool 3x3/2, dropout;
mlpconv 192-192-192 (5x5), average pool 3x3/2, dropout; mlpconv 192-192-10 (3x3), global
average pool. The ImageNet model cannot run on 32x32 inputs (its 11x11/4 stem and three
3x3/2 pools need at least 39x39), so ``nin_cifar`` is the one to use there.

Choices: pools round up (``ceil_mode=True``) as Caffe does, which gives the model zoo's map
sizes (floor rounding would give 26, 12, 5). The ReLU after the last 1x1 conv is kept, as
in both Caffe models, so class scores are non-negative. Initialisation: the paper gives
none and the prototxts use hand-set Gaussian stds (0.01-0.05); we use He et al. 2015's
normal init (fan-in) for these ReLU layers.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from torch import Tensor, nn

from cnnlab.models.features import ImageModel
from cnnlab.models.registry import Reported, register_model

PAPER = "Lin, Chen, Yan 2014, Network In Network"
CLASSES = "classes"  # in a table: "as many maps as classes" (the last mlpconv)


@dataclass(frozen=True)
class MlpConvStage:
    widths: tuple[int, int, int | str]  # conv, first 1x1, second 1x1 output channels
    kernel: int  # the spatial conv's kernel size
    stride: int
    padding: int
    pool: str | None  # "max" or "avg" 3x3 stride-2 pool after the block; None: global average
    dropout: float = 0.0  # dropout after the pool


class MlpConv(nn.Module):
    """A k x k convolution and two 1x1 convolutions, each followed by a ReLU (Figure 2)."""

    def __init__(self, in_chans: int, widths: tuple[int, int, int], kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, widths[0], kernel, stride=stride, padding=padding)
        self.cccp1 = nn.Conv2d(widths[0], widths[1], 1)  # 1x1 conv = cross-channel pooling
        self.cccp2 = nn.Conv2d(widths[1], widths[2], 1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.conv(x))
        x = self.act(self.cccp1(x))
        return self.act(self.cccp2(x))


# Caffe Model Zoo ``nin_imagenet`` (Lin).
NIN_IMAGENET: tuple[MlpConvStage, ...] = (
    MlpConvStage((96, 96, 96), 11, 4, 0, pool="max"),
    MlpConvStage((256, 256, 256), 5, 1, 2, pool="max"),
    MlpConvStage((384, 384, 384), 3, 1, 1, pool="max", dropout=0.5),
    MlpConvStage((1024, 1024, CLASSES), 3, 1, 1, pool=None),
)

# Section 4.2, CIFAR-10 (Lin's ``cifar10_nin``).
NIN_CIFAR: tuple[MlpConvStage, ...] = (
    MlpConvStage((192, 160, 96), 5, 1, 2, pool="max", dropout=0.5),
    MlpConvStage((192, 192, 192), 5, 1, 2, pool="avg", dropout=0.5),
    MlpConvStage((192, 192, CLASSES), 3, 1, 1, pool=None),
)

POOLS: dict[str, type[nn.Module]] = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


class NiN(ImageModel):
    def __init__(self, stages: tuple[MlpConvStage, ...], *, num_classes: int, in_chans: int = 3) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        chans = in_chans
        for i, s in enumerate(stages, start=1):
            widths = tuple(num_classes if w == CLASSES else w for w in s.widths)
            layers[f"mlpconv{i}"] = MlpConv(chans, widths, s.kernel, s.stride, s.padding)
            if s.pool is not None:
                layers[f"pool{i}"] = POOLS[s.pool](3, stride=2, ceil_mode=True)
            if s.dropout:
                layers[f"drop{i}"] = nn.Dropout(s.dropout)
            chans = widths[-1]
        if chans != num_classes:
            raise ValueError(f"the last mlpconv must emit one map per class; the table ends with {chans} maps")
        self.features = nn.Sequential(layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (B, num_classes, 6, 6) at 224 (ImageNet), (B, 10, 8, 8) at 32 (CIFAR)
        return x.mean((2, 3))  # global average pooling: (B, num_classes)


@register_model(
    paper=PAPER + " (ImageNet model: Caffe Model Zoo nin_imagenet)",
    input_size=(3, 224, 224),
    reported=Reported(
        top1=59.36,
        source="Lin's Caffe Model Zoo entry 'Network in Network Imagenet Model' "
        "(gist mavenlin/d802a5849de39225bcc6): 59.36% top-1 on the validation set",
        note="the entry's test phase: one 224x224 centre crop, no mirror; no top-5 given. The BVLC Caffe wiki's "
        "'Models accuracy on ImageNet 2012 val' lists 56.7 / 79.5 for a converted copy (centre crop of a 256x256 warp)",
    ),
    test_input_size=(3, 39, 39),
    params=7_595_176,
)
def nin(*, num_classes: int = 1000, in_chans: int = 3) -> NiN:
    """Network in Network, the ImageNet model: four mlpconv blocks, global average pooling."""
    return NiN(NIN_IMAGENET, num_classes=num_classes, in_chans=in_chans)


@register_model(
    paper=PAPER,
    input_size=(3, 32, 32),
    reported=Reported(
        top1=91.19,
        dataset="CIFAR-10",
        source="Lin et al. 2014, Table 1: NIN + Dropout + data augmentation (8.81% error)",
        note="10.41% error without augmentation",
    ),
    test_input_size=(3, 32, 32),
    params=966_986,
)
def nin_cifar(*, num_classes: int = 10, in_chans: int = 3) -> NiN:
    """Network in Network, the paper's CIFAR-10 model: three mlpconv blocks."""
    return NiN(NIN_CIFAR, num_classes=num_classes, in_chans=in_chans)
