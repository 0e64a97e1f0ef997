"""What a unit wants to see: activation maximisation with the regularisers that make it readable.

Erhan, Bengio, Courville & Vincent 2009, "Visualizing Higher-Layer Features of a Deep Network"
(Univ. Montreal tech. report 1341): start from noise and follow the gradient of one unit's
activation with respect to the input image. Unregularised, this finds high-frequency patterns
that excite the unit but look like noise; Olah, Mordvintsev & Schubert 2017, "Feature
Visualization" (Distill, https://distill.pub/2017/feature-visualization/) list what fixes it,
and we use three of their remedies:

- **transformation robustness**: every step sees the image randomly translated (``jitter``
  pixels), rotated (``rotate`` degrees) and scaled (``scale``), so only patterns the unit likes
  wherever and however they sit survive;
- **a decorrelated parametrisation** ("preconditioning"): the image is optimised as Fourier
  coefficients scaled by 1 / frequency^``decay``, so all frequencies change at about the same
  rate instead of white noise's high-frequency bias, and, for colour images, in a colour
  basis in which the dataset's channels are uncorrelated (the matrix square root of the
  dataset's colour covariance, :func:`colour_basis`; Olah et al. use ImageNet's);
- pixels through a sigmoid, so they stay in [0, 1] without clipping.

A total-variation penalty (``tv``, the simplest "frequency penalty") can be added, and the plain
pixel parametrisation (``fourier=False``) is there to show why the others matter.

The objective for channel k of a layer is the mean of its map over positions (Olah et al.'s
"channel" objective): (B, K, h, w) maps: mean over h, w; (B, tokens, K): mean over tokens;
(B, K) outputs (a linear layer, the logits): the value itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.data.image import normalise
from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.models import main_output


@dataclass(frozen=True)
class Regularisers:
    """Olah et al. 2017's remedies, with the amounts used for 28x28 to 224x224 inputs."""

    jitter: float = 0.06  # random translation, as a fraction of the side (2 px at 32, 13 px at 224)
    rotate: float = 5.0  # random rotation, uniform in +-rotate degrees
    scale: float = 0.05  # random scale, uniform in [1 - scale, 1 + scale]
    fourier: bool = True  # decorrelated (1/f-scaled Fourier) parametrisation; False: raw pixels
    decay: float = 1.0  # spectrum scaling 1 / f^decay of the Fourier parametrisation
    tv: float = 0.0  # weight of the total-variation penalty (mean |neighbour difference|)

    def describe(self) -> str:
        parts = [f"jitter {self.jitter:g} of the side", f"rotation +-{self.rotate:g} deg", f"scale +-{self.scale:g}"]
        parts.append(f"Fourier 1/f^{self.decay:g} parametrisation" if self.fourier else "pixel parametrisation")
        if self.tv:
            parts.append(f"TV penalty {self.tv:g}")
        return ", ".join(parts)


class _Reached(Exception):
    """Raised by the layer hook to stop the forward pass once the layer has run."""


def colour_basis(images: Tensor) -> Tensor:
    """(3, 3) matrix ``B`` with ``B @ B.T`` proportional to the colour covariance of uint8 images
    (N, 3, H, W) (its symmetric square root), scaled so its largest column has norm 1.
    Optimising uncorrelated channels ``u`` and showing ``B @ u`` gives the dataset's colour statistics."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise CnnlabError(f"colour_basis needs RGB images (N, 3, H, W), got {tuple(images.shape)}")
    pixels = images.permute(1, 0, 2, 3).reshape(3, -1).double() / 255.0
    cov = torch.cov(pixels)
    values, vectors = torch.linalg.eigh(cov)
    root = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    return (root / root.norm(dim=0).max()).float()


def _spectrum_scale(h: int, w: int, decay: float) -> Tensor:
    """1 / f^decay for the rfft2 grid of an h x w image (f in cycles per pixel, floored at one cycle per image)."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    f = (fx**2 + fy**2).sqrt().clamp(min=1.0 / max(h, w))
    return f.pow(-decay) / max(h, w)  # so that the initial image has a small, size-independent spread


def _random_affine(n: int, reg: Regularisers, generator: torch.Generator) -> Tensor:
    """(n, 2, 3) affine matrices for grid_sample: rotation, scale, translation (normalised coordinates)."""
    u = lambda: torch.rand(n, generator=generator) * 2 - 1  # uniform in [-1, 1]  # noqa: E731
    angle = u() * math.radians(reg.rotate)
    s = 1 + u() * reg.scale
    tx, ty = u() * 2 * reg.jitter, u() * 2 * reg.jitter  # a fraction of the side = twice that in [-1, 1] units
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    return torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)


def _channel_objective(out: Tensor, channels: Sequence[int], layer: str) -> Tensor:
    """Activation of channel ``channels[i]`` for image i: (B,)."""
    index = torch.tensor(list(channels), device=out.device)
    if out.ndim == 4:  # (B, K, h, w); a channels-last (B, h, w, K) map would need its own case
        per = out.mean(dim=(2, 3))
    elif out.ndim == 3:  # (B, tokens, K)
        per = out.mean(dim=1)
    elif out.ndim == 2:
        per = out
    else:
        raise CnnlabError(f"layer {layer!r} outputs shape {tuple(out.shape[1:])}; expected (K, h, w), (tokens, K) or (K,)")
    if int(index.max()) >= per.shape[1] or int(index.min()) < 0:
        raise CnnlabError(f"channels {list(channels)} out of range: layer {layer!r} has {per.shape[1]} channels (0..{per.shape[1] - 1})")
    return per.gather(1, index[:, None])[:, 0]


