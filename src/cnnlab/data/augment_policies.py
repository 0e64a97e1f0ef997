"""The ImageNet papers' training augmentations, and the modern ones (TrivialAugment, random
erasing, mixup, cutmix), all on whole batches of float images (B, C, H, W) in [0, 1].

Like ``cnnlab.data.augment``, every random number comes from the generator passed in (drawn on
the CPU), so a seeded or resumed run sees the same images on every device.

An ImageNet *policy* (:class:`Policy`) is a table row: the crop that must change the image's
size (done at decode time when streaming, ``cnnlab.data.stream``; on the stored batch in
memory) and what is done to whole batches afterwards. Sources:

- ``alexnet``: Krizhevsky et al. 2012, Sec. 4.1: random 224 crops of the 256x256 image, flips,
  PCA lighting (std 0.1);
- ``vgg``: Simonyan & Zisserman 2015, Sec. 3.1: shorter side S uniform in [256, 512] ("scale
  jittering"), a random 224 crop, flips and the RGB colour shift of AlexNet;
- ``resnet``: He et al. 2016, Sec. 3.4: S in [256, 480], a 224 crop, flips, colour augmentation;
- ``inception``: Szegedy et al. 2015, Sec. 6: 8%-100% of the area, aspect ratio 3/4-4/3,
  photometric distortion (here brightness, contrast and saturation 0.4);
- ``imagenet``: random-resized crop and flips alone, torchvision's reference training (the
  base of its "v2" recipe, which adds TrivialAugment, erasing, mixup and cutmix);
- ``imagenette``: the same with crops of at least 35% of the area (fastai's Imagenette runs).

TrivialAugment: Müller & Hutter 2021 (ICCV, arXiv:2103.10158), the "wide" magnitude ranges.
Random erasing: Zhong et al. 2020 (AAAI, arXiv:1708.04896). Mixup: Zhang et al. 2018 (ICLR,
arXiv:1710.09412). CutMix: Yun et al. 2019 (ICCV, arXiv:1905.04899).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.data.augment import (
    IMAGENET_PCA_EIGVAL,
    IMAGENET_PCA_EIGVEC,
    Augment,
    ColorJitter,
    Compose,
    HorizontalFlip,
    PCALighting,
    RandomResizedCrop,
    _gray,
    _uniform,
    _warp,
    get_preset,
    register_preset,
    rgb_pca,
)
from cnnlab.errors import CnnlabError, UnknownNameError

if TYPE_CHECKING:
    from cnnlab.data.datasets import ImageDataset

AUTO_AUGMENTS = ("none", "trivialaugment")  # --auto-augment


# --- the papers' policies, as data ---------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """An ImageNet training augmentation: a size-changing crop, then batch operations."""

    crop: str  # "rrc": random-resized crop; "scale": shorter side S drawn from `sides`, then a random crop
    size: int = 224  # output side (the papers' 224; --crop-size overrides)
    area: tuple[float, float] = (0.08, 1.0)  # "rrc": fraction of the image's area
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # "rrc": aspect ratio w/h, log-uniform
    sides: tuple[int, int] = (256, 256)  # "scale": S, the shorter side before cropping, uniform
    square: bool = False  # "scale": centre-crop to S x S first (AlexNet's 256x256 images)
    flip: bool = True  # horizontal flips with probability 1/2
    lighting: float = 0.0  # std of AlexNet's PCA lighting noise (0: none)
    jitter: float = 0.0  # brightness, contrast and saturation amount (0: none)


POLICIES: dict[str, Policy] = {
    "alexnet": Policy("scale", sides=(256, 256), square=True, lighting=0.1),
    "vgg": Policy("scale", sides=(256, 512), lighting=0.1),
    "resnet": Policy("scale", sides=(256, 480), lighting=0.1),
    "inception": Policy("rrc", jitter=0.4),
    "imagenet": Policy("rrc"),
    # fastai's Imagenette training (github.com/fastai/imagenette): crops of at least 35% of
    # the area, since 8% crops slow down a five-epoch run on 13k images.
    "imagenette": Policy("rrc", area=(0.35, 1.0)),
}


class ScaleJitter:
    """VGG's scale jittering on a stored batch: resizing to shorter side S and cutting a
    ``crop`` square is cutting a square of ``crop / S`` of the image's side; S is uniform
    in [``smin``, ``smax``] per image and the square is resized to ``size`` (None: the
    image's size). A batch stored at S = smin (256) thus sees the paper's crops exactly."""

    def __init__(self, size: int | None, *, smin: int, smax: int, crop: int = 224) -> None:
        if not 0 < crop <= smin <= smax:
            raise ValueError(f"scale jittering needs 0 < crop <= smin <= smax, got {crop}, {smin}, {smax}")
        self.size, self.smin, self.smax, self.crop = size, smin, smax, crop

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, H, W = x.shape
        side = _uniform(self.smin, self.smax, b, generator)
        f = self.crop / side  # crop side as a fraction of the image's shorter side
        fw, fh = f * min(H, W) / W, f * min(H, W) / H
        cx = (1 - fw) * (2 * torch.rand(b, generator=generator, dtype=torch.float64) - 1)
        cy = (1 - fh) * (2 * torch.rand(b, generator=generator, dtype=torch.float64) - 1)
        theta = torch.zeros(b, 2, 3, dtype=torch.float64)
        theta[:, 0, 0], theta[:, 0, 2] = fw, cx
        theta[:, 1, 1], theta[:, 1, 2] = fh, cy
        out = (self.size, self.size) if self.size else (H, W)
        return _warp(x, theta, out)

    def __repr__(self) -> str:
        return f"ScaleJitter({self.size}, S in [{self.smin}, {self.smax}], crop {self.crop})"


def _lighting(dataset: "ImageDataset | None") -> tuple:
    """PCA of the training images when they are in memory and RGB, else ImageNet's."""
    if dataset is not None and getattr(dataset, "images", None) is not None and dataset.image_size[0] == 3:
        return rgb_pca(dataset.images)
    return IMAGENET_PCA_EIGVAL, IMAGENET_PCA_EIGVEC


def batch_steps(policy: Policy, dataset: "ImageDataset | None") -> list[Augment]:
    """The policy's steps after the crop (flip, lighting, jitter), on whole batches."""
    steps: list[Augment] = [HorizontalFlip()] if policy.flip else []
    if policy.lighting:
        eigval, eigvec = _lighting(dataset)
        steps.append(PCALighting(eigval, eigvec, std=policy.lighting))
    if policy.jitter:
        j = policy.jitter
        steps.append(ColorJitter(brightness=j, contrast=j, saturation=j))
    return steps


def batch_crop(policy: Policy, size: int) -> Augment:
    """The policy's crop done on a stored batch (the in-memory path)."""
    if policy.crop == "rrc":
        return RandomResizedCrop(size, scale=policy.area, ratio=policy.ratio)
    return ScaleJitter(size, smin=policy.sides[0], smax=policy.sides[1], crop=policy.size)


def policy_augment(name: str, dataset: "ImageDataset | None", *, crop_size: int | None = None) -> Augment:
    """Policy ``name`` on stored batches: crop to ``crop_size`` (default the policy's 224),
    then its batch steps."""
    policy = POLICIES[name]
    return Compose([batch_crop(policy, crop_size or policy.size), *batch_steps(policy, dataset)])


# "alexnet" and "inception" already are presets of cnnlab.data.augment (same papers); the
# others are registered here so --augment accepts them on the in-memory path too.
for _name in ("vgg", "resnet", "imagenet", "imagenette"):
    register_preset(_name, lambda dataset, _name=_name: policy_augment(_name, dataset))


# --- TrivialAugment (wide) -----------------------------------------------------------------

MAGNITUDE_BINS = 31  # Müller & Hutter 2021: magnitudes drawn uniformly from 31 levels
# (operation, largest magnitude, signed): the "wide" ranges of the paper's Table 1.
TA_WIDE: tuple[tuple[str, float, bool], ...] = (
    ("identity", 0.0, False),
    ("shear_x", 0.99, True),
    ("shear_y", 0.99, True),
    ("translate_x", 32.0, True),  # pixels
    ("translate_y", 32.0, True),
    ("rotate", 135.0, True),  # degrees
    ("brightness", 0.99, True),  # factor 1 +- m
    ("color", 0.99, True),
    ("contrast", 0.99, True),
    ("sharpness", 0.99, True),
    ("posterize", 6.0, False),  # bits removed: 8 - round(m) bits kept, 8 down to 2
    ("solarize", 1.0, False),  # threshold 1 - m: from 1 (nothing) down to 0 (everything)
    ("autocontrast", 0.0, False),
    ("equalize", 0.0, False),
)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    return _warp(x, theta, tuple(x.shape[-2:]))


def _geometric(name: str, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Shear (factor m), translate (m pixels), rotate (m degrees), zeros outside."""
    b, _, H, W = x.shape
    theta = torch.zeros(b, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    if name == "shear_x":
        theta[:, 0, 1] = m * H / W
    elif name == "shear_y":
        theta[:, 1, 0] = m * W / H
    elif name == "translate_x":
        theta[:, 0, 2] = 2 * m / W
    elif name == "translate_y":
        theta[:, 1, 2] = 2 * m / H
    else:  # rotate
        a = torch.deg2rad(m)
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a), -torch.sin(a) * H / W
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a) * W / H, torch.cos(a)
    return _affine(x, theta)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``b + factor * (a - b)``, clamped: PIL's ImageEnhance rule (factor 0: b, 1: a)."""
    return (b + factor.view(-1, 1, 1, 1) * (a - b)).clamp(0.0, 1.0)


def _sharpness_blur(x: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH filter (3x3, centre weight 5, total 13); border pixels kept."""
    c = x.shape[1]
    kernel = torch.ones(3, 3, dtype=x.dtype, device=x.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / kernel.sum()).expand(c, 1, 3, 3)
    inner = F.conv2d(x, kernel, groups=c)
    out = x.clone()
    out[..., 1:-1, 1:-1] = inner
    return out


def _equalize(x: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation of each channel of each image (PIL's ImageOps.equalize: the
    look-up table spreads the cumulative histogram over 256 levels, ignoring the last
    occupied level; a channel with a single level is left as it is)."""
    b, c, h, w = x.shape
    q = (x * 255).round().clamp(0, 255).to(torch.int64).view(b * c, h * w)
    hist = torch.zeros(b * c, 256, dtype=torch.int64, device=x.device).scatter_add_(1, q, torch.ones_like(q))
    last = 255 - (hist.flip(1) > 0).to(torch.int64).argmax(1)  # highest occupied level
    step = (h * w - hist.gather(1, last.view(-1, 1)).squeeze(1)) // 255
    before = hist.cumsum(1) - hist  # pixels below each level
    lut = ((before + (step // 2).view(-1, 1)) // step.clamp(min=1).view(-1, 1)).clamp(0, 255)
    lut = torch.where((step == 0).view(-1, 1), torch.arange(256, device=x.device).expand_as(lut), lut)
    return (lut.gather(1, q).to(x.dtype) / 255).view(b, c, h, w)


def _apply(name: str, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Operation ``name`` with per-image magnitudes ``m`` (float64, on the CPU)."""
    if name == "identity":
        return x
    if name in ("shear_x", "shear_y", "translate_x", "translate_y", "rotate"):
        return _geometric(name, x, m)
    f = (1.0 + m).to(x.device, x.dtype)
    if name == "brightness":
        return _blend(x, torch.zeros_like(x), f)
    if name == "color":
        return _blend(x, _gray(x).expand_as(x), f)
    if name == "contrast":
        return _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True).expand_as(x), f)
    if name == "sharpness":
        return _blend(x, _sharpness_blur(x), f)
    if name == "posterize":
        keep = (8 - m.round()).to(x.device, x.dtype).view(-1, 1, 1, 1)
        unit = 2.0 ** (8 - keep)
        return torch.floor((x * 255).round() / unit) * unit / 255
    if name == "solarize":
        threshold = (1.0 - m).to(x.device, x.dtype).view(-1, 1, 1, 1)
        return torch.where(x >= threshold, 1.0 - x, x)
    if name == "autocontrast":
        lo = x.amin(dim=(2, 3), keepdim=True)
        hi = x.amax(dim=(2, 3), keepdim=True)
        span = hi - lo
        return torch.where(span > 0, (x - lo) / span.clamp(min=1e-12), x)
    if name == "equalize":
        return _equalize(x)
    raise ValueError(f"unknown TrivialAugment operation {name!r}")


class TrivialAugment:
    """TrivialAugment (wide): for each image one operation of :data:`TA_WIDE`, chosen
    uniformly, at a magnitude drawn uniformly from 31 levels up to the operation's largest
    (with a random sign for the signed ones). Images that drew the same operation are
    transformed together."""

    def __init__(self, ops: Sequence[tuple[str, float, bool]] = TA_WIDE, bins: int = MAGNITUDE_BINS) -> None:
        self.ops, self.bins = tuple(ops), bins

    def draw(self, b: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(operation index, signed magnitude) for each of ``b`` images."""
        op = torch.randint(len(self.ops), (b,), generator=generator)
        level = torch.randint(self.bins, (b,), generator=generator).to(torch.float64) / (self.bins - 1)
        sign = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0).to(torch.float64)
        top = torch.tensor([o[1] for o in self.ops], dtype=torch.float64)[op]
        signed = torch.tensor([o[2] for o in self.ops])[op]
        return op, level * top * torch.where(signed, sign, torch.ones_like(sign))

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        op, m = self.draw(len(x), generator)
        out = x.clone()
        for k, (name, _, _) in enumerate(self.ops):
            chosen = (op == k).nonzero().flatten()
            if len(chosen) and name != "identity":
                index = chosen.to(x.device)
                out[index] = _apply(name, x[index], m[chosen])
        return out

    def __repr__(self) -> str:
        return f"TrivialAugment({len(self.ops)} operations, {self.bins} magnitudes)"


# --- random erasing ------------------------------------------------------------------------


class RandomErasing:
    """With probability ``p``, fill a random rectangle of each image with ``fill`` (the
    per-channel mean: 0 after normalisation, as torchvision's reference erases normalised
    images with 0). Its area is uniform in ``scale`` of the image's, its aspect log-uniform
    in ``ratio``; one draw per image, shrunk to fit (Zhong et al. retry until it fits)."""

    def __init__(self, p: float, *, scale: tuple[float, float] = (0.02, 0.33), ratio: tuple[float, float] = (0.3, 3.3),
                 fill: Sequence[float] = (0.0,)) -> None:
        if not 0 <= p <= 1:
            raise CnnlabError(f"random erasing probability must be in [0, 1], got {p}")
        self.p, self.scale, self.ratio, self.fill = p, scale, ratio, tuple(fill)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, c, H, W = x.shape
        erase = torch.rand(b, generator=generator) < self.p
        area = _uniform(*self.scale, b, generator) * H * W
        aspect = torch.exp(_uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), b, generator))
        h = torch.sqrt(area / aspect).round().clamp(1, H).to(torch.int64)
        w = torch.sqrt(area * aspect).round().clamp(1, W).to(torch.int64)
        top = (torch.rand(b, generator=generator, dtype=torch.float64) * (H - h + 1)).floor().to(torch.int64)
        left = (torch.rand(b, generator=generator, dtype=torch.float64) * (W - w + 1)).floor().to(torch.int64)
        ys = torch.arange(H).view(1, H, 1)
        xs = torch.arange(W).view(1, 1, W)
        inside = (ys >= top.view(b, 1, 1)) & (ys < (top + h).view(b, 1, 1)) & (xs >= left.view(b, 1, 1)) & (xs < (left + w).view(b, 1, 1))
        inside &= erase.view(b, 1, 1)
        fill = torch.tensor(self.fill, dtype=x.dtype, device=x.device).view(1, -1, 1, 1).expand(b, c, H, W)
        return torch.where(inside.unsqueeze(1).to(x.device), fill, x)

    def __repr__(self) -> str:
        return f"RandomErasing(p={self.p}, scale={self.scale}, ratio={self.ratio})"


# --- mixup and cutmix (they change the targets too) ----------------------------------------


def _beta(alpha: float, generator: torch.Generator) -> float:
    """One Beta(alpha, alpha) draw, seeded from ``generator`` (torch's Beta takes none)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


class MixupCutmix:
    """Mixup (``x = l x + (1 - l) x'``, targets likewise, l ~ Beta(a, a)) and CutMix (a box
    of area 1 - l of the partner image pasted in, targets weighted by the areas), with the
    partner of each image the next one in the (already shuffled) batch. When both are on,
    each batch uses one of them with probability 1/2, as torchvision's reference does.
    Returns the images and soft targets (B, classes) that cross-entropy accepts."""

    def __init__(self, num_classes: int, *, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0) -> None:
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise CnnlabError(f"mixup and cutmix alphas must be >= 0, got {mixup_alpha}, {cutmix_alpha}")
        self.num_classes, self.mixup_alpha, self.cutmix_alpha = num_classes, mixup_alpha, cutmix_alpha

    @property
    def enabled(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        target = F.one_hot(y, self.num_classes).to(x.dtype)
        if not self.enabled:
            return x, target
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or bool(torch.rand(1, generator=generator) < 0.5))
        partner_x, partner_t = x.roll(1, 0), target.roll(1, 0)
        if not use_cutmix:
            lam = _beta(self.mixup_alpha, generator)
            return lam * x + (1 - lam) * partner_x, lam * target + (1 - lam) * partner_t
        lam = _beta(self.cutmix_alpha, generator)
        H, W = x.shape[-2:]
        cy, cx = int(torch.randint(H, (1,), generator=generator)), int(torch.randint(W, (1,), generator=generator))
        half_h, half_w = int(H * math.sqrt(1 - lam)) // 2, int(W * math.sqrt(1 - lam)) // 2
        y0, y1, x0, x1 = max(cy - half_h, 0), min(cy + half_h, H), max(cx - half_w, 0), min(cx + half_w, W)
        mixed = x.clone()
        mixed[..., y0:y1, x0:x1] = partner_x[..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (H * W)  # the box as clipped to the image
        return mixed, lam * target + (1 - lam) * partner_t

    def __repr__(self) -> str:
        return f"MixupCutmix(mixup {self.mixup_alpha}, cutmix {self.cutmix_alpha})"


# --- the whole batch augmentation of a training run ----------------------------------------


def train_augment(
    preset: str,
    dataset: "ImageDataset | None",
    *,
    crop_size: int | None = None,
    auto_augment: str = "none",
    random_erase: float = 0.0,
    crop_done: bool = False,
) -> Augment | None:
    """The batch augmentation of a run: the preset (a policy's crop sized ``crop_size``,
    unless ``crop_done`` says it was done at decode time), then TrivialAugment, then random
    erasing filled with the training mean."""
    if auto_augment not in AUTO_AUGMENTS:
        raise UnknownNameError(f"unknown auto augment {auto_augment!r}; expected one of {', '.join(AUTO_AUGMENTS)}")
    steps: list[Augment] = []
    if preset in POLICIES and (crop_done or crop_size is not None):
        policy = POLICIES[preset]
        steps += ([] if crop_done else [batch_crop(policy, crop_size or policy.size)]) + batch_steps(policy, dataset)
    else:
        base = get_preset(preset, dataset)
        if base is not None:
            steps.append(base)
    if auto_augment == "trivialaugment":
        steps.append(TrivialAugment())
    if random_erase:
        fill = dataset.mean if dataset is not None else (0.0,)
        steps.append(RandomErasing(random_erase, fill=fill))
    if not steps:
        return None
    return steps[0] if len(steps) == 1 else Compose(steps)
