"""The one image policy: how an image file (or uploaded bytes) becomes what a model sees.

Every path that reads an image goes through here (image-folder datasets, ``cnnlab predict``,
the figures, ``cnnlab serve``'s uploads), so a photo is classified the same way everywhere:

1. decode with Pillow (:func:`decode_file`, :func:`decode_upload`: one decoder). The pixel
   count is checked from the header before any pixel is decoded (``max_pixels``, default
   :data:`DEFAULT_MAX_PIXELS` or ``$CNNLAB_MAX_PIXELS``): a decompression bomb is a one-line
   :class:`ImageTooLarge`, never a Pillow warning or an exhausted memory. The first frame of an
   animation is used; the EXIF orientation is applied; 16-bit, 32-bit and float pixels are
   scaled (not clipped) to 8 bits; transparency is flattened onto white; CMYK, palette and
   the rest are converted. A file that is missing or cannot be decoded is a DataError naming it;
2. convert to ``L`` (one channel) or ``RGB`` (three);
3. resize so the image covers the target size, keeping its aspect ratio (for a square
   target: the shorter side becomes the target side; bilinear with Pillow's antialiasing),
   then centre-crop to the target. An image already of the target size is left as it is;
4. for one-channel datasets of light strokes on a dark background (MNIST), invert an image
   whose border is bright (a digit drawn black on white), unless told otherwise;
5. as a batch: scale to [0, 1], zero-pad to the model's input size, subtract the training
   split's per-channel mean and divide by its std.

Steps 1-4 give uint8 (C, H, W) tensors, the form datasets hold in memory; step 5 is done on
whole batches on the training device (``Batches``) with the same :func:`normalise`. What
steps 1-4 did to an image is kept as notes (:class:`Decoded`), so ``predict`` and ``serve``
can say when an input differs from what the model was trained on (:func:`mismatch`).
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.errors import CnnlabError, DataError

INVERT_MODES = ("auto", "yes", "no")  # --invert: "auto" applies the border test of step 4


def image_mode(channels: int) -> str:
    """Pillow mode for a dataset with ``channels`` channels: "L" for 1, "RGB" for 3."""
    if channels not in (1, 3):
        raise DataError(f"images must have 1 or 3 channels, got {channels}")
    return "L" if channels == 1 else "RGB"


# 40 megapixels: larger than any phone photo (a 12 MP camera gives 4032x3024), far below what
# it takes to exhaust memory (an RGB image costs 3 bytes a pixel once decoded).
DEFAULT_MAX_PIXELS = 40_000_000
MAX_PIXELS_ENV = "CNNLAB_MAX_PIXELS"  # overrides DEFAULT_MAX_PIXELS for every command

# Pillow modes of one-channel images (the folder loader keeps such a folder one-channel).
GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")


class ImageTooLarge(DataError):
    """An image with more pixels than allowed (a decompression bomb, or just too big)."""


@dataclass(frozen=True)
class Decoded:
    """An image after step 1-2, with what was done to it in words."""

    image: Image.Image  # 8-bit, mode "L" or "RGB", EXIF orientation applied
    original_size: tuple[int, int]  # (width, height) as stored in the file, before rotation
    format: str  # Pillow's name for the file format: "PNG", "JPEG", "GIF", ...
    notes: tuple[str, ...] = field(default_factory=tuple)  # "EXIF orientation 6 applied", ...
    channels: int = 0  # channels of the stored image (1 gray, 3 colour), before step 2


def max_pixels_limit() -> int:
    """The pixel limit: ``$CNNLAB_MAX_PIXELS`` when set, else :data:`DEFAULT_MAX_PIXELS`."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise DataError(f"{MAX_PIXELS_ENV} must be a positive number of pixels, got {text!r}")
    return value