def maximize(
    model: nn.Module,
    layer: str,
    channels: Sequence[int],
    *,
    image_size: Sequence[int],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    pad: int = 0,
    steps: int = 256,
    lr: float = 0.05,
    regularisers: Regularisers = Regularisers(),
    colour: Tensor | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Tensor:
    """One image per channel of ``layer`` (a name from ``model.named_modules()``) that maximises
    that channel's mean activation: float (len(channels), C, H, W) in [0, 1] on the CPU.

    ``image_size`` (C, H, W) is the image as a dataset holds it; the model sees it zero-padded by
    ``pad`` and normalised with ``mean``/``std`` (the run's data.json), like a dataset image.
    ``colour``: the (3, 3) :func:`colour_basis` of the training images (RGB only; None: identity).
    All channels are optimised together as one batch (Adam, ``lr``, ``steps`` steps)."""
    modules = dict(model.named_modules())
    if layer not in modules or not layer:
        import difflib

        close = difflib.get_close_matches(layer, [n for n in modules if n], n=4, cutoff=0.5)
        raise UnknownNameError(f"no layer {layer!r} in {type(model).__name__}; " + (f"did you mean {', '.join(close)}?" if close else "see `cnnlab summary MODEL`"))
    if not channels:
        raise CnnlabError("no channels to maximise")
    if steps < 1:
        raise CnnlabError(f"steps must be >= 1, got {steps}")
    c, h, w = (int(v) for v in image_size)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    generator = torch.Generator().manual_seed(seed)
    n = len(channels)
    reg = regularisers
    if reg.fourier:
        scale = _spectrum_scale(h, w, reg.decay).to(device)
        param = (torch.randn(n, c, h, w // 2 + 1, 2, generator=generator) * 0.01).to(device)
    else:
        param = (torch.randn(n, c, h, w, generator=generator) * 0.01).to(device)
    param.requires_grad_(True)
    basis = None
    if colour is not None:
        if c != 3 or tuple(colour.shape) != (3, 3):
            raise CnnlabError(f"a colour basis is a 3x3 matrix for RGB images; got {tuple(colour.shape)} for {c} channel(s)")
        basis = colour.to(device)

    def pixels() -> Tensor:
        if reg.fourier:
            # Magnitude-preserving scale so pixels start near grey (sigmoid(0) = 0.5).
            z = torch.fft.irfft2(torch.view_as_complex(param) * scale, s=(h, w), norm="ortho") * math.sqrt(h * w) / 4
        else:
            z = param
        if basis is not None:
            z = torch.einsum("ij,njhw->nihw", basis, z)
        return torch.sigmoid(z)

    captured: list[Tensor] = []

    def hook(module, inputs, output):
        captured.append(main_output(output))
        raise _Reached

    mean_t = torch.tensor(mean if mean is not None else [0.0] * c, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std if std is not None else [1.0] * c, device=device).view(1, -1, 1, 1)
    optimizer = torch.optim.Adam([param], lr=lr)
    was_training = model.training
    model.eval()
    handle = modules[layer].register_forward_hook(hook)
    try:
        for step in range(steps):
            img = pixels()
            grid = F.affine_grid(_random_affine(n, reg, generator).to(device), [n, c, h, w], align_corners=False)
            seen = F.grid_sample(img, grid, padding_mode="reflection", align_corners=False)
            x = normalise(F.pad(seen, (pad,) * 4) if pad else seen, mean_t, std_t)
            captured.clear()
            try:
                model(x)
            except _Reached:
                pass
            if not captured:
                raise CnnlabError(f"layer {layer!r} did not run in the forward pass")
            loss = -_channel_objective(captured[0], channels, layer).sum()
            if reg.tv:
                tv = (img[..., 1:, :] - img[..., :-1, :]).abs().mean() + (img[..., :, 1:] - img[..., :, :-1]).abs().mean()
                loss = loss + reg.tv * n * tv
            (grad,) = torch.autograd.grad(loss, [param])  # no gradients into the model's weights
            param.grad = grad
            optimizer.step()
            if progress is not None:
                progress(step + 1, steps)
    finally:
        handle.remove()
        model.train(was_training)
    with torch.no_grad():
        return pixels().float().cpu()


@torch.no_grad()
def channel_activation(model: nn.Module, layer: str, x: Tensor, channels: Sequence[int]) -> Tensor:
    """Mean activation of ``channels[i]`` of ``layer`` for model input ``x[i]`` (B,): how strongly
    each maximised image (after the run's preprocessing) excites its unit."""
    captured: list[Tensor] = []
    module = dict(model.named_modules())[layer]

    def hook(m, inputs, output):
        captured.append(main_output(output))
        raise _Reached

    handle = module.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        model(x)
    except _Reached:
        pass
    finally:
        handle.remove()
        model.train(was_training)
    return _channel_objective(captured[0], channels, layer).cpu()
