"""Augmentation on whole batches of float tensors (B, C, H, W) in [0, 1], on their device.

Each augmentation is a small callable ``aug(x, generator) -> x`` that draws its randomness
from the generator it is given, so a seeded run (and a resumed one) sees the same images.
Random numbers are drawn on the CPU generator and moved to the batch's device (a few numbers
per image), so the same seed gives the same images on every device. Presets compose them
by name.

Sources: random crops and horizontal flips, and the PCA lighting noise, from Krizhevsky,
Sutskever & Hinton 2012 (AlexNet, Sec. 4.1); pad-4 crop + flip for CIFAR from He et al. 2016
(Sec. 4.2); random-resized crop ("scale and aspect-ratio augmentation") from Szegedy et al.
2015 (GoogLeNet, Sec. 6); cutout from DeVries & Taylor 2017 (arXiv:1708.04552).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Sequence

import torch
import torch.nn.functional as F

from cnnlab.errors import UnknownNameError

if TYPE_CHECKING:
    from cnnlab.data.datasets import ImageDataset

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _uniform_int(low: int, high: int, n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(low, high + 1, (n,), generator=generator)


def _uniform(low: float, high: float, n: int, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def _crop_at(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Per-image crops of h x w at (top, left), with no per-image Python: a strided view of
    every h x w window (no copy), then one advanced-indexing copy of the chosen window of each
    image (faster than index-tensor gathers, which read 8 index bytes per pixel)."""
    b = x.shape[0]
    windows = x.unfold(2, h, 1).unfold(3, w, 1)  # (B, C, H - h + 1, W - w + 1, h, w), a view
    batch = torch.arange(b, device=x.device)
    return windows[batch, :, top.to(x.device), left.to(x.device)]  # (B, C, h, w)


class RandomShift:
    """Translate each image by up to ``max_shift`` pixels in x and y, filling with zeros.

    Implemented as a padded random crop, so it costs one pad and one gather per batch."""

    def __init__(self, max_shift: int) -> None:
        self.max_shift = max_shift

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        s = self.max_shift
        if s == 0:
            return x
        b, c, h, w = x.shape
        padded = F.pad(x, (s, s, s, s))
        dy = _uniform_int(0, 2 * s, b, generator)
        dx = _uniform_int(0, 2 * s, b, generator)
        return _crop_at(padded, dy, dx, h, w)

    def __repr__(self) -> str:
        return f"RandomShift({self.max_shift})"


class RandomCrop:
    """A random ``size`` crop of each image after padding by ``padding`` on every side
    (``size`` None: the size of the images given, i.e. a random translation).

    ``pad_mode``: "zero" (He et al. 2016 pad CIFAR images with zeros) or "reflect". With
    ``padding=0`` this is AlexNet's random 224 crop out of the 256 image."""

    def __init__(self, size: int | tuple[int, int] | None = None, *, padding: int = 0, pad_mode: str = "zero") -> None:
        if pad_mode not in ("zero", "reflect"):
            raise ValueError(f"pad_mode must be 'zero' or 'reflect', got {pad_mode!r}")
        self.size = (size, size) if isinstance(size, int) else (tuple(size) if size is not None else None)
        self.padding = padding
        self.pad_mode = pad_mode

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        h, w = self.size or x.shape[-2:]
        p = self.padding
        if p:
            x = F.pad(x, (p, p, p, p), mode="constant" if self.pad_mode == "zero" else "reflect")
        b, _, H, W = x.shape
        if h > H or w > W:
            raise ValueError(f"crop {h}x{w} is larger than the (padded) image {H}x{W}")
        top = _uniform_int(0, H - h, b, generator)
        left = _uniform_int(0, W - w, b, generator)
        return _crop_at(x, top, left, h, w)

    def __repr__(self) -> str:
        return f"RandomCrop({self.size}, padding={self.padding}, pad_mode={self.pad_mode!r})"


