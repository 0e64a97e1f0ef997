"""Test-time augmentation: several views of each test image, whose softmax outputs the
evaluator averages.

- ``flip``: the image and its horizontal mirror.
- ``10crop``: AlexNet's test procedure (Krizhevsky et al. 2012, Sec. 4.1): "extracting five
  224x224 patches (the four corner patches and the center patch) as well as their horizontal
  reflections (hence ten patches in all), and averaging the predictions ... on the ten
  patches". The crop size is the model's input size.
- ``center``: the single centre crop (the usual one-crop evaluation of ImageNet models).
- ``flip-translate``: airbench's test-time augmentation (Jordan 2024, arXiv:2404.00498): the
  image and its mirror, each also translated by one pixel up-left and down-right (reflection
  padding): six views. NOTE the paper weights the two untranslated views as much as the
  four translated ones together; here all six count the same.

Views are taken from whole batches (B, C, H, W) with slicing, on their device. Flips and
crops commute with per-channel normalisation, so they may be applied before or after it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TTA_MODES = ("none", "flip", "center", "10crop", "flip-translate")


def five_crops(x: torch.Tensor, size: tuple[int, int]) -> list[torch.Tensor]:
    """Top-left, top-right, bottom-left, bottom-right and centre ``size`` crops of a batch."""
    H, W = x.shape[-2:]
    h, w = size
    if h > H or w > W:
        raise ValueError(f"crop {h}x{w} is larger than the images {H}x{W}")
    top, left = (H - h) // 2, (W - w) // 2
    return [
        x[..., :h, :w],
        x[..., :h, W - w :],
        x[..., H - h :, :w],
        x[..., H - h :, W - w :],
        x[..., top : top + h, left : left + w],
    ]


def tta_views(x: torch.Tensor, mode: str, crop_size: tuple[int, int] | None = None) -> list[torch.Tensor]:
    """The views of batch ``x`` for TTA ``mode`` (see TTA_MODES); ``crop_size`` (h, w) is
    needed by "center" and "10crop" (default: the image size)."""
    if mode not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {mode!r}; expected one of {', '.join(TTA_MODES)}")
    size = tuple(crop_size) if crop_size is not None else tuple(x.shape[-2:])
    if mode == "none":
        return [x]
    if mode == "flip":
        return [x, x.flip(-1)]
    if mode == "flip-translate":
        H, W = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        views = [x, padded[..., :H, :W], padded[..., 2:, 2:]]  # as is, moved down-right, moved up-left
        return views + [v.flip(-1) for v in views]
    if mode == "center":
        return five_crops(x, size)[4:]  # type: ignore[arg-type]
    crops = five_crops(x, size)  # type: ignore[arg-type]
    return crops + [c.flip(-1) for c in crops]


def tta_padding(mode: str, image_size: tuple[int, int], crop_size: tuple[int, int], *, shift: int = 4) -> int:
    """Extra zero padding for ``10crop`` when the images are no larger than the crop (CIFAR:
    32x32 images for a 32x32 model): pad by ``shift`` so that the corner crops are the
    4-pixel translations the model saw in training (He et al. 2016's pad-4 crop), instead of
    ten copies of the same image. 0 in every other case."""
    if mode == "10crop" and image_size[0] <= crop_size[0] and image_size[1] <= crop_size[1]:
        return shift
    return 0
