"""Attribution maps against cases whose answer is known.

- A network whose output depends on one image quadrant only: every method puts most of its mass
  there, for each of the three layouts Grad-CAM reads (channels-first maps, channels-last maps,
  transformer tokens). The quadrant is off the diagonal, so a transposed grid would fail.
- A LeNet-5 trained for one epoch on MNIST: occlusion hurts the class most on the digit's strokes.
- Integrated gradients' completeness; Grad-CAM's formula against Captum's LayerGradCam; the
  default layer of CNNs and of every registered transformer.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam
from torch import nn

from cnnlab.analysis.attribution import (
    METHODS,
    attribute,
    default_layer,
    gradcam,
    gradcam_from,
    integrated_gradients,
    occlusion,
    occlusion_windows,
    saliency,
)
from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.models import create_model, get_model_info, list_models

SIZE = 32
TOP_RIGHT = (slice(0, SIZE // 2), slice(SIZE // 2, SIZE))


class QuadrantMask(nn.Module):
    """Zeroes every position outside one quadrant of a (B, C, h, w) map."""

    def __init__(self, rows: slice, cols: slice, grid: int, layout: str = "channels_first") -> None:
        super().__init__()
        mask = torch.zeros(grid, grid)
        scale = grid / SIZE
        mask[int(rows.start * scale):int(rows.stop * scale), int(cols.start * scale):int(cols.stop * scale)] = 1
        self.layout = layout
        self.register_buffer("mask", mask)

    def forward(self, x):
        if self.layout == "channels_first":
            return x * self.mask
        if self.layout == "channels_last":
            return x * self.mask[None, :, :, None]
        flat = self.mask.flatten()[None, :, None]  # tokens: a class token, then the patches row-major
        return torch.cat([x[:, :1], x[:, 1:] * flat], dim=1)


class QuadrantCNN(nn.Module):
    def __init__(self, quadrant=TOP_RIGHT) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.mask = QuadrantMask(*quadrant, SIZE)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.mask(self.features(x)).mean(dim=(2, 3)))


class QuadrantChannelsLast(nn.Module):
    """Swin-like: 4x4 patches, a per-token MLP on (B, h, w, C), mean pool."""

    def __init__(self, quadrant) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 16, 4, stride=4)
        self.mlp = nn.Sequential(nn.Linear(16, 16), nn.GELU())
        self.mask = QuadrantMask(*quadrant, SIZE // 4, "channels_last")
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        t = self.embed(x).permute(0, 2, 3, 1)  # (B, 8, 8, 16)
        return self.head(self.mask(self.mlp(t)).mean(dim=(1, 2)))


class QuadrantTokens(nn.Module):
    """ViT-like: a class token and 8x8 patch tokens; the head reads the mean of all tokens."""

    def __init__(self, quadrant) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 16, 4, stride=4)
        self.cls = nn.Parameter(torch.zeros(1, 1, 16))
        self.mlp = nn.Sequential(nn.Linear(16, 16), nn.GELU())
        self.mask = QuadrantMask(*quadrant, SIZE // 4, "tokens")
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)  # (B, 64, 16)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], dim=1)  # (B, 65, 16)
        return self.head(self.mask(self.mlp(t))[:, 1:].mean(dim=1))


def mass_in(m: torch.Tensor, quadrant) -> float:
    m = m.abs()
    return float(m[quadrant].sum() / m.sum())


@pytest.fixture
def image() -> torch.Tensor:
    return torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_finds_the_quadrant_the_output_depends_on(method, image):
    torch.manual_seed(0)
    model = QuadrantCNN()
    result = attribute(model, image, method, target=1, window=4, stride=2)
    assert result.heatmap.shape == (SIZE, SIZE)
    assert result.heatmap.abs().sum() > 0
    assert mass_in(result.heatmap, TOP_RIGHT) > 0.85, method


@pytest.mark.parametrize("model_cls, layout, quadrant", [
    (QuadrantChannelsLast, "channels_last", (slice(0, 16), slice(16, 32))),   # top right
    (QuadrantTokens, "tokens", (slice(16, 32), slice(0, 16))),                # bottom left
])
def test_gradcam_reads_channels_last_maps_and_tokens_as_the_patch_grid(model_cls, layout, quadrant, image):
    torch.manual_seed(0)
    model = model_cls(quadrant)
    grid = default_layer(model, image)
    assert (grid.name, grid.layout, grid.grid) == ("mask", layout, (8, 8))
    heat = gradcam(model, image, 2)
    assert heat.shape == (SIZE, SIZE) and heat.min() >= 0 and heat.max() == pytest.approx(1.0)
    assert mass_in(heat, quadrant) > 0.85


def test_gradcam_formula_is_captums_layergradcam(image):
    torch.manual_seed(0)
    model = QuadrantCNN().eval()
    layer = model.features[2]
    acts, grads = [], []

    def keep(module, inputs, output):
        acts.append(output)
        output.register_hook(grads.append)

    h = layer.register_forward_hook(keep)
    model(image)[0, 1].backward()
    h.remove()
    ours = gradcam_from(acts[0].detach(), grads[0])
    theirs = LayerGradCam(model, layer).attribute(image, target=1, relu_attributions=True)
    torch.testing.assert_close(ours, theirs.detach())


def test_maps_are_scaled_and_signed_as_documented(image):
    torch.manual_seed(0)
    model = QuadrantCNN()
    for fn in (gradcam, saliency):
        m = fn(model, image, 0)
        assert m.min() >= 0 and m.max() == pytest.approx(1.0)
    ig = integrated_gradients(model, image, 0, steps=8)
    assert ig.min() < 0 < ig.max()  # signed


def test_integrated_gradients_sums_to_the_score_difference(image):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 30 * 30, 3)).eval()
    ig = integrated_gradients(model, image, 2, steps=64)
    with torch.no_grad():
        gap = model(image)[0, 2] - model(torch.zeros_like(image))[0, 2]
    assert float(ig.sum()) == pytest.approx(float(gap), rel=0.02, abs=1e-3)


def test_occlusion_reports_progress_and_measures_probability_drops(image):
    torch.manual_seed(0)
    model = QuadrantCNN()
    calls = []
    heat = occlusion(model, image, 0, window=8, stride=4, progress=lambda done, total: calls.append((done, total)))
    total = occlusion_windows((SIZE, SIZE), 8, 4)
    assert total == 7 * 7 and calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    # a drop of probability is at most the probability itself
    with torch.no_grad():
        p = F.softmax(model.eval()(image), dim=1)[0, 0]
    assert float(heat.max()) <= float(p) + 1e-6


def test_bad_arguments_name_the_value(image):
    model = QuadrantCNN()
    with pytest.raises(CnnlabError, match="class 7 out of range"):
        saliency(model, image, 7)
    with pytest.raises(CnnlabError, match="stride 9"):
        occlusion(model, image, 0, window=8, stride=9)
    with pytest.raises(UnknownNameError, match="did you mean features"):
        gradcam(model, image, 0, layer="featurs")
    with pytest.raises(CnnlabError, match="not a spatial grid"):
        gradcam(model, image, 0, layer="head")
    with pytest.raises(UnknownNameError, match="did you mean occlusion"):
        attribute(model, image, "oclusion")
    with pytest.raises(CnnlabError, match="no spatial layer"):
        gradcam(create_model("mlp", num_classes=10), torch.randn(1, 1, 28, 28), 0)


@pytest.mark.parametrize("name, size, expected", [
    ("lenet5", (1, 32, 32), "features.s4"),
    ("resnet20", (3, 32, 32), "layer3"),
    ("resnet18", (3, 64, 64), "layer4"),
])
def test_default_layer_of_cnns_is_their_last_spatial_stage(name, size, expected):
    model = create_model(name, num_classes=10, in_chans=size[0])
    assert default_layer(model, torch.randn(1, *size)).name == expected


TRANSFORMERS = [n for n in list_models() if get_model_info(n).family in ("vit", "swin")]
FAST = {"deit_tiny"}  # the others take 10-45 s each on a shared CPU


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in TRANSFORMERS])
def test_gradcam_works_for_every_registered_transformer(name):
    assert len(TRANSFORMERS) >= 9  # ViT-B/L, DeiT-T/S/B, Swin-T/S/B/L
    torch.manual_seed(0)
    info = get_model_info(name)
    # ViT at 32x32: a 2x2 patch grid; Swin needs 64x64 to keep a 2x2 map after its 32x downsampling.
    options, size = ({"image_size": 32}, 32) if info.family == "vit" else ({}, 64)
    model = create_model(name, num_classes=5, **options)
    x = torch.randn(1, 3, size, size)
    grid = default_layer(model, x)
    if info.family == "vit":  # Grad-CAM on the last block's tokens, reshaped to the 2x2 patch grid
        assert grid.layout == "tokens" and grid.grid == (2, 2) and grid.name.endswith(".ln_1")
        assert grid.name.startswith(f"encoder.layers.encoder_layer_{model.config.depth - 1}.")
    else:  # the final norm on the last stage's 2x2 token map (32x downsampling)
        assert (grid.name, grid.layout, grid.grid) == ("norm", "channels_last", (2, 2))
    # An untrained network can have no positive evidence for a given class (the ReLU'd map is all
    # zero, correctly), so ask for every class: each map is finite in [0, 1], and some class's peaks at 1.
    peaks = []
    for target in range(5):
        heat = gradcam(model, x, target)
        assert heat.shape == (size, size) and torch.isfinite(heat).all() and heat.min() >= 0
        peaks.append(heat.max().item())
    assert all(p == pytest.approx(1.0) or p == 0.0 for p in peaks) and max(peaks) == pytest.approx(1.0), peaks


# --- a trained MNIST model -------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_lenet(data_root):
    """LeNet-5 (ReLU, max pooling) after one pass of Adam over 8,000 MNIST training images
    (about 96% test accuracy), with the normalisation it was trained on."""
    from cnnlab.data import load_dataset

    torch.manual_seed(0)
    train = load_dataset("mnist", "trainval", data_root)
    test = load_dataset("mnist", "test", data_root)

    def prep(images):  # the run's preprocessing for LeNet-5: pad 28 -> 32, MNIST mean/std
        return (F.pad(images.float() / 255, (2, 2, 2, 2)) - 0.1307) / 0.3081

    model = create_model("lenet5", num_classes=10, activation="relu", pool="max")
    opt = torch.optim.Adam(model.parameters(), lr=0.003)
    x, y = prep(train.images[:8000]), train.labels[:8000]
    model.train()
    for i in range(0, len(x), 64):
        loss = F.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(prep(test.images[:1000])).argmax(1) == test.labels[:1000]).float().mean()
    assert acc > 0.9, f"fixture model under-trained: {acc:.3f}"
    return model, test.images[:10], test.labels[:10], prep


@pytest.mark.slow
def test_occlusion_of_a_trained_mnist_model_is_highest_on_the_strokes(mnist_lenet):
    model, images, labels, prep = mnist_lenet
    stroke_means, background_means = [], []
    for image, label in zip(images, labels):
        heat = occlusion(model, prep(image[None]), int(label), window=6, stride=3)  # (32, 32)
        pixels = F.pad(image[0].float(), (2, 2, 2, 2))
        stroke = pixels > 128
        # background: at least 4 pixels away from any stroke pixel
        near = F.max_pool2d(stroke.float()[None, None], 9, stride=1, padding=4)[0, 0] > 0
        stroke_means.append(float(heat[stroke].mean()))
        background_means.append(float(heat[~near].mean()))
    stroke_means, background_means = torch.tensor(stroke_means), torch.tensor(background_means)
    assert (stroke_means > background_means).float().mean() >= 0.9, (stroke_means, background_means)
    assert stroke_means.mean() > 3 * background_means.mean().clamp(min=1e-4)


def test_attribution_leaves_the_models_gradients_and_mode_alone(image):
    torch.manual_seed(0)
    model = QuadrantCNN().train()
    for method in METHODS:
        attribute(model, image, method, window=8, stride=8, steps=4)
    assert model.training and all(p.grad is None for p in model.parameters())