class HorizontalFlip:
    """Mirror each image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, c, h, w = x.shape
        flip = (torch.rand(b, generator=generator) < self.p).to(x.device).view(b, 1)
        # Each image's column order, reversed for the mirrored ones: one gather, one pass over
        # the batch (torch.where(flip, x.flip(3), x) makes two more full copies).
        cols = torch.arange(w, device=x.device).view(1, w)
        cols = torch.where(flip, w - 1 - cols, cols)  # (B, W)
        return x.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))

    def __repr__(self) -> str:
        return f"HorizontalFlip(p={self.p})"


def _warp(x: torch.Tensor, theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Sample ``x`` through per-image affine maps ``theta`` (B, 2, 3) in normalised
    coordinates (output -> input, as affine_grid defines them); zeros outside."""
    b, c = x.shape[:2]
    grid = F.affine_grid(theta.to(x.device, x.dtype), [b, c, *size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class RandomResizedCrop:
    """Crop a random box of ``scale`` times the image area and aspect ratio (w/h) in
    ``ratio`` (log-uniform), resized to ``size`` with bilinear sampling.

    Like torchvision's, but one draw per image with no retry loop: the box is shrunk to fit
    the image when the drawn aspect does not (a small deviation that keeps it branch-free).
    ``size`` None: the size of the images given."""

    def __init__(
        self,
        size: int | tuple[int, int] | None = None,
        *,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        self.size = (size, size) if isinstance(size, int) else (tuple(size) if size is not None else None)
        self.scale, self.ratio = scale, ratio

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, H, W = x.shape
        area = _uniform(*self.scale, b, generator)
        log_r = _uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), b, generator)
        aspect = torch.exp(log_r)  # box width / box height, in pixels
        # Box size as fractions of the image's width and height.
        fw = torch.sqrt(area * aspect * H / W).clamp(max=1.0)
        fh = torch.sqrt(area / aspect * W / H).clamp(max=1.0)
        # Centre anywhere that keeps the box inside the image (normalised coordinates, [-1, 1]).
        cx = (1 - fw) * (2 * torch.rand(b, generator=generator, dtype=torch.float64) - 1)
        cy = (1 - fh) * (2 * torch.rand(b, generator=generator, dtype=torch.float64) - 1)
        theta = torch.zeros(b, 2, 3, dtype=torch.float64)
        theta[:, 0, 0], theta[:, 0, 2] = fw, cx
        theta[:, 1, 1], theta[:, 1, 2] = fh, cy
        return _warp(x, theta, self.size or (H, W))

    def __repr__(self) -> str:
        return f"RandomResizedCrop({self.size}, scale={self.scale}, ratio={self.ratio})"


class RandomAffine:
    """Small rotations (uniform in +-``degrees``) and translations (up to ``translate`` of
    the image size in each direction), bilinear, zeros outside. One grid_sample per batch."""

    def __init__(self, *, degrees: float = 0.0, translate: float = 0.0) -> None:
        self.degrees, self.translate = degrees, translate

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, H, W = x.shape
        angle = torch.deg2rad(_uniform(-self.degrees, self.degrees, b, generator))
        # Translation in normalised coordinates: the image spans 2 units.
        tx = _uniform(-2 * self.translate, 2 * self.translate, b, generator)
        ty = _uniform(-2 * self.translate, 2 * self.translate, b, generator)
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.zeros(b, 2, 3, dtype=torch.float64)
        # Rotation in pixel space for non-square images: scale by the aspect ratio.
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2] = cos, -sin * H / W, tx
        theta[:, 1, 0], theta[:, 1, 1], theta[:, 1, 2] = sin * W / H, cos, ty
        return _warp(x, theta, (H, W))

    def __repr__(self) -> str:
        return f"RandomAffine(degrees={self.degrees}, translate={self.translate})"


def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma (ITU-R 601), (B, 1, H, W); grayscale images are their own luma."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


