"""The one image policy: how an image file becomes what a model sees.

Every path that reads an image goes through here (image-folder datasets, ``cnnlab predict``,
the figures), so a photo is classified the same way by ``predict`` and by ``eval``:

1. decode with Pillow; a file that is missing or cannot be decoded is a DataError naming it;
2. convert to ``L`` (one channel) or ``RGB`` (three);
3. resize so the image covers the target size, keeping its aspect ratio (for a square
   target: the shorter side becomes the target side; bilinear with Pillow's antialiasing),
   then centre-crop to the target. An image already of the target size is left as it is;
4. for one-channel datasets of light strokes on a dark background (MNIST), invert an image
   whose border is bright (a digit drawn black on white), unless told otherwise;
5. as a batch: scale to [0, 1], zero-pad to the model's input size, subtract the training
   split's per-channel mean and divide by its std.

Steps 1-4 give uint8 (C, H, W) tensors, the form datasets hold in memory; step 5 is done on
whole batches on the training device (``Batches``) with the same :func:`normalise`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from cnnlab.errors import CnnlabError, DataError

INVERT_MODES = ("auto", "yes", "no")  # --invert: "auto" applies the border test of step 4


def image_mode(channels: int) -> str:
    """Pillow mode for a dataset with ``channels`` channels: "L" for 1, "RGB" for 3."""
    if channels not in (1, 3):
        raise DataError(f"images must have 1 or 3 channels, got {channels}")
    return "L" if channels == 1 else "RGB"


def decode_image(path: str | os.PathLike, channels: int) -> Image.Image:
    """Decode an image file and convert it to ``channels`` channels (steps 1-2)."""
    mode = image_mode(channels)
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert(mode)
    except FileNotFoundError:
        raise DataError(f"no image at {path}") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot decode image {path}: {e}") from None


def resize_and_crop(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Step 3: scale ``img`` (keeping its aspect ratio) so that it covers ``size`` = (height,
    width), then take the centre ``size`` crop. For a square target S this is the usual
    "resize the shorter side to S, centre-crop S x S"."""
    th, tw = size
    w, h = img.size
    if (w, h) == (tw, th):
        return img
    scale = max(th / h, tw / w)
    nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - tw) // 2, (nh - th) // 2
    return img.crop((left, top, left + tw, top + th))


def to_uint8_tensor(img: Image.Image) -> torch.Tensor:
    """A Pillow image as uint8 (C, H, W)."""
    array = np.asarray(img, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy())
    return (tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)).contiguous()


def dark_background(mean: Sequence[float]) -> bool:
    """Whether a dataset is light strokes on a dark background (MNIST: mean 0.13): one
    channel whose training-split mean is below one half. ``mean`` as in data.json."""
    return len(mean) == 1 and mean[0] < 0.5


def should_invert(image: torch.Tensor, invert: str, *, dark_background: bool) -> bool:
    """Step 4 for a uint8 (1, H, W) image: "yes" always, "no" never, "auto" when the dataset
    has a dark background but this image's border (its outermost pixels) is bright."""
    if invert not in INVERT_MODES:
        raise CnnlabError(f"unknown invert mode {invert!r}; expected one of {', '.join(INVERT_MODES)}")
    if image.shape[0] != 1 or invert == "no":
        return False
    if invert == "yes":
        return True
    if not dark_background:
        return False
    border = torch.cat([image[0, 0], image[0, -1], image[0, :, 0], image[0, :, -1]]).float().mean()
    return bool(border > 127)


def load_image(
    path: str | os.PathLike, image_size: Sequence[int], *, invert: str = "auto", dark_background: bool = False
) -> torch.Tensor:
    """Steps 1-4: an image file as a uint8 (C, H, W) tensor of ``image_size`` = (C, H, W), the
    way an image-folder dataset of that size holds it."""
    channels, height, width = image_size
    img = resize_and_crop(decode_image(Path(path), channels), (height, width))
    tensor = to_uint8_tensor(img)
    if should_invert(tensor, invert, dark_background=dark_background):
        tensor = 255 - tensor
    return tensor


def normalise(x: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Float images (B, C, H, W) in [0, 1] -> ``(x - mean) / std`` per channel (the training
    split's statistics, as stored in data.json)."""
    if not isinstance(mean, torch.Tensor):
        mean = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    if not isinstance(std, torch.Tensor):
        std = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def to_model_input(
    images: torch.Tensor, *, mean: Sequence[float], std: Sequence[float], pad: int = 0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Step 5 for uint8 (B, C, H, W) images: scale to [0, 1], zero-pad by ``pad`` pixels per
    side, normalise. What the training batches do, without augmentation."""
    x = images.to(dtype).div_(255.0)
    if pad:
        x = F.pad(x, (pad,) * 4)
    return normalise(x, mean, std)


def fit_padding(image_size: Sequence[int], model_input: Sequence[int]) -> int:
    """Zero padding that brings the images to the model's canonical size, when that is a
    small symmetric pad (MNIST 28x28 -> LeNet-5 32x32: 2); otherwise 0 (the model must take
    the images as they are)."""
    dh, dw = model_input[-2] - image_size[-2], model_input[-1] - image_size[-1]
    if dh == dw and dh > 0 and dh % 2 == 0 and dh <= 8:
        return dh // 2
    return 0
