"""AlexNet: Krizhevsky, Sutskever, Hinton 2012, "ImageNet Classification with Deep
Convolutional Neural Networks", NeurIPS.
https://papers.nips.cc/paper/4824-imagenet-classification-with-deep-convolutional-neural-networks

Two variants:

``alexnet``: the paper's network (Figure 2, Section 3.5). Five conv layers and three fully
connected ones; the net was split over two GPUs, and a layer whose kernels see only the
maps on their own GPU is a grouped convolution here: conv2, conv4, conv5 have groups=2,
conv3 and the FC layers see everything. ReLU everywhere, local response normalisation
(k=2, n=5, alpha=1e-4, beta=0.75, :mod:`cnnlab.layers.lrn`) after the ReLUs of conv1 and
conv2, overlapping 3x3 max pooling with stride 2 after LRN1, LRN2 and conv5, dropout 0.5 on
the outputs of fc6 and fc7. 60,965,224 parameters, about 0.72 GMACs.

``alexnet_onetower``: torchvision's single-GPU AlexNet (after Krizhevsky 2014, "One weird
trick for parallelizing convolutional neural networks", arXiv:1404.5997): one tower of
64-192-384-256-256 filters, no groups, no LRN, 224x224 input; 61,100,840 parameters. Its
state dict matches torchvision's ``alexnet`` key for key (features.0/3/6/8/10,
classifier.1/4/6), so torchvision checkpoints load with ``strict=True``.

Deviations and choices:
- Input 227x227 for the paper model. The paper says 224x224, but 11x11 filters with stride
  4 give the stated 55x55 maps only on 227x227 (no padding): (227 - 11) / 4 + 1 = 55.
- An ``AdaptiveAvgPool2d(6)`` before the classifier (as in torchvision): the identity at
  the canonical sizes (pool5 is already 6x6), it lets other input sizes reach fc6.
- Dropout sits where each source puts it: the paper drops the outputs of fc6 and fc7
  (Caffe's ``drop6``/``drop7``); torchvision drops the inputs of fc6 and fc7.
- Initialisation: the paper's for ``alexnet`` (weights N(0, 0.01); biases 1 in conv2,
  conv4, conv5 and the hidden FC layers, 0 elsewhere, Section 5); PyTorch's defaults for
  ``alexnet_onetower``, as torchvision does.
- Not modelled: the PCA colour augmentation and the 10-patch test averaging (data-side).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from cnnlab.layers.lrn import LocalResponseNorm
from cnnlab.models.features import ImageModel
from cnnlab.models.registry import Reported, register_model

PAPER = "Krizhevsky, Sutskever, Hinton 2012, ImageNet Classification with Deep Convolutional Neural Networks"


@dataclass(frozen=True)
class AlexConv:
    width: int  # output channels (both GPUs together in the paper)
    kernel: int  # square kernel size
    stride: int
    padding: int
    groups: int = 1  # 2 where the paper's kernels see only their own GPU's maps
    lrn: bool = False  # local response normalisation after the ReLU
    pool: bool = False  # 3x3 stride-2 (overlapping) max pool at the end
    bias: float = 0.0  # initial bias in the paper's init: 1 "provides ReLUs with positive inputs"


@dataclass(frozen=True)
class AlexNetConfig:
    convs: tuple[AlexConv, ...]
    # True: the paper's dropout placement (after fc6/fc7) and initialisation;
    # False: torchvision's (dropout before fc6/fc7, PyTorch's default init).
    paper: bool


# Figure 2 of the paper; 227x227 input gives 55 -> 27 -> 13 -> 13 -> 13 -> 6 (after pool5).
ALEXNET = AlexNetConfig(
    convs=(
        AlexConv(96, 11, 4, 0, lrn=True, pool=True),  # conv1: (B, 96, 55, 55)
        AlexConv(256, 5, 1, 2, groups=2, lrn=True, pool=True, bias=1.0),  # conv2: (B, 256, 27, 27)
        AlexConv(384, 3, 1, 1),  # conv3 connects to all maps of layer 2: (B, 384, 13, 13)
        AlexConv(384, 3, 1, 1, groups=2, bias=1.0),  # conv4
        AlexConv(256, 3, 1, 1, groups=2, pool=True, bias=1.0),  # conv5: (B, 256, 13, 13)
    ),
    paper=True,
)

# torchvision's single tower; 224x224 input gives 55 -> 27 -> 13 -> 13 -> 13 -> 6.
ALEXNET_ONE_TOWER = AlexNetConfig(
    convs=(
        AlexConv(64, 11, 4, 2, pool=True),
        AlexConv(192, 5, 1, 2, pool=True),
        AlexConv(384, 3, 1, 1),
        AlexConv(256, 3, 1, 1),
        AlexConv(256, 3, 1, 1, pool=True),
    ),
    paper=False,
)


class AlexNet(ImageModel):
    def __init__(
        self, config: AlexNetConfig, *, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        chans = in_chans
        for c in config.convs:
            layers += [nn.Conv2d(chans, c.width, c.kernel, stride=c.stride, padding=c.padding, groups=c.groups)]
            layers += [nn.ReLU(inplace=True)]
            if c.lrn:
                layers += [LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)]
            if c.pool:
                layers += [nn.MaxPool2d(3, stride=2)]  # overlapping: z=3 > s=2 (Section 3.4)
            chans = c.width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(6)
        flat = chans * 6 * 6
        if config.paper:  # fc6 -> relu -> drop -> fc7 -> relu -> drop -> fc8
            self.classifier = nn.Sequential(
                nn.Linear(flat, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
                nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
                nn.Linear(4096, num_classes),
            )  # fmt: skip
            self._init_paper(config)
        else:  # torchvision: drop -> fc6 -> relu -> drop -> fc7 -> relu -> fc8
            self.classifier = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(flat, 4096), nn.ReLU(inplace=True),
                nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
                nn.Linear(4096, num_classes),
            )  # fmt: skip

    def _init_paper(self, config: AlexNetConfig) -> None:
        # Section 5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5 and fc6, fc7, else 0.
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        fcs = [m for m in self.classifier if isinstance(m, nn.Linear)]
        biases = [c.bias for c in config.convs] + [1.0, 1.0, 0.0]
        for layer, bias in zip(convs + fcs, biases):
            nn.init.normal_(layer.weight, 0.0, 0.01)
            nn.init.constant_(layer.bias, bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (B, 256, 6, 6)
        x = self.avgpool(x).flatten(1)  # (B, 9216)
        return self.classifier(x)  # (B, num_classes)


@register_model(
    paper=PAPER,
    input_size=(3, 227, 227),
    reported=Reported(
        top1=59.3,
        top5=81.8,
        source="Krizhevsky et al. 2012, Table 2: 1 CNN, ILSVRC-2012 val (40.7% / 18.2% error)",
        note="prediction averaged over 10 patches (4 corners + centre, and their flips)",
    ),
    test_input_size=(3, 67, 67),
    params=60_965_224,
)
def alexnet(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> AlexNet:
    """The paper's two-GPU AlexNet: grouped conv2/4/5, LRN, 227x227 input."""
    return AlexNet(ALEXNET, num_classes=num_classes, in_chans=in_chans, dropout=dropout)


@register_model(
    paper=PAPER + "; one-tower variant: Krizhevsky 2014, One weird trick for parallelizing CNNs",
    input_size=(3, 224, 224),
    reported=Reported(
        top1=56.522,
        top5=79.066,
        source="torchvision AlexNet_Weights.IMAGENET1K_V1",
        note="single 224 centre crop",
    ),
    test_input_size=(3, 63, 63),
    params=61_100_840,
)
def alexnet_onetower(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> AlexNet:
    """torchvision's single-GPU AlexNet, 64-192-384-256-256, no LRN."""
    return AlexNet(ALEXNET_ONE_TOWER, num_classes=num_classes, in_chans=in_chans, dropout=dropout)