class ColorJitter:
    """Brightness, contrast and saturation, each scaled by a factor uniform in
    [1 - amount, 1 + amount] per image, applied in that fixed order, clamped to [0, 1].

    Brightness multiplies; contrast blends with the image's mean gray; saturation blends with
    its grayscale version (skipped for one-channel images)."""

    def __init__(self, *, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0) -> None:
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation

    def _factor(self, amount: float, b: int, generator: torch.Generator, x: torch.Tensor) -> torch.Tensor:
        return _uniform(1 - amount, 1 + amount, b, generator).to(x.device, x.dtype).view(b, 1, 1, 1)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b = len(x)
        if self.brightness:
            x = x * self._factor(self.brightness, b, generator, x)
        if self.contrast:
            mean = _gray(x).mean(dim=(2, 3), keepdim=True)
            f = self._factor(self.contrast, b, generator, x)
            x = mean + f * (x - mean)
        if self.saturation and x.shape[1] == 3:
            f = self._factor(self.saturation, b, generator, x)
            gray = _gray(x)
            x = gray + f * (x - gray)
        return x.clamp(0.0, 1.0)

    def __repr__(self) -> str:
        return f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, saturation={self.saturation})"


# The RGB principal components of ImageNet's training pixels (values in [0, 1]), as published
# with fb.resnet.torch (Gross & Wilber 2016) for AlexNet-style lighting noise: the default when
# no dataset is given. Columns of the matrix are the eigenvectors.
IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


