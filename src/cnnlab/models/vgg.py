"""VGG: Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR. https://arxiv.org/abs/1409.1556

Table 1 of the paper, columns A to E: stacks of 3x3 convolutions (stride 1, padding 1) with
ReLU, five 2x2 stride-2 max pools, then FC-4096, FC-4096, FC-1000 with dropout 0.5 after the
first two. Column A-LRN adds local response normalisation after the first conv; column C
ends its last three stages with a 1x1 convolution, D puts a third 3x3 there instead.
Parameters (Table 2): A 133M, B 133M, C 134M, D 138M, E 144M; exact counts are in the tests.

Builders: ``vgg11`` (A), ``vgg11_lrn`` (A-LRN), ``vgg13`` (B), ``vgg16_c`` (C), ``vgg16``
(D), ``vgg19`` (E), and each with batch norm after every conv (``vgg11_bn`` ...; Ioffe &
Szegedy 2015, not in the paper). ``se=True`` puts a squeeze-and-excitation block
(:mod:`cnnlab.layers.se`, reduction 16) at the end of each conv stage, before its pool, as
Hu et al. 2018 suggest SE can be added to any architecture.

State dicts match torchvision's ``vgg11/13/16/19`` and their ``_bn`` forms (``features.N``,
``classifier.0/3/6``), so its checkpoints load with ``strict=True``. Models with LRN, 1x1
convs or SE have no torchvision counterpart (their ``features`` indices shift).

Deviations and choices:
- An ``AdaptiveAvgPool2d(7)`` before the classifier, as in torchvision: the identity at 224,
  it lets smaller inputs (down to 32x32) reach the 7x7x512 FC layer. The paper instead
  evaluates densely, turning the FC layers into convolutions (Section 3.2).
- Initialisation: Glorot & Bengio 2010 (uniform) for all weights, biases 0, which the
  paper found works without its pre-training of the deep nets from net A (Section 3.1,
  note added after submission). torchvision uses Kaiming normal for the convs instead.
- The LRN of A-LRN uses AlexNet's settings (k=2, n=5, alpha=1e-4, beta=0.75), as the paper
  says; it sits after the ReLU.
"""

from __future__ import annotations

from functools import partial

from torch import Tensor, nn

from cnnlab.layers.lrn import LocalResponseNorm
from cnnlab.layers.se import SqueezeExcite
from cnnlab.models.features import ImageModel
from cnnlab.models.registry import Reported, register_model

PAPER = "Simonyan & Zisserman 2015, Very Deep Convolutional Networks for Large-Scale Image Recognition"

# Table 1 of the paper, one column per configuration. An int is a 3x3 conv ("conv3-<int>")
# with that many filters, "conv1-<n>" a 1x1 conv (column C), "LRN" local response
# normalisation, "M" a 2x2 stride-2 max pool.
VGG_CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, "conv1-256", "M", 512, 512, "conv1-512", "M",
          512, 512, "conv1-512", "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}  # fmt: skip


