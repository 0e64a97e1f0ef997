"""Images as people have them: one decoder for files and uploads, modes converted right,
orientation applied, a pixel limit, and datasets that cannot train refused."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from cnnlab.data import drawing, image
from cnnlab.data.folders import load_folder
from cnnlab.data.image import ImageTooLarge, decode_file, load_image, mismatch, read_image
from cnnlab.errors import DataError


def test_one_decoder_for_files_and_uploads():
    # The drawing module keeps MNIST's preparation only; bytes and files share image._decode.
    assert not any(hasattr(drawing, n) for n in ("decode_upload", "_to_8bit", "_flatten_alpha", "Decoded"))
    from cnnlab.serve import inference

    assert inference.decode_upload is image.decode_upload and inference.prepare_upload is image.prepare_upload


def test_a_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16).repeat(4, 0)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    pixels = load_image(tmp_path / "deep.png", (1, 4, 4), invert="no")
    assert pixels[0, 0].tolist() == [0, 64, 128, 255]  # Pillow's convert("L") gives [0, 255, 255, 255]


def test_the_exif_orientation_of_a_file_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 10, 20))  # a white strip on the stored left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    pixels, decoded = read_image(tmp_path / "phone.jpg", (1, 40, 20), invert="no")
    assert decoded.image.size == (20, 40) and "EXIF orientation 6 applied" in decoded.notes
    assert pixels[0, :5].float().mean() > 200 and pixels[0, -5:].float().mean() < 50  # the left edge is now on top


def test_an_animation_gives_its_first_frame_and_transparency_becomes_white(tmp_path):
    frames = [Image.new("L", (8, 8), v) for v in (200, 10, 90)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=50)
    assert load_image(tmp_path / "a.gif", (1, 8, 8), invert="no").float().mean() == pytest.approx(200, abs=2)
    clear = Image.new("LA", (8, 8), (0, 0))
    clear.save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png", (1, 8, 8), invert="no").min() == 255


def test_the_pixel_limit_is_one_clear_error_without_pillows_warning(tmp_path, monkeypatch):
    Image.new("L", (100, 100)).save(tmp_path / "big.png")
    monkeypatch.setenv("CNNLAB_MAX_PIXELS", "5000")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageTooLarge) as e:
            decode_file(tmp_path / "big.png", 1)
    assert str(e.value) == (f"{tmp_path / 'big.png'}: image is 100x100 = 10,000 pixels; the limit is 5,000 "
                            "(set CNNLAB_MAX_PIXELS to allow more)")
    monkeypatch.setenv("CNNLAB_MAX_PIXELS", "20000")
    assert decode_file(tmp_path / "big.png", 1).image.size == (100, 100)
    # Above Pillow's own threshold (89 megapixels) Pillow would warn first: not through our decoder.
    monkeypatch.delenv("CNNLAB_MAX_PIXELS")
    Image.new("1", (10_000, 9_000)).save(tmp_path / "bomb.png")
    with pytest.raises(ImageTooLarge, match="10000x9000 = 90,000,000 pixels; the limit is 40,000,000"):
        decode_file(tmp_path / "bomb.png", 1)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_differences_from_the_training_images_are_described(tmp_path):
    Image.new("RGB", (64, 48)).save(tmp_path / "photo.png")
    _, decoded = read_image(tmp_path / "photo.png", (1, 28, 28))
    assert mismatch(decoded, (1, 28, 28)) == (
        "converted from 3 channels to 1 and resized from 64x48 to 28x28: the model was trained on 1x28x28 images"
    )
    Image.new("L", (28, 28)).save(tmp_path / "digit.png")
    _, decoded = read_image(tmp_path / "digit.png", (1, 28, 28))
    assert mismatch(decoded, (1, 28, 28)) is None


def _folder(root, counts, mode="L"):
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new(mode, (8, 8), 10 * i).save(root / name / f"{i}.png")


def test_an_empty_class_folder_is_refused(tmp_path):
    _folder(tmp_path / "train", {"cat": 3, "dog": 0})
    with pytest.raises(DataError, match=r"class folder .*train/dog has no images"):
        load_folder(tmp_path / "train", cache=False, quiet=True, workers=1)


def test_a_one_class_dataset_is_refused(tmp_path):
    from cnnlab.data import get_dataset_spec

    _folder(tmp_path / "train", {"cat": 3})
    _folder(tmp_path / "test", {"cat": 3})
    with pytest.raises(DataError, match=r"has one class folder \(cat\); a classifier needs at least two"):
        get_dataset_spec(f"folder:{tmp_path}")


def test_a_folder_of_16_bit_images_stays_one_channel_and_scaled(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)).save(tmp_path / name / "x.png")
    got = load_folder(tmp_path, cache=False, quiet=True, workers=1)
    assert got.images.shape == (2, 1, 8, 8) and int(got.images.max()) == 255 and int(got.images.min()) == 255