def rgb_pca(images: torch.Tensor, *, max_pixels: int = 4_000_000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (3,) descending and eigenvectors (3, 3) (columns) of the covariance of RGB
    pixel values in [0, 1] over uint8 images (N, 3, H, W), from up to ``max_pixels`` pixels
    drawn at random (seeded): the statistics of AlexNet's lighting noise."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"rgb_pca needs RGB images (N, 3, H, W), got shape {tuple(images.shape)}")
    pixels = images.permute(1, 0, 2, 3).reshape(3, -1)  # (3, N*H*W)
    if pixels.shape[1] > max_pixels:
        pick = torch.randint(0, pixels.shape[1], (max_pixels,), generator=torch.Generator().manual_seed(seed))
        pixels = pixels[:, pick]
    p = pixels.to(torch.float64) / 255.0
    cov = torch.cov(p)
    eigval, eigvec = torch.linalg.eigh(cov)  # ascending
    return eigval.flip(0), eigvec.flip(1)


class PCALighting:
    """AlexNet's lighting noise (Sec. 4.1): add ``V @ (alpha * lambda)`` to every pixel of an
    image, where V, lambda are the eigenvectors and eigenvalues of the training set's RGB
    covariance and alpha ~ N(0, ``std``) is drawn once per image (std 0.1 in the paper).

    NOTE: not clamped to [0, 1] afterwards, as in the paper (the noise is small)."""

    def __init__(self, eigval: Sequence[float] | torch.Tensor, eigvec: Sequence[Sequence[float]] | torch.Tensor, *, std: float = 0.1) -> None:
        self.eigval = torch.as_tensor(eigval, dtype=torch.float64)
        self.eigvec = torch.as_tensor(eigvec, dtype=torch.float64)
        if self.eigval.shape != (3,) or self.eigvec.shape != (3, 3):
            raise ValueError(f"PCA lighting needs 3 eigenvalues and a 3x3 eigenvector matrix, got {tuple(self.eigval.shape)}, {tuple(self.eigvec.shape)}")
        self.std = std

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        alpha = torch.randn(len(x), 3, generator=generator, dtype=torch.float64) * self.std  # (B, 3)
        shift = (alpha * self.eigval) @ self.eigvec.T  # (B, 3): sum_i alpha_i lambda_i v_i
        return x + shift.to(x.device, x.dtype).view(-1, 3, 1, 1)

    def __repr__(self) -> str:
        return f"PCALighting(eigval={[round(float(v), 4) for v in self.eigval]}, std={self.std})"


class Cutout:
    """Zero a ``size`` x ``size`` square centred at a random pixel of each image (the square
    may stick out of the image, as in DeVries & Taylor 2017)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, H, W = x.shape
        cy = _uniform_int(0, H - 1, b, generator).to(x.device).view(b, 1, 1)
        cx = _uniform_int(0, W - 1, b, generator).to(x.device).view(b, 1, 1)
        lo = self.size // 2
        ys = torch.arange(H, device=x.device).view(1, H, 1)
        xs = torch.arange(W, device=x.device).view(1, 1, W)
        inside = (ys >= cy - lo) & (ys < cy - lo + self.size) & (xs >= cx - lo) & (xs < cx - lo + self.size)
        return x.masked_fill(inside.unsqueeze(1), 0.0)

    def __repr__(self) -> str:
        return f"Cutout({self.size})"


class Compose:
    def __init__(self, steps: Sequence[Augment]) -> None:
        self.steps = list(steps)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for step in self.steps:
            x = step(x, generator)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.steps})"


# --- presets ---------------------------------------------------------------------------------


def _mnist(dataset: "ImageDataset | None") -> Augment:
    # Small shifts only. Digits must not be flipped or rotated by 180 degrees: a mirrored
    # or upside-down digit is a different symbol or none (6 <-> 9, mirrored 2, 3, 7).
    return RandomShift(2)


def _cifar(dataset: "ImageDataset | None") -> Augment:
    # He et al. 2016, Sec. 4.2: "4 pixels are padded on each side, and a 32x32 crop is randomly
    # sampled from the padded image or its horizontal flip". Objects, not symbols: flips are safe.
    # The crop keeps the size of the batch it is given (after any padding to the model's input).
    return Compose([RandomCrop(padding=4, pad_mode="zero"), HorizontalFlip()])


def _airbench(dataset: "ImageDataset | None") -> Augment:
    # Jordan 2024 (airbench, arXiv:2404.00498): translations of up to 2 pixels with reflection
    # padding, and flips. A milder crop than He et al.'s 4 pixels suits a ten-epoch run.
    # NOTE the paper alternates each image's flip between epochs; these flips are independent.
    return Compose([RandomCrop(padding=2, pad_mode="reflect"), HorizontalFlip()])


def _cifar_cutout(dataset: "ImageDataset | None") -> Augment:
    # DeVries & Taylor 2017: the CIFAR augmentation plus a 16x16 cutout on CIFAR-10.
    return Compose([_cifar(dataset), Cutout(16)])


def _alexnet(dataset: "ImageDataset | None") -> Augment:
    # Krizhevsky et al. 2012, Sec. 4.1: random 224x224 patches of the 256x256 images and their
    # mirrors, plus PCA lighting noise with the training set's RGB eigenvectors (ImageNet's
    # published ones when no dataset is given, or when it is not RGB).
    # NOTE: the evaluation side of the recipe (centre or 10 crops) is `--tta`, not part of this.
    if dataset is not None and dataset.image_size[0] == 3:
        eigval, eigvec = rgb_pca(dataset.images)
    else:
        eigval, eigvec = IMAGENET_PCA_EIGVAL, IMAGENET_PCA_EIGVEC
    return Compose([RandomCrop(224), HorizontalFlip(), PCALighting(eigval, eigvec, std=0.1)])


def _inception(dataset: "ImageDataset | None") -> Augment:
    # Szegedy et al. 2015 (GoogLeNet, Sec. 6): patches of 8%-100% of the area with aspect ratio
    # in [3/4, 4/3], resized to the input size, plus photometric distortions and flips.
    return Compose([RandomResizedCrop(), HorizontalFlip(), ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4)])


PRESETS: dict[str, Callable[["ImageDataset | None"], Augment | None]] = {
    "none": lambda dataset: None,
    "mnist": _mnist,
    "cifar": _cifar,
    "cifar-cutout": _cifar_cutout,
    "airbench": _airbench,
    "alexnet": _alexnet,
    "inception": _inception,
}


def register_preset(name: str, factory: Callable[["ImageDataset | None"], Augment | None]) -> None:
    """Add a preset: ``factory(dataset)`` returns the augmentation (``dataset`` may be None)."""
    if name in PRESETS:
        raise ValueError(f"augmentation preset {name!r} is registered twice")
    PRESETS[name] = factory


def get_preset(name: str, dataset: "ImageDataset | None" = None) -> Augment | None:
    """The augmentation preset ``name``; ``dataset`` (the training split) supplies the image
    size and statistics some presets need (the PCA of ``alexnet``)."""
    try:
        factory = PRESETS[name]
    except KeyError:
        raise UnknownNameError(f"unknown augmentation preset {name!r}; expected one of {', '.join(PRESETS)}") from None
    return factory(dataset)