def _to_8bit(img: Image.Image, notes: list[str]) -> Image.Image:
    """Integer and float modes of more than 8 bits scaled (not clipped) to 8 bits."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(img).astype(np.float64)
        # 16-bit files use the whole 0..65535 range; a 32-bit "I" image that stays inside it
        # is 16-bit data in a wider container (Pillow reads some 16-bit TIFFs that way).
        top = 65535.0 if img.mode != "I" or values.max(initial=0) > 255 else 255.0
        notes.append(f"{img.mode} pixels scaled to 8 bits")
        return Image.fromarray(np.clip(np.rint(values * 255.0 / top), 0, 255).astype(np.uint8), "L")
    if img.mode == "F":
        values = np.asarray(img).astype(np.float64)
        top = 1.0 if values.max(initial=0) <= 1.0 else 255.0  # floats in [0, 1] or in [0, 255]
        notes.append("float pixels scaled to 8 bits")
        return Image.fromarray(np.clip(np.rint(values * 255.0 / top), 0, 255).astype(np.uint8), "L")
    return img


def _flatten_alpha(img: Image.Image, notes: list[str]) -> Image.Image:
    """Transparent pixels become white (a drawing on a transparent background is ink on
    paper), rather than whatever colour the file stored under them."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        gray = img.mode in ("LA", "La")
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        notes.append("transparency flattened onto white")
        flat = Image.alpha_composite(background, rgba)
        return flat.convert("L" if gray else "RGB")
    return img


def _decode(source: str | os.PathLike | io.BytesIO, channels: int, max_pixels: int) -> Decoded:
    """Steps 1-2 for a file or a byte buffer; DataError with the reason alone (the callers
    name the file)."""
    mode = image_mode(channels)
    if max_pixels < 1:
        raise DataError(f"max_pixels must be positive, got {max_pixels}")
    notes: list[str] = []
    try:
        # Our limit replaces Pillow's decompression-bomb warning (two lines on stderr, from 89
        # megapixels): an image above ``max_pixels`` is refused from its header, in one line.
        # (catch_warnings is not thread-safe; interleaved threads can at worst leave this one
        # "ignore" filter installed, which is this policy anyway.)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(source)
        with opened as img:
            width, height = img.size
            if width * height > max_pixels:
                raise ImageTooLarge(
                    f"image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,} "
                    f"(set {MAX_PIXELS_ENV} to allow more)"
                )
            if width < 1 or height < 1:
                raise DataError(f"image has no pixels ({width}x{height})")
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                img.seek(0)
                notes.append(f"first of {frames} frames used")
            img.load()
            fmt = img.format or "unknown"
            orientation = img.getexif().get(0x0112, 1)  # EXIF tag 274, Orientation; 1 = as stored
            oriented = ImageOps.exif_transpose(img)
            if orientation not in (1, None):
                notes.append(f"EXIF orientation {orientation} applied")
            out = _flatten_alpha(_to_8bit(oriented, notes), notes)
            if out.mode not in ("L", "RGB"):
                notes.append(f"{out.mode} converted to RGB")
                out = out.convert("RGB")
            stored = 1 if out.mode == "L" else 3
            if out.mode != mode:
                notes.append(f"{stored}-channel image converted to {channels} channel{'s' if channels > 1 else ''}")
                out = out.convert(mode)
    except DataError:
        raise
    except FileNotFoundError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"image refused as a decompression bomb: {e}") from None
    except UnidentifiedImageError:
        raise DataError("not an image file that Pillow can read (PNG, JPEG, GIF, BMP, WebP, TIFF, ...)") from None
    except OSError as e:
        reason = e.strerror or (str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
        raise DataError(f"cannot decode the image: {reason}") from None
    except (SyntaxError, ValueError, EOFError, MemoryError, struct.error) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"cannot decode the image: {first}") from None
    return Decoded(out, (width, height), fmt, tuple(notes), stored)


def decode_upload(data: bytes, channels: int, *, max_pixels: int | None = None) -> Decoded:
    """Decode uploaded bytes into an 8-bit ``L`` (``channels`` = 1) or ``RGB`` (3) image
    (steps 1-2); anything else raises DataError with a one-line reason."""
    if not data:
        raise DataError("the file is empty (0 bytes)")
    return _decode(io.BytesIO(data), channels, max_pixels_limit() if max_pixels is None else max_pixels)


def decode_file(path: str | os.PathLike, channels: int, *, max_pixels: int | None = None) -> Decoded:
    """Decode an image file (steps 1-2); errors are DataErrors that name the file."""
    image_mode(channels)
    try:
        return _decode(Path(path), channels, max_pixels_limit() if max_pixels is None else max_pixels)
    except FileNotFoundError:
        raise DataError(f"no image at {path}") from None
    except ImageTooLarge as e:
        raise ImageTooLarge(f"{path}: {e}") from None
    except DataError as e:
        reason = str(e).removeprefix("cannot decode the image: ")
        raise DataError(f"cannot decode image {path}: {reason}") from None


