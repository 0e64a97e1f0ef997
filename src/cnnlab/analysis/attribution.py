"""Why the network decided: attribution maps over the input pixels, for any registered model.

Four methods, each returning an (H, W) map of the input's size for one target class:

- **Grad-CAM** (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via
  Gradient-based Localization", https://arxiv.org/abs/1610.02391, Eq. 1-2): the channels of a
  late spatial layer weighted by the spatial mean of the class score's gradient, summed, ReLU'd,
  upsampled bilinearly. Non-negative, scaled to max 1.
- **Saliency** (Simonyan, Vedaldi & Zisserman 2014, "Deep Inside Convolutional Networks",
  https://arxiv.org/abs/1312.6034, Sec. 3.1): |d score / d pixel|, maximum over colour
  channels. Non-negative, scaled to max 1.
- **Integrated gradients** (Sundararajan, Taly & Yan 2017, "Axiomatic Attribution for Deep
  Networks", https://arxiv.org/abs/1703.01365, Eq. 1): the gradient integrated along the
  straight path from a baseline to the image, times (image - baseline), summed over channels.
  Signed, in logit units; by completeness the map sums to score(x) - score(baseline).
- **Occlusion** (Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks",
  https://arxiv.org/abs/1311.2901, Sec. 4.2 and Fig. 7): a grey square slides over the image and
  the class probability is re-measured; each pixel gets the mean drop in probability over the
  windows that covered it. Signed, in probability units (positive: covering it hurts the class).
  Grey is the training set's mean colour, which is 0 after the run's normalisation.

The computations are Captum's (``LayerGradCam``, ``Saliency``, ``IntegratedGradients``,
``Occlusion``); this module adds the model-agnostic choice of the Grad-CAM layer, the layouts
that Captum's Grad-CAM does not know (channels-last maps, transformer tokens) and one result
type that the figures, the CLI and ``cnnlab serve`` share.

The default Grad-CAM layer (``default_layer``): the *last* module, in the order the forward pass
finishes them, whose output is a spatial grid and whose grid positions receive gradient from the
class score. Three layouts count as a grid: (B, C, h, w) maps, (B, h, w, C) channels-last maps
(Swin) and (B, extra + h*w, D) token sequences (ViT, DeiT: ``extra`` class/distillation tokens
first). The gradient condition is what makes it work for transformers: a ViT's final tokens feed
the head only through the class token, so their patch tokens get no gradient; the last layer
whose patch tokens do is the last encoder block's ``ln_1`` (the input to its attention). So for
ViT/DeiT we compute Grad-CAM on the last block's tokens reshaped to the patch grid (not attention
rollout); for Swin the final ``norm`` on the last stage's 7x7 token grid; for CNNs the last
convolutional stage.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from captum.attr import (
    IntegratedGradients,
    LayerActivation,
    LayerAttribution,
    LayerGradCam,
    LayerGradientXActivation,
    Occlusion,
    Saliency,
)
from torch import Tensor, nn

from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.layers.drop_path import DropPath
from cnnlab.models import main_output

METHODS = ("gradcam", "saliency", "integrated-gradients", "occlusion")  # the CLI's spelling
Layout = Literal["channels_first", "channels_last", "tokens"]

# Identity at inference: their outputs are their inputs, never a layer worth naming.
_PASS_THROUGH = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Identity, DropPath)
OCCLUSION_BATCH = 32  # occluded copies per forward pass


@dataclass(frozen=True)
class GridLayer:
    """A layer whose output can be read as an h x w grid of feature vectors."""

    name: str  # as in model.named_modules()
    layout: Layout
    grid: tuple[int, int]  # (h, w)
    extra_tokens: int = 0  # tokens layout: class/distillation tokens before the patch tokens


@dataclass
class Attribution:
    """One attribution map and what produced it (what figures and ``serve`` show)."""

    method: str  # one of METHODS
    heatmap: Tensor  # (H, W) float32 on the CPU
    target: int  # the class explained
    probabilities: Tensor  # (num_classes,) softmax of the unperturbed input
    signed: bool  # True for integrated gradients and occlusion (draw with a diverging map)
    layer: str | None = None  # Grad-CAM's layer
    params: dict = field(default_factory=dict)  # the method's settings, stated in titles

    def describe(self) -> str:
        """The method and its settings in words: 'Grad-CAM (layer layer4)', 'occlusion (8x8 square ..., stride 4)'."""
        if self.method == "gradcam":
            return f"Grad-CAM (layer {self.layer})"
        if self.method == "saliency":
            return "saliency (|gradient|, max over channels)"
        if self.method == "integrated-gradients":
            return f"integrated gradients ({self.params['steps']} steps from the mean image)"
        w, s = self.params["window"], self.params["stride"]
        return f"occlusion ({w}x{w} square of the mean colour, stride {s})"


# --- helpers ----------------------------------------------------------------------------------


def _batch(model: nn.Module, x: Tensor) -> Tensor:
    """(C, H, W) or (1, C, H, W) -> (1, C, H, W) float on the model's device."""
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise CnnlabError(f"attribution explains one image: expected (C, H, W) or (1, C, H, W), got {tuple(x.shape)}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return x.detach().float().to(device)


def _logits(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """The model as Captum's forward function: class scores (B, K) even when it returns a tuple."""

    def forward(x: Tensor) -> Tensor:
        out = model(x)
        return main_output(out)

    return forward


def _probabilities(model: nn.Module) -> Callable[[Tensor], Tensor]:
    logits = _logits(model)
    return lambda x: F.softmax(logits(x).float(), dim=1)


def _check_target(model: nn.Module, x: Tensor, target: int) -> None:
    with torch.no_grad():
        k = _logits(model)(x).shape[1]
    if not 0 <= int(target) < k:
        raise CnnlabError(f"class {target} out of range: the model has {k} classes (0..{k - 1})")


class _EvalMode:
    """Eval mode for the call (dropout off, batch-norm statistics fixed), restored after."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc) -> None:
        self.model.train(self.was_training)


def _scaled(m: Tensor) -> Tensor:
    """Non-negative map scaled to max 1 (all zeros stay zeros)."""
    m = m.detach().float().cpu()
    top = m.max()
    return m / top if top > 0 else torch.zeros_like(m)


@torch.no_grad()
def class_probabilities(model: nn.Module, x: Tensor) -> Tensor:
    """Softmax over classes for one image (model input, normalised): (num_classes,) on the CPU."""
    with _EvalMode(model):
        return _probabilities(model)(_batch(model, x))[0].cpu()


# --- the Grad-CAM layer --------------------------------------------------------------------


def _consistent(grid: tuple[int, int], size: tuple[int, int]) -> bool:
    """A grid that could cover the input: 2+ cells, no larger than the input, about the input's aspect."""
    (gh, gw), (h, w) = grid, size
    if gh < 1 or gw < 1 or gh * gw < 2 or gh > h or gw > w:
        return False
    fy, fx = gh / h, gw / w
    return abs(fy - fx) <= 0.2 * max(fy, fx)


def as_grid(name: str, shape: tuple[int, ...], size: tuple[int, int], batch: int) -> GridLayer | None:
    """How an output of ``shape`` reads as a grid for an input of spatial ``size``, or None."""
    if len(shape) < 3 or shape[0] != batch:
        return None
    if len(shape) == 4:
        if _consistent((shape[2], shape[3]), size):
            return GridLayer(name, "channels_first", (shape[2], shape[3]))
        if _consistent((shape[1], shape[2]), size):
            return GridLayer(name, "channels_last", (shape[1], shape[2]))
        return None
    if len(shape) == 3:
        for extra in (0, 1, 2):  # class token (ViT), class + distillation tokens (DeiT-distilled)
            g = math.isqrt(max(shape[1] - extra, 0))
            if g > 1 and g * g == shape[1] - extra and _consistent((g, g), size):
                return GridLayer(name, "tokens", (g, g), extra)
    return None


def to_maps(t: Tensor, layer: GridLayer) -> Tensor:
    """A layer's output (or its gradient) as (B, C, h, w) channels-first maps."""
    if layer.layout == "channels_first":
        return t
    if layer.layout == "channels_last":
        return t.permute(0, 3, 1, 2)
    patches = t[:, layer.extra_tokens :, :]  # (B, h*w, D): the patch tokens, row-major
    return patches.transpose(1, 2).reshape(t.shape[0], t.shape[2], *layer.grid)


def default_layer(model: nn.Module, x: Tensor) -> GridLayer:
    """The Grad-CAM layer chosen without knowing the architecture (see the module docstring):
    the last module, in finishing order, called once, whose output reads as a grid and whose grid
    positions get a non-zero gradient from the top class's score."""
    x = _batch(model, x)
    size = (x.shape[-2], x.shape[-1])
    calls: dict[str, int] = {}
    found: list[list] = []  # [GridLayer, got_gradient], in finishing order

    def watch(name: str):
        def hook(module, inputs, output):
            calls[name] = calls.get(name, 0) + 1
            if not isinstance(output, Tensor) or not output.requires_grad:
                return
            grid = as_grid(name, tuple(output.shape), size, x.shape[0])
            if grid is None:
                return
            entry = [grid, False]
            found.append(entry)

            def on_grad(g: Tensor) -> None:
                entry[1] = entry[1] or bool(to_maps(g, grid).abs().sum() > 0)

            output.register_hook(on_grad)

        return hook

    handles = [m.register_forward_hook(watch(n)) for n, m in model.named_modules() if n and not isinstance(m, _PASS_THROUGH)]
    try:
        with _EvalMode(model), torch.enable_grad():
            scores = _logits(model)(x.requires_grad_(True))
            # Gradient with respect to the input only: the model's own .grad stays untouched.
            torch.autograd.grad(scores[0, scores[0].argmax()], x)
    finally:
        for h in handles:
            h.remove()
    usable = [g for g, grad in found if grad and calls.get(g.name) == 1]
    if not usable:
        raise CnnlabError(f"{type(model).__name__} has no spatial layer for Grad-CAM (no output reads as an h x w grid "
                          "that the class score depends on); use saliency, integrated-gradients or occlusion")
    return usable[-1]


def find_grid_layer(model: nn.Module, x: Tensor, name: str) -> GridLayer:
    """The named layer as a grid for input ``x``; an unknown name suggests close ones."""
    modules = dict(model.named_modules())
    if name not in modules or not name:
        close = difflib.get_close_matches(name, [n for n in modules if n], n=4, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"the default layer is {default_layer(model, x).name}"
        raise UnknownNameError(f"no layer {name!r} in {type(model).__name__}; {hint}")
    shapes: list[tuple[int, ...]] = []
    handle = modules[name].register_forward_hook(
        lambda m, i, o: shapes.append(tuple(o.shape)) if isinstance(o, Tensor) else None)
    xb = _batch(model, x)
    try:
        with _EvalMode(model), torch.no_grad():
            _logits(model)(xb)
    finally:
        handle.remove()
    if len(shapes) != 1:
        raise CnnlabError(f"layer {name!r} ran {len(shapes)} times in one forward pass; Grad-CAM needs a layer that runs once")
    grid = as_grid(name, shapes[0], (xb.shape[-2], xb.shape[-1]), 1)
    if grid is None:
        raise CnnlabError(f"layer {name!r} outputs {shapes[0]}, which is not a spatial grid (B, C, h, w), "
                          "(B, h, w, C) or (B, tokens, D); choose a convolution, block or stage")
    return grid


# --- the four methods ---------------------------------------------------------------------


def gradcam(model: nn.Module, x: Tensor, target: int, *, layer: str | None = None) -> Tensor:
    """Grad-CAM map (H, W) for class ``target``: non-negative, max 1 (all zeros when no position
    of the layer speaks for the class). ``layer`` None: :func:`default_layer`."""
    x = _batch(model, x)
    _check_target(model, x, target)
    grid = default_layer(model, x) if layer is None else find_grid_layer(model, x, layer)
    module = dict(model.named_modules())[grid.name]
    with _EvalMode(model):
        if grid.layout == "channels_first":
            cam = LayerGradCam(_logits(model), module).attribute(x, target=int(target), relu_attributions=True)
        else:  # the same Eq. 1-2 on Captum's layer activations and gradients, read as a grid
            acts = to_maps(LayerActivation(_logits(model), module).attribute(x), grid)
            grads = to_maps(LayerGradientXActivation(_logits(model), module, multiply_by_inputs=False)
                             .attribute(x, target=int(target)), grid)
            cam = gradcam_from(acts, grads)
    up = LayerAttribution.interpolate(cam.detach(), tuple(x.shape[-2:]), interpolate_mode="bilinear")
    return _scaled(F.relu(up[0, 0]))  # bilinear overshoot can dip below 0 near a boundary


def gradcam_from(acts: Tensor, grads: Tensor) -> Tensor:
    """Selvaraju et al. Eq. 1-2 on (B, C, h, w) activations and gradients: alpha_c = mean over
    positions of the gradient, map = ReLU(sum_c alpha_c A_c); (B, 1, h, w)."""
    alpha = grads.mean(dim=(2, 3), keepdim=True)
    return F.relu((alpha * acts).sum(dim=1, keepdim=True))


def saliency(model: nn.Module, x: Tensor, target: int) -> Tensor:
    """Simonyan et al. 2014 saliency (H, W): |gradient of the class score|, max over channels, max 1."""
    x = _batch(model, x)
    _check_target(model, x, target)
    with _EvalMode(model):
        grads = Saliency(_logits(model)).attribute(x.requires_grad_(True), target=int(target), abs=True)
    return _scaled(grads[0].amax(dim=0))


def integrated_gradients(model: nn.Module, x: Tensor, target: int, *, steps: int = 32,
                         baseline: Tensor | None = None) -> Tensor:
    """Integrated gradients (H, W), signed, summed over channels, in logit units. ``baseline``
    (same shape as ``x``) None: zeros, i.e. the training mean image after normalisation."""
    if steps < 1:
        raise CnnlabError(f"steps must be >= 1, got {steps}")
    x = _batch(model, x)
    _check_target(model, x, target)
    base = torch.zeros_like(x) if baseline is None else _batch(model, baseline)
    if base.shape != x.shape:
        raise CnnlabError(f"baseline has shape {tuple(base.shape)}, expected the input's {tuple(x.shape)}")
    with _EvalMode(model):
        attr = IntegratedGradients(_logits(model)).attribute(x.requires_grad_(True), baselines=base, target=int(target), n_steps=steps,
                                                            internal_batch_size=min(steps, 32))
    return attr[0].sum(dim=0).detach().float().cpu()


def occlusion_windows(size: tuple[int, int], window: int, stride: int) -> int:
    """How many window positions Captum's Occlusion evaluates on an image of ``size``."""
    return math.prod(math.ceil((s - window) / stride) + 1 for s in size)


def occlusion(model: nn.Module, x: Tensor, target: int, *, window: int, stride: int,
              progress: Callable[[int, int], None] | None = None, baseline: float = 0.0) -> Tensor:
    """Zeiler & Fergus occlusion (H, W): mean drop of p(target) over the ``window`` x ``window``
    squares (of value ``baseline``: 0 = the training mean colour) that covered each pixel, the
    square moved by ``stride`` pixels. ``progress(done, total)`` is told after each batch of windows."""
    x = _batch(model, x)
    h, w = x.shape[-2:]
    if not 1 <= window <= min(h, w):
        raise CnnlabError(f"occlusion window {window} must be between 1 and the image's shorter side {min(h, w)}")
    if not 1 <= stride <= window:
        raise CnnlabError(f"occlusion stride {stride} must be between 1 and the window {window} (else pixels go unvisited)")
    _check_target(model, x, target)
    total = occlusion_windows((h, w), window, stride)
    probs = _probabilities(model)
    done = [0, False]  # windows evaluated; whether the unoccluded pass has been seen

    def counted(batch: Tensor) -> Tensor:
        out = probs(batch)
        if done[1]:
            done[0] += batch.shape[0]
            if progress is not None:
                progress(min(done[0], total), total)
        done[1] = True  # Captum's first call is the image itself
        return out

    c = x.shape[1]
    with _EvalMode(model), torch.no_grad():
        attr = Occlusion(counted).attribute(
            x, sliding_window_shapes=(c, window, window), strides=(c, stride, stride), baselines=float(baseline),
            target=int(target), perturbations_per_eval=OCCLUSION_BATCH)
    return attr[0].mean(dim=0).detach().float().cpu()  # every channel got the same value


# --- one entry point -------------------------------------------------------------------------


def attribute(model: nn.Module, x: Tensor, method: str, *, target: int | None = None, layer: str | None = None,
              steps: int = 32, window: int | None = None, stride: int | None = None,
              progress: Callable[[int, int], None] | None = None) -> Attribution:
    """Run ``method`` (one of :data:`METHODS`) for ``target`` (None: the top class) and return the
    map with the probabilities and settings. Occlusion's default square is a seventh of the shorter
    side (4 pixels on MNIST, 32 on a 224 image), moved by half of it."""
    if method not in METHODS:
        close = difflib.get_close_matches(method, METHODS, n=1)
        raise UnknownNameError(f"unknown attribution method {method!r}; "
                               + (f"did you mean {close[0]}?" if close else f"choose from {', '.join(METHODS)}"))
    probs = class_probabilities(model, x)
    target = int(probs.argmax()) if target is None else int(target)
    if not 0 <= target < len(probs):
        raise CnnlabError(f"class {target} out of range: the model has {len(probs)} classes (0..{len(probs) - 1})")
    if method == "gradcam":
        grid = default_layer(model, x) if layer is None else find_grid_layer(model, x, layer)
        heat = gradcam(model, x, target, layer=grid.name)
        return Attribution(method, heat, target, probs, False, grid.name, {"layer": grid.name, "grid": list(grid.grid)})
    if method == "saliency":
        return Attribution(method, saliency(model, x, target), target, probs, False)
    if method == "integrated-gradients":
        return Attribution(method, integrated_gradients(model, x, target, steps=steps), target, probs, True,
                           params={"steps": steps})
    side = min(x.shape[-2:])
    window = window or max(1, side // 7)
    stride = stride or max(1, window // 2)
    heat = occlusion(model, x, target, window=window, stride=stride, progress=progress)
    return Attribution(method, heat, target, probs, True, params={"window": window, "stride": stride})