def make_features(config: list[int | str], *, in_chans: int, batch_norm: bool, se: bool) -> nn.Sequential:
    """The conv part of one column: [conv, (bn), relu] per conv, as torchvision lays it out."""
    layers: list[nn.Module] = []
    chans = in_chans
    for cell in config:
        if cell == "M":
            if se:
                layers.append(SqueezeExcite(chans))  # end of the conv stage, before its pool
            layers.append(nn.MaxPool2d(2, stride=2))
        elif cell == "LRN":
            layers.append(LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0))
        else:
            if isinstance(cell, int):
                width, kernel = cell, 3
            elif isinstance(cell, str) and cell.startswith("conv1-"):
                width, kernel = int(cell.removeprefix("conv1-")), 1
            else:
                raise ValueError(f"bad VGG table cell {cell!r}; expected an int, 'conv1-<n>', 'LRN' or 'M'")
            layers.append(nn.Conv2d(chans, width, kernel, padding=kernel // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU(inplace=True))
            chans = width
    return nn.Sequential(*layers)


class VGG(ImageModel):
    def __init__(
        self,
        config: list[int | str],
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        batch_norm: bool = False,
        se: bool = False,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.features = make_features(config, in_chans=in_chans, batch_norm=batch_norm, se=se)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )  # fmt: skip
        for m in [*self.features, *self.classifier]:  # the SE blocks keep their own init
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)  # Glorot & Bengio 2010, as Section 3.1 notes
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (B, 512, 7, 7) at 224x224
        x = self.avgpool(x).flatten(1)  # (B, 25088)
        return self.classifier(x)  # (B, num_classes)


def _paper(top1_err: float, top5_err: float, scales: str) -> Reported:
    return Reported(
        top1=round(100 - top1_err, 1),
        top5=round(100 - top5_err, 1),
        source=f"Simonyan & Zisserman 2015, Table 3 ({top1_err}% / {top5_err}% error, ILSVRC-2012 val)",
        note=f"single test scale, dense evaluation; {scales}",
    )


def _torchvision(top1: float, top5: float, weights: str) -> Reported:
    return Reported(top1=top1, top5=top5, source=f"torchvision {weights}", note="single 224 centre crop")


JITTER = "trained with scale jitter S in [256, 512], tested at Q = 384"
FIXED = "trained and tested at scale 256"


_vgg = partial(register_model, paper=PAPER, input_size=(3, 224, 224), test_input_size=(3, 32, 32))


@_vgg(reported=_paper(29.6, 10.4, FIXED), params=132_863_336)
def vgg11(*, num_classes: int = 1000, in_chans: int = 3, se: bool = False) -> VGG:
    """Configuration A: 11 weight layers."""
    return VGG(VGG_CONFIGS["A"], num_classes=num_classes, in_chans=in_chans, se=se)


@_vgg(reported=_torchvision(70.370, 89.810, "VGG11_BN_Weights.IMAGENET1K_V1"), params=132_868_840)
def vgg11_bn(*, num_classes: int = 1000, in_chans: int = 3, se: bool = False) -> VGG:
    """Configuration A with batch norm after every conv."""
    return VGG(VGG_CONFIGS["A"], num_classes=num_classes, in_chans=in_chans, batch_norm=True, se=se)


@_vgg(reported=_paper(29.7, 10.5, FIXED), params=132_863_336)
def vgg11_lrn(*, num_classes: int = 1000, in_chans: int = 3, se: bool = False) -> VGG:
    """Configuration A-LRN: A with local response normalisation after the first conv."""
    return VGG(VGG_CONFIGS["A-LRN"], num_classes=num_classes, in_chans=in_chans, se=se)


@_vgg(params=132_868_840)
def vgg11_lrn_bn(*, num_classes: int = 1000, in_chans: int = 3, se: bool = False) -> VGG:
    """Configuration A-LRN with batch norm after every conv (for comparison; not in the paper)."""
    return VGG(VGG_CONFIGS["A-LRN"], num_classes=num_classes, in_chans=in_chans, batch_norm=True, se=se)


@_vgg(reported=_paper(28.7, 9.9, FIXED), params=133_047_848)
def vgg13(*, num_classes: int = 1000, in_chans: int = 3, se: bool = False) -> VGG:
    """Configuration B: 13 weight layers."""
    return VGG(VGG_CONFIGS["B"], num_classes=num_classes, in_chans=in_chans, se=se)


@_vgg(reported=_torchvision(71.586, 90.374, "VGG13_BN_Weights.IMAGENET1K_V1"), params=133_053_736)
def vgg13_bn(*, num_classes: int = 1000, in_chans: int = 3, se: bool = False) -> VGG:
    """Configuration B with batch norm after every conv."""
    return VGG(VGG_CONFIGS["B"], num_classes=num_classes, in_chans=in_chans, batch_norm=True, se=se)


@_vgg(reported=_paper(27.3, 8.8, JITTER), params=133_638_952)
def vgg16_c(*, num_classes: int = 1000, in_chans: int = 3, se: bool = False) -> VGG:
    """Configuration C: 16 weight layers, the last of stages 3-5 a 1x1 conv."""
    return VGG(VGG_CONFIGS["C"], num_classes=num_classes, in_chans=in_chans, se=se)


@_vgg(params=133_647_400)
def vgg16_c_bn(*, num_classes: int = 1000, in_chans: int = 3, se: bool = False) -> VGG:
    """Configuration C with batch norm after every conv."""
    return VGG(VGG_CONFIGS["C"], num_classes=num_classes, in_chans=in_chans, batch_norm=True, se=se)


@_vgg(reported=_paper(25.6, 8.1, JITTER), params=138_357_544)
def vgg16(*, num_classes: int = 1000, in_chans: int = 3, se: bool = False) -> VGG:
    """Configuration D: 16 weight layers, all 3x3."""
    return VGG(VGG_CONFIGS["D"], num_classes=num_classes, in_chans=in_chans, se=se)


@_vgg(reported=_torchvision(73.360, 91.516, "VGG16_BN_Weights.IMAGENET1K_V1"), params=138_365_992)
def vgg16_bn(*, num_classes: int = 1000, in_chans: int = 3, se: bool = False) -> VGG:
    """Configuration D with batch norm after every conv."""
    return VGG(VGG_CONFIGS["D"], num_classes=num_classes, in_chans=in_chans, batch_norm=True, se=se)


@_vgg(reported=_paper(25.5, 8.0, JITTER), params=143_667_240)
def vgg19(*, num_classes: int = 1000, in_chans: int = 3, se: bool = False) -> VGG:
    """Configuration E: 19 weight layers."""
    return VGG(VGG_CONFIGS["E"], num_classes=num_classes, in_chans=in_chans, se=se)


@_vgg(reported=_torchvision(74.218, 91.842, "VGG19_BN_Weights.IMAGENET1K_V1"), params=143_678_248)
def vgg19_bn(*, num_classes: int = 1000, in_chans: int = 3, se: bool = False) -> VGG:
    """Configuration E with batch norm after every conv."""
    return VGG(VGG_CONFIGS["E"], num_classes=num_classes, in_chans=in_chans, batch_norm=True, se=se)
