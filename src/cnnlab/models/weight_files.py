"""The published weight files that fit our models, with the facts a user needs to use them.

:data:`TORCHVISION` maps a registered model name to the torchvision files whose keys and
shapes are that model's (with the builder options a file needs, e.g. ResNet-50's stride on the
3x3 conv): file name and URL (whose ``-<hex>`` suffix is the start of the file's SHA-256), the
preprocessing the file was evaluated with, and its published ImageNet-1k accuracy. The facts
are those of torchvision 0.28's ``Weights`` enums (torchvision/models/*.py);
tests/models/test_weights.py checks every row against them and every file's keys and shapes
against our model, through torchvision's own code (tests/oracle.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cnnlab.errors import CheckpointError

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "TORCHVISION", "Preprocess", "WeightFile", "find_weights", "hash_from_name", "weights_for",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # per-channel mean of ImageNet-1k train images, RGB in [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_URL = "https://download.pytorch.org/models/"
# torch.hub's naming rule: "<name>-<first 8 or more hex digits of the SHA-256>.<ext>".
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")


def hash_from_name(name: str) -> str | None:
    """The SHA-256 prefix in a torch.hub-style file name ('resnet50-0676ba61.pth' -> '0676ba61')."""
    match = _HASH_IN_NAME.search(name)
    return match.group(1) if match else None



@dataclass(frozen=True)
class Preprocess:
    """How a weight file's evaluation images were prepared (torchvision's ImageClassification)."""

    resize: int  # the shorter side is resized to this many pixels ...
    crop: int  # ... then the centre crop x crop is kept
    interpolation: str = "bilinear"  # resampling filter of the resize: "bilinear" or "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN  # subtracted after scaling pixels to [0, 1]
    std: tuple[float, float, float] = IMAGENET_STD  # divided by afterwards


@dataclass(frozen=True)
class WeightFile:
    """One published weight file that fits one of our models."""

    tag: str  # torchvision's Weights enum member, e.g. "IMAGENET1K_V2"
    url: str
    preprocess: Preprocess
    top1: float  # ImageNet-1k validation accuracy in %, single crop at `preprocess`, as published
    top5: float
    default: bool = False  # torchvision's DEFAULT for the model (what `--weights torchvision` picks)
    # Builder options the file needs beyond the defaults (ResNet-50's stride on the 3x3 conv).
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    num_classes: int = 1000

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def sha256_prefix(self) -> str | None:
        return hash_from_name(self.file_name)


_V1 = Preprocess(256, 224)  # torchvision's original recipe: resize 256, crop 224, bilinear
_V2 = Preprocess(232, 224)  # its 2021 "new training recipe" evaluation size
_V1_5 = {"stride_in_3x3": True}  # torchvision's ResNet-50/101/152 stride the 3x3 conv ("v1.5")


def _tv(file: str, tag: str, pre: Preprocess, top1: float, top5: float, **kw: Any) -> WeightFile:
    return WeightFile(tag, TORCHVISION_URL + file, pre, top1, top5, **kw)


def _bicubic(resize: int, crop: int) -> Preprocess:
    return Preprocess(resize, crop, interpolation="bicubic")


# Our model name -> the torchvision files that fit it (torchvision 0.28, torchvision/models/*.py
# Weights enums). Not listed on purpose: vgg16's IMAGENET1K_FEATURES (features only, NaN
# classifier), regnet_y_8gf (other widths than our pycls regnety_8gf), resnext101_64x4d and
# the families we do not have.
TORCHVISION: dict[str, tuple[WeightFile, ...]] = {
    # torchvision's AlexNet is Krizhevsky's 2014 "one weird trick" single-tower variant.
    "alexnet_onetower": (_tv("alexnet-owt-7be5be79.pth", "IMAGENET1K_V1", _V1, 56.522, 79.066, default=True),),
    "vgg11": (_tv("vgg11-8a719046.pth", "IMAGENET1K_V1", _V1, 69.020, 88.628, default=True),),
    "vgg11_bn": (_tv("vgg11_bn-6002323d.pth", "IMAGENET1K_V1", _V1, 70.370, 89.810, default=True),),
    "vgg13": (_tv("vgg13-19584684.pth", "IMAGENET1K_V1", _V1, 69.928, 89.246, default=True),),
    "vgg13_bn": (_tv("vgg13_bn-abd245e5.pth", "IMAGENET1K_V1", _V1, 71.586, 90.374, default=True),),
    "vgg16": (_tv("vgg16-397923af.pth", "IMAGENET1K_V1", _V1, 71.592, 90.382, default=True),),
    "vgg16_bn": (_tv("vgg16_bn-6c64b313.pth", "IMAGENET1K_V1", _V1, 73.360, 91.516, default=True),),
    "vgg19": (_tv("vgg19-dcbb9e9d.pth", "IMAGENET1K_V1", _V1, 72.376, 90.876, default=True),),
    "vgg19_bn": (_tv("vgg19_bn-c79401a0.pth", "IMAGENET1K_V1", _V1, 74.218, 91.842, default=True),),
    "resnet18": (_tv("resnet18-f37072fd.pth", "IMAGENET1K_V1", _V1, 69.758, 89.078, default=True),),
    "resnet34": (_tv("resnet34-b627a593.pth", "IMAGENET1K_V1", _V1, 73.314, 91.420, default=True),),
    "resnet50": (
        _tv("resnet50-0676ba61.pth", "IMAGENET1K_V1", _V1, 76.130, 92.862, options=_V1_5),
        _tv("resnet50-11ad3fa6.pth", "IMAGENET1K_V2", _V2, 80.858, 95.434, options=_V1_5, default=True),
    ),
    "resnet101": (
        _tv("resnet101-63fe2227.pth", "IMAGENET1K_V1", _V1, 77.374, 93.546, options=_V1_5),
        _tv("resnet101-cd907fc2.pth", "IMAGENET1K_V2", _V2, 81.886, 95.780, options=_V1_5, default=True),
    ),
    "resnet152": (
        _tv("resnet152-394f9c45.pth", "IMAGENET1K_V1", _V1, 78.312, 94.046, options=_V1_5),
        _tv("resnet152-f82ba261.pth", "IMAGENET1K_V2", _V2, 82.284, 96.002, options=_V1_5, default=True),
    ),
    "resnext50_32x4d": (
        _tv("resnext50_32x4d-7cdf4587.pth", "IMAGENET1K_V1", _V1, 77.618, 93.698),
        _tv("resnext50_32x4d-1a0047aa.pth", "IMAGENET1K_V2", _V2, 81.198, 95.340, default=True),
    ),
    "resnext101_32x8d": (
        _tv("resnext101_32x8d-8ba56ff5.pth", "IMAGENET1K_V1", _V1, 79.312, 94.526),
        _tv("resnext101_32x8d-110c445d.pth", "IMAGENET1K_V2", _V2, 82.834, 96.228, default=True),
    ),
    # Saved before torchvision renamed "norm.1" to "norm1": read_weights renames the keys.
    "densenet121": (_tv("densenet121-a639ec97.pth", "IMAGENET1K_V1", _V1, 74.434, 91.972, default=True),),
    "densenet161": (_tv("densenet161-8d451a50.pth", "IMAGENET1K_V1", _V1, 77.138, 93.560, default=True),),
    "densenet169": (_tv("densenet169-b2777c0a.pth", "IMAGENET1K_V1", _V1, 75.600, 92.806, default=True),),
    "densenet201": (_tv("densenet201-c1103571.pth", "IMAGENET1K_V1", _V1, 76.896, 93.370, default=True),),
    # Ported from TensorFlow: torchvision's model rescales ImageNet-normalised input to
    # (x - 0.5) / 0.5 itself ("transform_input"); ours has no such step, so the mean and std
    # the weights expect of our model are 0.5 (tests/models/test_torchvision_oracle.py).
    "googlenet": (
        _tv(
            "googlenet-1378be20.pth", "IMAGENET1K_V1",
            Preprocess(256, 224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)), 69.778, 89.530,
            options={"variant": "torchvision"}, default=True,
        ),
    ),
    "efficientnet_b0": (
        _tv("efficientnet_b0_rwightman-7f5810bc.pth", "IMAGENET1K_V1", _bicubic(256, 224), 77.692, 93.532, default=True),
    ),
    "efficientnet_b3": (
        _tv("efficientnet_b3_rwightman-b3899882.pth", "IMAGENET1K_V1", _bicubic(320, 300), 82.008, 96.054, default=True),
    ),
    "efficientnet_b4": (
        _tv("efficientnet_b4_rwightman-23ab8bcd.pth", "IMAGENET1K_V1", _bicubic(384, 380), 83.384, 96.594, default=True),
    ),
    "efficientnet_b5": (
        _tv("efficientnet_b5_lukemelas-1a07897c.pth", "IMAGENET1K_V1", _bicubic(456, 456), 83.444, 96.628, default=True),
    ),
    "efficientnet_b6": (
        _tv("efficientnet_b6_lukemelas-24a108a5.pth", "IMAGENET1K_V1", _bicubic(528, 528), 84.008, 96.916, default=True),
    ),
    "efficientnet_b7": (
        _tv("efficientnet_b7_lukemelas-c5b4e57e.pth", "IMAGENET1K_V1", _bicubic(600, 600), 84.122, 96.908, default=True),
    ),
    "regnety_16gf": (
        _tv("regnet_y_16gf-9e6ed7dd.pth", "IMAGENET1K_V1", _V1, 80.424, 95.240),
        _tv("regnet_y_16gf-3e4a00f9.pth", "IMAGENET1K_V2", _V2, 82.886, 96.328, default=True),
        _tv("regnet_y_16gf_swag-43afe44d.pth", "IMAGENET1K_SWAG_E2E_V1", _bicubic(384, 384), 86.012, 98.054),
        _tv("regnet_y_16gf_lc_swag-f3ec0043.pth", "IMAGENET1K_SWAG_LINEAR_V1", _bicubic(224, 224), 83.976, 97.244),
    ),
    "convnext_t": (_tv("convnext_tiny-983f1562.pth", "IMAGENET1K_V1", Preprocess(236, 224), 82.520, 96.146, default=True),),
    "convnext_s": (_tv("convnext_small-0c510722.pth", "IMAGENET1K_V1", Preprocess(230, 224), 83.616, 96.650, default=True),),
    "convnext_b": (_tv("convnext_base-6075fbad.pth", "IMAGENET1K_V1", Preprocess(232, 224), 84.062, 96.870, default=True),),
    "vit_b_16": (
        _tv("vit_b_16-c867db91.pth", "IMAGENET1K_V1", _V1, 81.072, 95.318, default=True),
        _tv("vit_b_16_swag-9ac1b537.pth", "IMAGENET1K_SWAG_E2E_V1", _bicubic(384, 384), 85.304, 97.650,
            options={"image_size": 384}),
        _tv("vit_b_16_lc_swag-4e70ced5.pth", "IMAGENET1K_SWAG_LINEAR_V1", _bicubic(224, 224), 81.886, 96.180),
    ),
    "vit_l_16": (
        _tv("vit_l_16-852ce7e3.pth", "IMAGENET1K_V1", Preprocess(242, 224), 79.662, 94.638, default=True),
        _tv("vit_l_16_swag-4f3808c9.pth", "IMAGENET1K_SWAG_E2E_V1", _bicubic(512, 512), 88.064, 98.512,
            options={"image_size": 512}),
        _tv("vit_l_16_lc_swag-4d563306.pth", "IMAGENET1K_SWAG_LINEAR_V1", _bicubic(224, 224), 85.146, 97.422),
    ),
    "swin_t": (_tv("swin_t-704ceda3.pth", "IMAGENET1K_V1", _bicubic(232, 224), 81.474, 95.776, default=True),),
    "swin_s": (_tv("swin_s-5e29d889.pth", "IMAGENET1K_V1", _bicubic(246, 224), 83.196, 96.360, default=True),),
    "swin_b": (_tv("swin_b-68c6b09e.pth", "IMAGENET1K_V1", _bicubic(238, 224), 83.582, 96.640, default=True),),
}


def weights_for(name: str) -> tuple[WeightFile, ...]:
    """The published weight files that fit registered model ``name`` (empty when none do)."""
    return TORCHVISION.get(name, ())


def find_weights(name: str, which: str = "torchvision") -> WeightFile:
    """One of ``name``'s weight files: ``"torchvision"`` (its default), a tag or a file name."""
    files = weights_for(name)
    if not files:
        have = ", ".join(n for n in TORCHVISION)
        raise CheckpointError(f"no published weights fit model {name!r}; models with some: {have}")
    for f in files:
        if (which == "torchvision" and f.default) or which in (f.tag, f.file_name):
            return f
    choices = ", ".join(["torchvision", *(f.tag for f in files)])
    raise CheckpointError(f"model {name!r} has no weights {which!r}; expected one of {choices}")
