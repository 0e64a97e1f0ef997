"""ZFNet: Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks", ECCV.
https://arxiv.org/abs/1311.2901

The network of the paper's Figure 3: AlexNet revised after looking at its filters through a
deconvnet. Layer 1 uses 7x7 filters with stride 2 (not 11x11 stride 4), which removed the
aliasing and dead filters of AlexNet's first layer; layer 2 uses stride 2; layers 3-5 are
dense (one GPU, no groups). On a 224x224 input:

    layer  filters         output        then
    1      96 @ 7x7 /2     96 @ 110x110  ReLU, 3x3/2 max pool -> 55x55, contrast norm
    2      256 @ 5x5 /2    256 @ 26x26   ReLU, 3x3/2 max pool -> 13x13, contrast norm
    3      384 @ 3x3 /1    384 @ 13x13   ReLU
    4      384 @ 3x3 /1    384 @ 13x13   ReLU
    5      256 @ 3x3 /1    256 @ 13x13   ReLU, 3x3/2 max pool -> 6x6
    6      4096 FC                       ReLU, dropout 0.5
    7      4096 FC                       ReLU, dropout 0.5
    8      1000 FC (softmax)

62,357,608 parameters (3,726,464 in the convs), about 1.17 GMACs. The paper states no
totals, padding or pooling rounding; the choices below reproduce Figure 3's map sizes:
- conv1 pads by 1: (224 + 2 - 7) // 2 + 1 = 110. conv2 has no padding: (55 - 5) // 2 + 1 = 26.
  conv3-5 pad by 1 (size kept).
- Max pools round up (``ceil_mode=True``, Caffe's convention): 110 -> 55 and 26 -> 13;
  floor rounding would give 54 and 12.
- "Contrast normalized across feature maps" after pools 1 and 2 is implemented as AlexNet's
  local response normalisation (k=2, n=5, alpha=1e-4, beta=0.75), applied after the pool
  as the Figure 3 caption orders it.
- Initialisation as in Section 3: weights 1e-2 (read as N(0, 0.01)), biases 0. Not
  modelled: renormalising conv filters whose RMS exceeds 0.1 (an optimiser-side step).
- An ``AdaptiveAvgPool2d(6)`` before layer 6 (identity at 224) lets other input sizes run.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from cnnlab.layers.lrn import LocalResponseNorm
from cnnlab.models.features import ImageModel
from cnnlab.models.registry import Reported, register_model

PAPER = "Zeiler & Fergus 2014, Visualizing and Understanding Convolutional Networks"


@dataclass(frozen=True)
class ZFConv:
    width: int  # filters
    kernel: int  # square kernel size
    stride: int
    padding: int  # our choice: the paper gives map sizes, not padding
    pool: bool = False  # 3x3 stride-2 max pool (rounding up) after the ReLU
    norm: bool = False  # contrast normalisation across feature maps after the pool


# Figure 3 of the paper.
ZFNET: tuple[ZFConv, ...] = (
    ZFConv(96, 7, 2, 1, pool=True, norm=True),  # (B, 96, 110, 110) -> pool (B, 96, 55, 55)
    ZFConv(256, 5, 2, 0, pool=True, norm=True),  # (B, 256, 26, 26) -> pool (B, 256, 13, 13)
    ZFConv(384, 3, 1, 1),  # (B, 384, 13, 13)
    ZFConv(384, 3, 1, 1),  # (B, 384, 13, 13)
    ZFConv(256, 3, 1, 1, pool=True),  # (B, 256, 13, 13) -> pool (B, 256, 6, 6)
)


class ZFNet(ImageModel):
    def __init__(
        self,
        convs: tuple[ZFConv, ...] = ZFNET,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        chans = in_chans
        for c in convs:
            layers += [nn.Conv2d(chans, c.width, c.kernel, stride=c.stride, padding=c.padding), nn.ReLU(inplace=True)]
            if c.pool:
                layers.append(nn.MaxPool2d(3, stride=2, ceil_mode=True))
            if c.norm:
                layers.append(LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0))
            chans = c.width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(6)
        self.classifier = nn.Sequential(
            nn.Linear(chans * 6 * 6, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),  # layer 6
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),  # layer 7
            nn.Linear(4096, num_classes),  # output
        )  # fmt: skip
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.01)  # Section 3: "weights initialized to 10^-2"
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (B, 256, 6, 6)
        x = self.avgpool(x).flatten(1)  # (B, 9216)
        return self.classifier(x)  # (B, num_classes)


@register_model(
    paper=PAPER,
    input_size=(3, 224, 224),
    reported=Reported(
        top1=61.6,
        top5=83.5,
        source="Zeiler & Fergus 2014, Table 2: 1 convnet as per Fig. 3, ILSVRC-2012 val (38.4% / 16.5% error)",
        note="test-time cropping not stated with the table",
    ),
    test_input_size=(3, 47, 47),
    params=62_357_608,
)
def zfnet(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> ZFNet:
    """Zeiler & Fergus's Figure 3 network: 7x7/2 conv1, dense conv3-5."""
    return ZFNet(ZFNET, num_classes=num_classes, in_chans=in_chans, dropout=dropout)
