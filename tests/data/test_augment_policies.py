"""ImageNet policies, TrivialAugment (Pillow as the oracle), random erasing, mixup, cutmix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from cnnlab.data.augment import PRESETS, get_preset
from cnnlab.data.augment_policies import (
    POLICIES,
    TA_WIDE,
    MixupCutmix,
    RandomErasing,
    ScaleJitter,
    TrivialAugment,
    _apply,
    train_augment,
)
from cnnlab.errors import CnnlabError, UnknownNameError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def photo() -> tuple[Image.Image, torch.Tensor]:
    """A 20x24 RGB image with a skewed histogram, as Pillow and as a (1, 3, H, W) batch."""
    arr = (np.random.default_rng(0).random((20, 24, 3)) ** 2 * 255).astype(np.uint8)
    return Image.fromarray(arr), torch.from_numpy(arr).permute(2, 0, 1).float().div(255).unsqueeze(0)


def as_uint8(x: torch.Tensor) -> np.ndarray:
    return (x[0].permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy().astype(int)


# --- policies --------------------------------------------------------------------------------


def test_policies_are_the_papers_settings():
    assert POLICIES["alexnet"].sides == (256, 256) and POLICIES["alexnet"].square and POLICIES["alexnet"].lighting == 0.1
    assert POLICIES["vgg"].sides == (256, 512)  # Simonyan & Zisserman Sec. 3.1
    assert POLICIES["resnet"].sides == (256, 480)  # He et al. Sec. 3.4
    assert POLICIES["inception"].area == (0.08, 1.0) and POLICIES["inception"].ratio == (3 / 4, 4 / 3)
    assert all(p.size == 224 for p in POLICIES.values())
    for name in ("vgg", "resnet", "imagenet"):
        assert name in PRESETS


def test_scale_jitter_at_the_smallest_scale_is_the_whole_image_and_sizes_follow():
    x = torch.rand(4, 3, 32, 32)
    same = ScaleJitter(32, smin=32, smax=32, crop=32)(x, gen())
    assert torch.allclose(same, x, atol=1e-5)  # S = crop: the crop is the whole image
    out = ScaleJitter(24, smin=256, smax=512)(x, gen())
    assert out.shape == (4, 3, 24, 24)
    with pytest.raises(ValueError):
        ScaleJitter(24, smin=200, smax=512)  # crop 224 > smin


def test_scale_jitter_zooms_in_by_s_over_smin():
    # A horizontal ramp: the crop's range of values is the crop's share of the image side.
    ramp = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(256, 1, 64, 64).contiguous()
    out = ScaleJitter(64, smin=256, smax=512, crop=224)(ramp, gen(1))
    spans = out[:, 0, 32, -1] - out[:, 0, 32, 0]
    assert spans.min() > 224 / 512 - 0.05 and spans.max() < 224 / 256 + 0.01
    assert spans.max() - spans.min() > 0.3  # the scales vary between images


def test_policy_presets_give_crops_of_the_asked_size():
    x = torch.rand(3, 3, 64, 64)
    for name in ("alexnet", "vgg", "resnet", "inception", "imagenet"):
        aug = train_augment(name, None, crop_size=40)
        assert aug(x, gen()).shape == (3, 3, 40, 40), name
    assert get_preset("vgg")(torch.rand(2, 3, 256, 256), gen()).shape == (2, 3, 224, 224)


def test_train_augment_without_crop_when_done_at_decode_time():
    aug = train_augment("imagenet", None, crop_done=True)
    x = torch.rand(2, 3, 20, 20)
    assert aug(x, gen()).shape == x.shape  # only the flip remains
    assert train_augment("none", None) is None
    with pytest.raises(UnknownNameError):
        train_augment("none", None, auto_augment="autoaugment")


# --- TrivialAugment: each operation against Pillow ----------------------------------------------


@pytest.mark.parametrize("name,pil", [
    ("brightness", lambda im, f: ImageEnhance.Brightness(im).enhance(f)),
    ("color", lambda im, f: ImageEnhance.Color(im).enhance(f)),
    ("contrast", lambda im, f: ImageEnhance.Contrast(im).enhance(f)),
    ("sharpness", lambda im, f: ImageEnhance.Sharpness(im).enhance(f)),
])
def test_enhance_operations_match_pillow(photo, name, pil):
    img, x = photo
    for m in (-0.7, 0.6):
        ours = as_uint8(_apply(name, x, torch.tensor([m], dtype=torch.float64)))
        assert np.abs(ours - np.asarray(pil(img, 1 + m))).max() <= 1, (name, m)  # rounding only


def test_histogram_operations_match_pillow(photo):
    img, x = photo
    m0 = torch.tensor([0.0], dtype=torch.float64)
    assert np.array_equal(as_uint8(_apply("equalize", x, m0)), np.asarray(ImageOps.equalize(img)))
    assert np.array_equal(as_uint8(_apply("posterize", x, torch.tensor([4.0], dtype=torch.float64))), np.asarray(ImageOps.posterize(img, 4)))
    assert np.array_equal(as_uint8(_apply("solarize", x, torch.tensor([0.5], dtype=torch.float64))), np.asarray(ImageOps.solarize(img, 128)))
    assert np.abs(as_uint8(_apply("autocontrast", x, m0)) - np.asarray(ImageOps.autocontrast(img))).max() <= 1


def test_geometric_operations_move_pixels_as_asked():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0
    moved = _apply("translate_x", x, torch.tensor([2.0], dtype=torch.float64))
    assert moved[0, 0, 4].argmax().item() in (2, 6)  # two pixels left or right
    turned = _apply("rotate", x, torch.tensor([90.0], dtype=torch.float64))
    assert turned[0, 0, 4, 4] > 0.99  # the centre stays


def test_trivialaugment_draws_one_op_per_image_uniformly_within_the_wide_ranges():
    ta = TrivialAugment()
    op, m = ta.draw(14_000, gen())
    counts = torch.bincount(op, minlength=len(TA_WIDE))
    assert counts.min() > 800 and counts.max() < 1200  # 1000 expected each
    for k, (name, top, signed) in enumerate(TA_WIDE):
        mk = m[op == k]
        assert mk.abs().max() <= top + 1e-9
        assert (mk < 0).any() == signed, name
    assert len(torch.unique(m[op == 5])) > 40  # 31 levels x 2 signs for rotate


def test_trivialaugment_is_seeded_and_changes_most_images():
    x = torch.rand(32, 3, 16, 16)
    a, b = TrivialAugment()(x, gen(3)), TrivialAugment()(x, gen(3))
    assert torch.equal(a, b)
    changed = (a - x).abs().flatten(1).amax(1) > 1e-6
    assert changed.sum() >= 20  # identity is 1 of 14, and a few magnitudes are 0
    assert a.min() >= 0 and a.max() <= 1


# --- random erasing ----------------------------------------------------------------------------


def test_random_erasing_fills_one_rectangle_of_the_stated_area():
    x = torch.rand(200, 3, 40, 40) * 0.5 + 0.25
    out = RandomErasing(1.0, fill=(0.0, 0.0, 0.0))(x, gen())
    erased = (out == 0).all(1)  # (B, H, W)
    fractions = erased.flatten(1).float().mean(1)
    assert (fractions > 0).all()
    assert fractions.min() >= 0.02 - 0.01 and fractions.max() <= 0.33 + 0.02
    rows, cols = erased.any(2), erased.any(1)
    # a rectangle: its area is (rows it touches) x (columns it touches)
    assert torch.equal(erased.flatten(1).sum(1), rows.sum(1) * cols.sum(1))


def test_random_erasing_probability():
    x = torch.rand(1000, 1, 8, 8) + 1.0
    out = RandomErasing(0.25, fill=(0.0,))(x, gen())
    rate = (out == 0).flatten(1).any(1).float().mean()
    assert 0.2 < rate < 0.3
    assert torch.equal(RandomErasing(0.0)(x, gen()), x)
    with pytest.raises(CnnlabError):
        RandomErasing(1.5)


# --- mixup and cutmix ---------------------------------------------------------------------------


def test_mixup_mixes_images_and_targets_with_the_same_weight():
    x = torch.rand(8, 3, 4, 4)
    y = torch.arange(8) % 5
    mixed, target = MixupCutmix(5, mixup_alpha=0.2)(x, y, gen(1))
    lam = float(target[0, y[0]]) if y[0] != y[7] else None
    assert torch.allclose(target.sum(1), torch.ones(8))
    assert lam is not None and 0 <= lam <= 1
    assert torch.allclose(mixed, lam * x + (1 - lam) * x.roll(1, 0), atol=1e-6)


def test_mixup_weights_follow_beta_alpha():
    mix = MixupCutmix(2, mixup_alpha=0.2)
    x, y = torch.zeros(2, 1, 1, 1), torch.tensor([0, 1])
    lams = [float(mix(x, y, g)[1][0, 0]) for g in [gen(s) for s in range(400)]]
    # Beta(0.2, 0.2) is U-shaped: most draws near 0 or 1, mean 1/2
    near_ends = np.mean([min(l, 1 - l) < 0.1 for l in lams])
    assert near_ends > 0.55 and abs(np.mean(lams) - 0.5) < 0.08


def test_cutmix_pastes_a_box_and_weights_targets_by_its_area():
    x = torch.zeros(4, 1, 32, 32)
    x[1::2] = 1.0  # images 1 and 3 are white, 0 and 2 black
    y = torch.tensor([0, 1, 0, 1])
    mixed, target = MixupCutmix(2, cutmix_alpha=1.0)(x, y, gen(2))
    pasted = mixed[0, 0].mean().item()  # image 0 (black) got a box of image 3 (white)
    assert 0 < pasted < 1
    assert target[0, 1].item() == pytest.approx(pasted)  # label share = area share
    assert torch.allclose(target.sum(1), torch.ones(4))


def test_both_on_picks_one_per_batch():
    mix = MixupCutmix(2, mixup_alpha=0.2, cutmix_alpha=1.0)
    x = torch.rand(4, 1, 16, 16)
    y = torch.tensor([0, 1, 0, 1])
    kinds = set()
    for s in range(30):
        mixed, _ = mix(x, y, gen(s))
        from_partner_or_self = ((mixed == x) | (mixed == x.roll(1, 0))).all()
        kinds.add("cutmix" if from_partner_or_self else "mixup")
    assert kinds == {"mixup", "cutmix"}
    assert not MixupCutmix(2).enabled
    with pytest.raises(CnnlabError):
        MixupCutmix(2, mixup_alpha=-1)
