"""Drawings prepared as MNIST digits were, and uploaded bytes decoded safely (``cnnlab.data.image``'s
upload decoder, which the server uses; the file tests of data/image.py are in test_image.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.drawing import centre_of_mass, prepare_digit
from cnnlab.data.image import ImageTooLarge, decode_upload, load_image, prepare_upload
from cnnlab.errors import DataError


def _png(img: Image.Image, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=params.pop("format", "PNG"), **params)
    return buf.getvalue()


# --- prepare_digit ------------------------------------------------------------------------
def _stroke_canvas(top: int, left: int, h: int, w: int, size: int = 280) -> np.ndarray:
    canvas = np.zeros((size, size), dtype=np.uint8)
    canvas[top : top + h, left : left + w] = 255
    return canvas


def test_digit_box_longer_side_is_20_and_aspect_kept():
    # A 100 x 50 bar drawn in a corner of a 280 x 280 canvas: 20 x 10 after scaling.
    digit = prepare_digit(_stroke_canvas(5, 7, 100, 50))
    assert digit.shape == (1, 28, 28) and digit.dtype == torch.uint8
    ys, xs = np.nonzero(digit[0].numpy())
    assert ys.max() - ys.min() + 1 == 20
    assert xs.max() - xs.min() + 1 == 10


def test_digit_centre_of_mass_is_centred_wherever_it_was_drawn():
    for top, left in [(0, 0), (150, 10), (30, 200)]:
        digit = prepare_digit(_stroke_canvas(top, left, 60, 40))
        cy, cx = centre_of_mass(digit[0].numpy().astype(np.float64))
        # translated by whole pixels: within half a pixel of the field centre 13.5
        assert abs(cy - 13.5) <= 0.5 and abs(cx - 13.5) <= 0.5, (top, left, cy, cx)


def test_digit_same_shape_anywhere_on_the_canvas_gives_the_same_digit():
    a = prepare_digit(_stroke_canvas(0, 0, 90, 30))
    b = prepare_digit(_stroke_canvas(170, 200, 90, 30))
    assert torch.equal(a, b)


def test_digit_lopsided_stroke_is_clipped_not_wrapped():
    canvas = np.zeros((100, 100), dtype=np.uint8)
    canvas[0:100, 0:4] = 255  # an "L": long vertical bar ...
    canvas[96:100, 0:100] = 255  # ... and a long foot: centre of mass near the corner
    digit = prepare_digit(canvas)[0].numpy()
    assert digit.max() > 100  # thin strokes scaled by 0.2 come out grey, as MNIST's do
    cy, cx = centre_of_mass(digit.astype(np.float64))
    assert abs(cy - 13.5) < 2 and abs(cx - 13.5) < 2


def test_digit_empty_drawing_is_an_error():
    with pytest.raises(DataError, match="empty"):
        prepare_digit(np.zeros((50, 50), dtype=np.uint8))


def test_digit_wrong_dtype_is_an_error():
    with pytest.raises(DataError, match="uint8"):
        prepare_digit(np.zeros((50, 50), dtype=np.float32))


def test_digit_single_pixel_still_works():
    canvas = np.zeros((40, 40), dtype=np.uint8)
    canvas[3, 30] = 200
    digit = prepare_digit(canvas)[0].numpy()
    assert digit.sum() > 0


# --- decode_upload ------------------------------------------------------------------------
def test_upload_png_matches_the_file_policy(tmp_path):
    # The same image through the file path (load_image) and the upload path: same tensor.
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8), "RGB")
    path = tmp_path / "x.png"
    img.save(path)
    by_file = load_image(path, (3, 32, 32))
    by_upload, decoded = prepare_upload(path.read_bytes(), (3, 32, 32))
    assert torch.equal(by_file, by_upload)
    assert decoded.format == "PNG" and decoded.original_size == (60, 40)


def test_upload_empty_bytes():
    with pytest.raises(DataError, match="empty"):
        decode_upload(b"", 1)


def test_upload_not_an_image():
    with pytest.raises(DataError, match="not an image"):
        decode_upload(b"hello, world" * 10, 3)


def test_upload_truncated_png():
    data = _png(Image.new("RGB", (64, 64), (10, 200, 30)))
    with pytest.raises(DataError) as e:
        decode_upload(data[: len(data) // 2], 3)
    assert "\n" not in str(e.value)


def test_upload_pixel_limit_checked_from_the_header():
    # A 8000 x 6000 black PNG compresses to a few kB: the header says 48 million pixels.
    data = _png(Image.new("L", (8000, 6000)), optimize=True)
    assert len(data) < 200_000
    with pytest.raises(ImageTooLarge, match="8000x6000 = 48,000,000 pixels; the limit is 1,000,000"):
        decode_upload(data, 1, max_pixels=1_000_000)


def test_upload_exif_rotation_is_applied():
    # Stored 40 wide x 20 high with Orientation 6 (rotate 90 CW to display): shown 20 x 40.
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 0, 0), (0, 0, 10, 20))  # red strip on the stored left edge
    exif = Image.Exif()
    exif[0x0112] = 6
    decoded = decode_upload(_png(img, format="JPEG", exif=exif, quality=95), 3)
    assert decoded.image.size == (20, 40)
    assert any("EXIF orientation 6" in n for n in decoded.notes)
    # Rotating 90 degrees clockwise puts the stored left edge on top.
    top = np.asarray(decoded.image)[:5].mean(axis=(0, 1))
    bottom = np.asarray(decoded.image)[-5:].mean(axis=(0, 1))
    assert top[0] > 200 and bottom[0] < 50


def test_upload_cmyk_jpeg():
    img = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    decoded = decode_upload(_png(img, format="JPEG", quality=95), 3)
    r, g, b = np.asarray(decoded.image).reshape(-1, 3).mean(0)
    assert decoded.image.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_upload_16bit_png_is_scaled_not_clipped():
    values = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16).repeat(4, 0)
    img = Image.fromarray(values)  # uint16 -> mode I;16
    decoded = decode_upload(_png(img), 1)
    row = np.asarray(decoded.image)[0]
    assert row.tolist() == [0, 64, 128, 255]
    assert any("8 bits" in n for n in decoded.notes)


def test_upload_animated_gif_uses_the_first_frame():
    frames = [Image.new("L", (8, 8), v) for v in (200, 10, 90)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    decoded = decode_upload(buf.getvalue(), 1)
    assert np.asarray(decoded.image).mean() == pytest.approx(200, abs=2)
    assert "first of 3 frames used" in decoded.notes


def test_upload_transparent_background_becomes_white():
    img = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    img.putpixel((5, 5), (0, 0, 0, 255))
    decoded = decode_upload(_png(img), 1)
    array = np.asarray(decoded.image)
    assert array[0, 0] == 255 and array[5, 5] == 0


def test_upload_dark_on_light_is_inverted_for_a_dark_background_dataset():
    img = Image.new("L", (28, 28), 255)
    img.paste(0, (10, 4, 16, 24))
    tensor, decoded = prepare_upload(_png(img), (1, 28, 28), dark_background=True)
    assert tensor[0, 0, 0] == 0 and tensor[0, 10, 12] == 255
    assert any("inverted" in n for n in decoded.notes)


def test_upload_grayscale_given_to_rgb_model_and_back():
    gray = _png(Image.new("L", (9, 9), 77))
    assert decode_upload(gray, 3).image.mode == "RGB"
    rgb = _png(Image.new("RGB", (9, 9), (77, 77, 77)))
    assert decode_upload(rgb, 1).image.mode == "L"
