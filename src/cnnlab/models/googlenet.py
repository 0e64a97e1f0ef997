"""GoogLeNet (Inception v1): Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke,
Rabinovich 2015, "Going deeper with convolutions", CVPR. https://arxiv.org/abs/1409.4842

Table 1 of the paper, on a 224x224 input (the Inception rows are :class:`InceptionSpec`):

    conv 7x7/2                    112x112x64
    max pool 3x3/2, LRN            56x56x64
    conv 1x1 64 -> conv 3x3 192    56x56x192   (Table 1's "convolution 3x3, #3x3 reduce 64")
    LRN, max pool 3x3/2            28x28x192
    inception 3a, 3b               28x28x480
    max pool 3x3/2                 14x14x480
    inception 4a .. 4e             14x14x832   (auxiliary classifiers on 4a and 4d)
    max pool 3x3/2                  7x7x832
    inception 5a, 5b                7x7x1024
    avg pool 7x7, dropout 40%, linear, softmax

Every convolution, including those inside the Inception modules, is followed by a ReLU.
The two auxiliary classifiers (Section 5: 5x5/3 average pool, 1x1 conv 128, FC 1024,
dropout 70%, linear) only run in training mode; their losses are added with weight 0.3
(:meth:`GoogLeNetOutputs.loss`). In eval mode the model returns plain logits.

``variant="paper"`` (default) is Table 1 as written: true 5x5 convolutions, LRN, no batch
norm, biases on every conv. ``variant="torchvision"`` is torchvision's ``googlenet`` (ported
from TensorFlow), whose state-dict keys it reproduces: batch norm (eps 0.001) after every
bias-free conv, no LRN, a 3x3 kernel in the "5x5" branch (a known bug kept for its weights,
pytorch/vision#906), a 2x2/2 max pool after 4e and dropout 0.2.

Deviations and choices: the paper gives no LRN settings or initialisation; we use the BVLC
Caffe reproduction's LRN (n=5, alpha=1e-4 on the window mean, beta=0.75, k=1) and Xavier
initialisation with zero biases. Pooling windows use ceil mode, as Caffe and torchvision
do, so that 112 -> 56 -> 28 -> 14 -> 7. The average pools are adaptive (the aux head's 5x5/3
pool of a 14x14 map is exactly a 4x4 adaptive pool), which lets smaller inputs through.
Table 1's first row (2.7K params, 34M ops) does not fit a 3-channel 7x7 conv (9.4K, 118M);
hence this model's 1.59 G multiply-adds against the paper's rounded "1.5 billion".
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from torch import Tensor, nn

from cnnlab.layers.conv import ConvNormAct
from cnnlab.layers.inception import ConvFactory, Inception, InceptionSpec
from cnnlab.layers.lrn import LocalResponseNorm
from cnnlab.models.features import ImageModel
from cnnlab.models.registry import ParamCount, Reported, register_model

SZEGEDY_2015 = "Szegedy et al. 2015, Going deeper with convolutions"

# Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
GOOGLENET_TABLE1: dict[str, InceptionSpec] = {
    "3a": InceptionSpec(64, 96, 128, 16, 32, 32),
    "3b": InceptionSpec(128, 128, 192, 32, 96, 64),
    "4a": InceptionSpec(192, 96, 208, 16, 48, 64),
    "4b": InceptionSpec(160, 112, 224, 24, 64, 64),
    "4c": InceptionSpec(128, 128, 256, 24, 64, 64),
    "4d": InceptionSpec(112, 144, 288, 32, 64, 64),
    "4e": InceptionSpec(256, 160, 320, 32, 128, 128),
    "5a": InceptionSpec(256, 160, 320, 32, 128, 128),
    "5b": InceptionSpec(384, 192, 384, 48, 128, 128),
}


@dataclass(frozen=True)
class GoogLeNetVariant:
    batch_norm: bool  # BN after every (bias-free) conv; torchvision's TF port uses eps 0.001
    lrn: bool  # LRN after the first max pool and after the 3x3 conv of the stem
    kernel_5x5: int  # kernel of the "#5x5" branch: 5 (paper) or 3 (torchvision, vision#906)
    pool4: int  # max-pool window after 4e: 3 (Table 1) or 2 (torchvision)
    dropout: float  # before the classifier: 0.4 (Section 5) or 0.2 (torchvision)


VARIANTS: dict[str, GoogLeNetVariant] = {
    "paper": GoogLeNetVariant(batch_norm=False, lrn=True, kernel_5x5=5, pool4=3, dropout=0.4),
    "torchvision": GoogLeNetVariant(batch_norm=True, lrn=False, kernel_5x5=3, pool4=2, dropout=0.2),
}


class GoogLeNetOutputs(NamedTuple):
    """What a GoogLeNet with auxiliary classifiers returns in training mode."""

    logits: Tensor  # (B, num_classes), the main classifier
    aux1: Tensor  # (B, num_classes), auxiliary classifier on inception 4a
    aux2: Tensor  # (B, num_classes), auxiliary classifier on inception 4d

    def loss(self, loss_fn: Callable[[Tensor, Tensor], Tensor], targets: Tensor, aux_weight: float = 0.3) -> Tensor:
        """Main loss plus the auxiliary losses weighted by 0.3 (Section 5 of the paper)."""
        return loss_fn(self.logits, targets) + aux_weight * (loss_fn(self.aux1, targets) + loss_fn(self.aux2, targets))


class InceptionAux(nn.Module):
    """Auxiliary classifier (Section 5): 5x5/3 avg pool, 1x1 conv 128, FC 1024, dropout 0.7, FC."""

    def __init__(self, in_chans: int, num_classes: int, *, conv: ConvFactory) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)  # the paper's 5x5/3 average pool: 14x14 -> 4x4
        self.conv = conv(in_chans, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.act = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.7)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(self.pool(x)).flatten(1)  # (B, 2048)
        return self.fc2(self.dropout(self.act(self.fc1(x))))


class GoogLeNet(ImageModel):
    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        variant: str = "paper",
        aux_logits: bool = True,
        se: bool = False,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown GoogLeNet variant {variant!r}; expected one of {', '.join(VARIANTS)}")
        v = VARIANTS[variant]
        if v.batch_norm:
            conv: ConvFactory = functools.partial(ConvNormAct, bn_eps=1e-3)
        else:
            conv = functools.partial(ConvNormAct, norm=False)
        self.variant = variant
        self.aux_logits = aux_logits

        def inception(in_chans: int, row: str) -> Inception:
            return Inception(in_chans, GOOGLENET_TABLE1[row], conv=conv, kernel_5x5=v.kernel_5x5, se=se)

        def lrn() -> nn.Module:
            # Caffe's alpha scales the window mean; ours scales the sum, hence 1e-4 / 5.
            return LocalResponseNorm(5, alpha=1e-4 / 5, beta=0.75, k=1.0) if v.lrn else nn.Identity()

        self.conv1 = conv(in_chans, 64, 7, stride=2)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.lrn1 = lrn()
        self.conv2 = conv(64, 64, 1)  # Table 1's "#3x3 reduce" of the stem
        self.conv3 = conv(64, 192, 3)
        self.lrn2 = lrn()
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = inception(192, "3a")
        self.inception3b = inception(self.inception3a.out_chans, "3b")
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = inception(self.inception3b.out_chans, "4a")
        self.inception4b = inception(self.inception4a.out_chans, "4b")
        self.inception4c = inception(self.inception4b.out_chans, "4c")
        self.inception4d = inception(self.inception4c.out_chans, "4d")
        self.inception4e = inception(self.inception4d.out_chans, "4e")
        self.maxpool4 = nn.MaxPool2d(v.pool4, stride=2, ceil_mode=True)
        self.inception5a = inception(self.inception4e.out_chans, "5a")
        self.inception5b = inception(self.inception5a.out_chans, "5b")
        if aux_logits:
            self.aux1 = InceptionAux(self.inception4a.out_chans, num_classes, conv=conv)
            self.aux2 = InceptionAux(self.inception4d.out_chans, num_classes, conv=conv)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(v.dropout)
        self.fc = nn.Linear(self.inception5b.out_chans, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if self.variant == "torchvision":  # torchvision: N(0, 0.01) truncated at 2 sigma
                    nn.init.trunc_normal_(m.weight, std=0.01, a=-0.02, b=0.02)
                else:  # the paper gives none; Xavier as in the BVLC Caffe reproduction
                    nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor | GoogLeNetOutputs:
        x = self.lrn1(self.maxpool1(self.conv1(x)))  # (B, 64, 56, 56)
        x = self.maxpool2(self.lrn2(self.conv3(self.conv2(x))))  # (B, 192, 28, 28)
        x = self.inception3b(self.inception3a(x))  # (B, 480, 28, 28)
        x = self.inception4a(self.maxpool3(x))  # (B, 512, 14, 14)
        aux1 = self.aux1(x) if self.training and self.aux_logits else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))  # (B, 528, 14, 14)
        aux2 = self.aux2(x) if self.training and self.aux_logits else None
        x = self.maxpool4(self.inception4e(x))  # (B, 832, 7, 7)
        x = self.inception5b(self.inception5a(x))  # (B, 1024, 7, 7)
        logits = self.fc(self.dropout(self.avgpool(x).flatten(1)))  # (B, num_classes)
        if aux1 is not None and aux2 is not None:
            return GoogLeNetOutputs(logits, aux1, aux2)
        return logits


@register_model(
    paper=SZEGEDY_2015,
    input_size=(3, 224, 224),
    reported=Reported(
        # The paper reports top-5 error only. The 72.2% top-1 often quoted for "Inception" is
        # Ioffe & Szegedy 2015's modified network (two 3x3 convs per 5x5, 13.6M parameters),
        # not this one; reproductions of GoogLeNet itself are in the note.
        top1=None,
        top5=89.93,
        source="Szegedy et al. 2015, Table 3: single model, 1 crop, 10.07% top-5 error (no top-1 given)",
        note="7 models x 144 crops: 6.67% top-5 error (Tables 2 and 3). Reproductions, top-1 / top-5: "
        "BVLC Caffe bvlc_googlenet 68.7 / 88.9 (centre crop); torchvision GoogLeNet_Weights.IMAGENET1K_V1 "
        "69.778 / 89.53 (variant='torchvision')",
    ),
    test_input_size=(3, 32, 32),
    # The default build carries the two auxiliary classifiers, which only run in training.
    params=13_378_280,
    params_variants=(
        ParamCount(6_998_552, {"aux_logits": False}, "without the two training-only auxiliary heads"),
        ParamCount(
            6_624_904,
            {"variant": "torchvision", "aux_logits": False},
            "torchvision's variant without auxiliary heads",
            source="torchvision GoogLeNet_Weights.IMAGENET1K_V1 num_params",
        ),
    ),
)
def googlenet(
    *, num_classes: int = 1000, in_chans: int = 3, variant: str = "paper", aux_logits: bool = True, se: bool = False
) -> GoogLeNet:
    """GoogLeNet; ``variant="torchvision"`` loads torchvision checkpoints, ``se`` adds SE to each module."""
    return GoogLeNet(num_classes=num_classes, in_chans=in_chans, variant=variant, aux_logits=aux_logits, se=se)
