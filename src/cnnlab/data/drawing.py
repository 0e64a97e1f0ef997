"""Images that come from a person rather than a dataset: a drawing, an uploaded file.

Two jobs the dataset loaders never meet:

- **A drawing prepared the way MNIST digits were.** LeCun, Cortes & Burges, "The MNIST
  database of handwritten digits" (http://yann.lecun.com/exdb/mnist/): the NIST digits were
  "size normalized to fit in a 20x20 pixel box while preserving their aspect ratio" (the
  anti-aliasing of that step leaves grey levels) and then "centered in a 28x28 image by
  computing the center of mass of the pixels, and translating the image so as to position
  this point at the center of the 28x28 field". :func:`prepare_digit` does exactly that to a
  stroke drawn on a canvas, so a digit drawn large in a corner reaches the network looking
  like the digits it was trained on.
- **Bytes from an upload**, which may be anything: empty, truncated, not an image, a
  decompression bomb, an animated GIF, CMYK, 16-bit, a phone photo whose pixels are stored
  sideways with an EXIF orientation tag. :func:`decode_upload` turns them into an 8-bit
  ``L`` or ``RGB`` Pillow image or raises a :class:`~cnnlab.errors.DataError` with one
  line saying why, checking the pixel count from the header before any pixel is decoded.

After decoding, everything follows the one image policy of :mod:`cnnlab.data.image`
(resize the shorter side and centre-crop, the dark-background inversion test).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.data.image import image_mode, resize_and_crop, should_invert, to_uint8_tensor
from cnnlab.errors import DataError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DIGIT_BOX",
    "DIGIT_FIELD",
    "Decoded",
    "ImageTooLarge",
    "centre_of_mass",
    "decode_upload",
    "prepare_digit",
    "prepare_upload",
]

DIGIT_BOX = 20  # MNIST: the digit's bounding box is scaled to fit 20x20 ...
DIGIT_FIELD = 28  # ... and placed, centred by centre of mass, in 28x28
# 40 megapixels: larger than any phone photo (a 12 MP camera gives 4032x3024), far below what
# it takes to exhaust memory (an RGB image costs 3 bytes a pixel once decoded).
DEFAULT_MAX_PIXELS = 40_000_000


class ImageTooLarge(DataError):
    """An image with more pixels than allowed (a decompression bomb, or just too big)."""


@dataclass(frozen=True)
class Decoded:
    """An uploaded image after :func:`decode_upload`, with what was done to it in words."""

    image: Image.Image  # 8-bit, mode "L" or "RGB"
    original_size: tuple[int, int]  # (width, height) as stored in the file, before rotation
    format: str  # Pillow's name for the file format: "PNG", "JPEG", "GIF", ...
    notes: tuple[str, ...] = field(default_factory=tuple)  # "EXIF orientation applied", ...


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
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        notes.append("transparency flattened onto white")
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img


def decode_upload(data: bytes, channels: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Decode uploaded bytes into an 8-bit ``L`` (``channels`` = 1) or ``RGB`` (3) image.

    The first frame of an animation is used; the EXIF orientation is applied; CMYK and
    palette images are converted; 16-bit and float pixels are scaled to 8 bits; transparent
    pixels become white. The pixel count is checked against ``max_pixels`` from the header,
    before decoding. Anything else raises DataError with a one-line reason.
    """
    mode = image_mode(channels)
    if max_pixels < 1:
        raise DataError(f"max_pixels must be positive, got {max_pixels}")
    if not data:
        raise DataError("the file is empty (0 bytes)")
    notes: list[str] = []
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise ImageTooLarge(
                    f"image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}"
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
            out = out.convert(mode)
    except DataError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"image refused as a decompression bomb: {e}") from None
    except UnidentifiedImageError:
        raise DataError("not an image file that Pillow can read (PNG, JPEG, GIF, BMP, WebP, TIFF, ...)") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"cannot decode the image: {first}") from None
    return Decoded(out, (width, height), fmt, tuple(notes))


def centre_of_mass(ink: np.ndarray) -> tuple[float, float]:
    """(row, column) of the intensity-weighted mean position of a 2-D array, in pixel indices."""
    total = float(ink.sum())
    if total <= 0:
        raise DataError("the drawing is empty: no ink to centre")
    rows = np.arange(ink.shape[0], dtype=np.float64)
    cols = np.arange(ink.shape[1], dtype=np.float64)
    return float((ink.sum(1) * rows).sum() / total), float((ink.sum(0) * cols).sum() / total)


def prepare_digit(ink: np.ndarray | torch.Tensor, *, box: int = DIGIT_BOX, size: int = DIGIT_FIELD) -> torch.Tensor:
    """A drawing -> a uint8 (1, size, size) digit prepared as MNIST's were.

    ``ink``: (H, W) uint8 with the strokes bright on a dark background (0 = no ink). The
    bounding box of the ink is scaled, keeping its aspect ratio, so its longer side is
    ``box`` pixels (bilinear with antialiasing, which leaves grey levels as the original
    normalisation did), then pasted into a ``size`` x ``size`` field so that its centre of
    mass falls on the field's centre, translated by whole pixels. An empty drawing raises
    DataError.
    """
    array = ink.numpy() if isinstance(ink, torch.Tensor) else np.asarray(ink)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or array.dtype != np.uint8:
        raise DataError(f"a drawing must be a (H, W) uint8 array, got {array.dtype} {tuple(array.shape)}")
    if not 1 <= box <= size:
        raise DataError(f"box must be between 1 and size ({size}), got {box}")
    ys, xs = np.nonzero(array)
    if len(ys) == 0:
        raise DataError("the drawing is empty: no ink to centre")
    crop = array[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape
    scale = box / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    scaled = np.asarray(Image.fromarray(crop, "L").resize((nw, nh), Image.Resampling.BILINEAR))
    cy, cx = centre_of_mass(scaled.astype(np.float64))
    middle = (size - 1) / 2  # the field's centre in pixel indices (13.5 for 28)
    top, left = int(round(middle - cy)), int(round(middle - cx))
    out = np.zeros((size, size), dtype=np.uint8)
    # Paste with clipping: a lopsided stroke (an "L") can have its centre of mass so far from
    # its box's centre that part of the box leaves the field; MNIST's digits clip the same way.
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + nh, size), min(left + nw, size)
    out[y0:y1, x0:x1] = scaled[y0 - top : y1 - top, x0 - left : x1 - left]
    return torch.from_numpy(out).unsqueeze(0)


def prepare_upload(
    data: bytes,
    image_size: Sequence[int],
    *,
    dark_background: bool = False,
    invert: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[torch.Tensor, Decoded]:
    """Uploaded bytes -> uint8 (C, H, W) of ``image_size`` by the one image policy
    (:func:`cnnlab.data.image.load_image`'s steps 2-4 after :func:`decode_upload`), and the
    decoding record (with a note when the image was inverted)."""
    channels, height, width = image_size
    decoded = decode_upload(data, channels, max_pixels=max_pixels)
    tensor = to_uint8_tensor(resize_and_crop(decoded.image, (height, width)))
    if should_invert(tensor, invert, dark_background=dark_background):
        tensor = 255 - tensor
        decoded = Decoded(decoded.image, decoded.original_size, decoded.format,
                          decoded.notes + ("inverted: dark strokes on a light background, the dataset has light on dark",))
    return tensor, decoded