def decode_image(path: str | os.PathLike, channels: int) -> Image.Image:
    """Decode an image file and convert it to ``channels`` channels (steps 1-2)."""
    return decode_file(path, channels).image


def resize_and_crop(img: Image.Image, size: tuple[int, int], *, shorter: int | None = None,
                    resample: Image.Resampling = Image.Resampling.BILINEAR) -> Image.Image:
    """Step 3: scale ``img`` (keeping its aspect ratio) so that it covers ``size`` = (height,
    width), then take the centre ``size`` crop. For a square target S this is the usual
    "resize the shorter side to S, centre-crop S x S". ``shorter``: resize the shorter side to
    this first (a published weight file's "resize 256, crop 224"), still covering ``size``."""
    th, tw = size
    w, h = img.size
    if (w, h) == (tw, th) and shorter is None:
        return img
    scale = max(th / h, tw / w) if shorter is None else shorter / min(w, h)
    nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), resample)
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


def prepare_decoded(
    decoded: Decoded, image_size: Sequence[int], *, invert: str = "auto", dark_background: bool = False
) -> tuple[torch.Tensor, Decoded]:
    """Steps 3-4 for a decoded image: uint8 (C, H, W) of ``image_size`` = (C, H, W), and the
    record with a note for a resize and for an inversion."""
    _, height, width = image_size
    notes = list(decoded.notes)
    size = decoded.image.size
    if size != (width, height):
        notes.append(f"resized from {size[0]}x{size[1]} to {width}x{height} (shorter side, centre crop)")
    tensor = to_uint8_tensor(resize_and_crop(decoded.image, (height, width)))
    if should_invert(tensor, invert, dark_background=dark_background):
        tensor = 255 - tensor
        notes.append("inverted: dark strokes on a light background, the dataset has light on dark")
    return tensor, replace(decoded, notes=tuple(notes))


def read_image(
    path: str | os.PathLike,
    image_size: Sequence[int],
    *,
    invert: str = "auto",
    dark_background: bool = False,
    max_pixels: int | None = None,
) -> tuple[torch.Tensor, Decoded]:
    """Steps 1-4 for an image file: the uint8 (C, H, W) tensor and what was done to it."""
    decoded = decode_file(Path(path), image_size[0], max_pixels=max_pixels)
    return prepare_decoded(decoded, image_size, invert=invert, dark_background=dark_background)


def prepare_upload(
    data: bytes,
    image_size: Sequence[int],
    *,
    dark_background: bool = False,
    invert: str = "auto",
    max_pixels: int | None = None,
) -> tuple[torch.Tensor, Decoded]:
    """Steps 1-4 for uploaded bytes (what :func:`read_image` does for a file)."""
    decoded = decode_upload(data, image_size[0], max_pixels=max_pixels)
    return prepare_decoded(decoded, image_size, invert=invert, dark_background=dark_background)


def load_image(
    path: str | os.PathLike, image_size: Sequence[int], *, invert: str = "auto", dark_background: bool = False
) -> torch.Tensor:
    """Steps 1-4: an image file as a uint8 (C, H, W) tensor of ``image_size`` = (C, H, W), the
    way an image-folder dataset of that size holds it."""
    return read_image(path, image_size, invert=invert, dark_background=dark_background)[0]


def mismatch(decoded: Decoded, image_size: Sequence[int]) -> str | None:
    """How an input differs from the images a model was trained on (``image_size`` = (C, H,
    W)), in words, or None when its channels and size are the training ones."""
    channels, height, width = image_size
    w, h = decoded.image.size
    changes = []
    if decoded.channels and decoded.channels != channels:
        changes.append(f"converted from {decoded.channels} channel{'s' if decoded.channels > 1 else ''} to {channels}")
    if (w, h) != (width, height):
        changes.append(f"resized from {w}x{h} to {width}x{height}")
    if not changes:
        return None
    return f"{' and '.join(changes)}: the model was trained on {channels}x{height}x{width} images"


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
