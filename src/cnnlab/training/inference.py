"""The inference path: batch norm folded into the convolutions, channels-last where it is faster,
bfloat16 only where the hardware computes it natively; and the checks that it still agrees.

Folding (Ioffe & Szegedy 2015, Sec. 3: at inference BN is a fixed per-channel affine map
y = gamma * (x - mean) / sqrt(var + eps) + beta): a convolution whose output goes straight into
a BatchNorm2d becomes one convolution with weight W * s and bias (b - mean) * s + beta,
s = gamma / sqrt(var + eps), and the BN becomes the identity. Pairs are found by running the
model once with hooks (a BN whose input is the very tensor a convolution returned), so any
model's own ``forward`` keeps working; the folded copy is then checked against the original
on the same input and refused if it moved the outputs by more than :data:`FOLD_RTOL` of their
scale (a convolution output that also fed something other than its BN would).

bf16: autocast to bfloat16 only where the hardware has bf16 arithmetic: CPUs with AVX512-BF16
or AMX-BF16 (cnnlab.training.device.native_precision), CUDA GPUs of compute capability 8.0 or newer. Elsewhere
bf16 is emulated and slower than fp32, so the path stays fp32.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from cnnlab.errors import CnnlabError, DataError
from cnnlab.models.registry import main_output
from cnnlab.models.weight_files import IMAGENET_MEAN, IMAGENET_STD
from cnnlab.training.device import cpu_flags, native_precision

__all__ = [
    "FOLD_RTOL",
    "Agreement",
    "InferenceModel",
    "Target",
    "agreement",
    "cpu_flags",
    "fold_batch_norm",
    "load_target",
    "native_bf16",
    "prepare_inference",
    "sample_images",
]

# Folding is exact arithmetic (float64: <= 1e-12 of the logit scale) and changes only the
# rounding in float32, where W*s summed is not (W summed)*s. Seen in float32: <= 2e-4 of the
# logit scale, with deliberately harsh BN statistics (tests/training/test_inference.py).
FOLD_RTOL = 1e-3


# --- hardware -------------------------------------------------------------------------------


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (not emulated through fp32): the one
    hardware check, :func:`cnnlab.training.device.native_precision`."""
    return native_precision(device).dtype == torch.bfloat16


# --- batch-norm folding ---------------------------------------------------------------------


def _pairs(model: nn.Module, example: Tensor) -> list[tuple[str, str]]:
    """(conv name, BN name) for every BatchNorm2d whose input is a Conv2d's output tensor."""
    names = {m: n for n, m in model.named_modules()}
    calls: dict[nn.Module, int] = {}
    outputs: dict[int, tuple[Tensor, str]] = {}  # id -> (tensor kept alive so ids stay unique, conv)
    found: list[tuple[str, str]] = []

    def on_conv(module: nn.Module, args, output: Tensor) -> None:
        calls[module] = calls.get(module, 0) + 1
        outputs[id(output)] = (output, names[module])

    def on_bn(module: nn.Module, args) -> None:
        calls[module] = calls.get(module, 0) + 1
        source = outputs.get(id(args[0]))
        if source is not None and source[0] is args[0]:
            found.append((source[1], names[module]))

    handles = [
        m.register_forward_hook(on_conv) if isinstance(m, nn.Conv2d) else m.register_forward_pre_hook(on_bn)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))
    ]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    # A module run twice (shared weights) cannot be folded for one of its uses only.
    modules = dict(model.named_modules())
    return [(c, b) for c, b in found if calls[modules[c]] == 1 and calls[modules[b]] == 1]


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1 / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias.detach() if bn.affine else torch.zeros_like(bn.running_mean)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + shift)


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def fold_batch_norm(model: nn.Module, example: Tensor) -> tuple[nn.Module, int]:
    """A copy of ``model`` (eval mode) with every conv -> BN pair folded, and the pair count.

    ``example``: an input of the shape the model will see (one image is enough). The copy's
    outputs on it must stay within :data:`FOLD_RTOL` of the original's scale, else
    :class:`CnnlabError`.
    """
    model = model.eval()
    folded = copy.deepcopy(model)
    pairs = _pairs(folded, example)
    for conv_name, bn_name in pairs:
        conv, bn = folded.get_submodule(conv_name), folded.get_submodule(bn_name)
        if bn.track_running_stats and bn.running_var is not None:
            _fold(conv, bn)
            _set(folded, bn_name, nn.Identity())
    with torch.no_grad():
        want, got = main_output(model(example)), main_output(folded(example))
    moved = (got - want).abs().max().item()
    if moved > FOLD_RTOL * max(want.abs().max().item(), 1e-6):
        raise CnnlabError(
            f"folding batch norm changed the outputs by {moved:.3g} (scale {want.abs().max().item():.3g}); "
            "a folded convolution's output is used elsewhere too"
        )
    return folded, len(pairs)


# --- the prepared model ---------------------------------------------------------------------


@dataclass
class InferenceModel:
    """A model prepared for inference; call it like the model (no gradients)."""

    model: nn.Module
    device: torch.device
    channels_last: bool  # inputs and weights in NHWC memory order
    bf16: bool  # autocast to bfloat16
    folded: int  # conv -> BN pairs folded

    def __call__(self, x: Tensor) -> Tensor:
        x = x.to(self.device)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return main_output(self.model(x)).float()

    def describe(self) -> str:
        parts = [f"{self.folded} BN folded", "channels-last" if self.channels_last else "NCHW", "bf16" if self.bf16 else "fp32"]
        return ", ".join(parts)


def _seconds(run: Callable[[], object], repeats: int = 3) -> float:
    run()  # warm-up: oneDNN picks and caches its kernels on the first call
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def prepare_inference(
    model: nn.Module,
    example: Tensor,
    *,
    device: torch.device | None = None,
    bf16: bool | None = None,
    channels_last: bool | None = None,
) -> InferenceModel:
    """Our inference path for ``model`` on inputs shaped like ``example`` (a batch).

    ``bf16``: None = where :func:`native_bf16`. ``channels_last``: None = whichever of NHWC
    and NCHW runs ``example`` faster (timed here, best of 3 after a warm-up), NCHW for models
    without 2-d convolutions.
    """
    device = device or example.device
    folded, count = fold_batch_norm(model, example[:1].to(next(model.parameters()).device))
    folded = folded.to(device)
    use_bf16 = native_bf16(device) if bf16 is None else bf16
    if use_bf16 and not native_bf16(device):
        raise CnnlabError(f"bf16 asked for, but {device} has no native bf16 arithmetic")
    plain = InferenceModel(folded, device, False, use_bf16, count)
    if channels_last is False or not any(isinstance(m, nn.Conv2d) for m in folded.modules()):
        return plain
    nhwc_model = copy.deepcopy(folded).to(memory_format=torch.channels_last)
    nhwc = InferenceModel(nhwc_model, device, True, use_bf16, count)
    if channels_last:
        return nhwc
    return nhwc if _seconds(lambda: nhwc(example)) < _seconds(lambda: plain(example)) else plain


# --- agreement on real images ---------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """How far another way of running a model is from the reference on the same images."""

    max_abs_diff: float  # largest |logit difference|
    scale: float  # largest |reference logit|, for reading max_abs_diff
    top1: float  # fraction of images with the same top-1 class
    images: int

    def describe(self) -> str:
        return (f"max |diff| {self.max_abs_diff:.2g} (logits up to {self.scale:.3g}), "
                f"top-1 agreement {self.top1:.1%} on {self.images} images")


def agreement(reference: Tensor, other: Tensor) -> Agreement:
    """Compare two (N, classes) logit tensors."""
    if reference.shape != other.shape:
        raise CnnlabError(f"outputs differ in shape: {tuple(reference.shape)} vs {tuple(other.shape)}")
    reference, other = reference.float().cpu(), other.float().cpu()
    return Agreement(
        max_abs_diff=(reference - other).abs().max().item(),
        scale=reference.abs().max().item(),
        top1=(reference.argmax(1) == other.argmax(1)).float().mean().item(),
        images=len(reference),
    )


MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)  # MNIST's training-set pixel statistics


def sample_images(
    input_size: Sequence[int],
    n: int,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    root: str | os.PathLike | None = None,
) -> tuple[Tensor, str]:
    """``n`` real test images as a normalised (n, C, H, W) batch, and where they came from.

    3x32x32: CIFAR-10 test images (the cifar10-jpeg folders); other 3-channel sizes:
    Imagenette validation photos (ImageNet classes), resized on the shorter side and
    centre-cropped by the one image policy; 1 channel: MNIST test digits, zero-padded to the
    size (28 -> 32 for LeNet-5) or resized. Every k-th image, so all classes appear.
    """
    from cnnlab.data import data_root, load_dataset
    from cnnlab.data.image import fit_padding, load_image, to_model_input

    channels, height, width = input_size
    base = data_root(root)
    if channels == 3:
        name, folder = ("CIFAR-10 test", base / "cifar10-jpeg" / "test") if (height, width) == (32, 32) else (
            "Imagenette val", base / "imagenette" / "val")
        files = sorted(p for p in folder.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not files:
            raise DataError(f"no {name} images under {folder} (set CNNLAB_DATA to the data root)")
        picked = files[:: max(1, len(files) // n)][:n]
        images = torch.stack([load_image(f, input_size) for f in picked])
        return to_model_input(images, mean=mean, std=std), f"{len(picked)} {name} images"
    if channels == 1:
        test = load_dataset("mnist", "test", base, download=False)
        images = test.images[:: max(1, len(test) // n)][:n]
        x = to_model_input(images, mean=mean, std=std, pad=fit_padding(images.shape[1:], input_size))
        if tuple(x.shape[-2:]) != (height, width):
            x = nn.functional.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
        return x, f"{len(x)} MNIST test images"
    raise DataError(f"no real test images with {channels} channels (CIFAR-10 and Imagenette have 3, MNIST 1)")


@dataclass
class Target:
    """A model to export or measure, with how to feed it."""

    label: str  # the registered name, or the run folder
    model: nn.Module  # eval mode, on the CPU
    input_size: tuple[int, int, int]  # (C, H, W) the model takes, padding included
    mean: tuple[float, ...]  # input normalisation
    std: tuple[float, ...]
    classes: tuple[str, ...] | None = None  # a run's class names
    pad: int = 0  # zeros a run adds on each side of its images (data.json's pad), inside input_size

    def metadata(self) -> dict[str, object]:
        """What an exported file needs to be fed the same way (ONNX metadata properties)."""
        meta: dict[str, object] = {"mean": list(self.mean), "std": list(self.std), "pad": self.pad, "source": self.label}
        if self.classes:
            meta["classes"] = list(self.classes)
        return meta


def load_target(run_or_model: str | os.PathLike) -> Target:
    """A run folder (its best weights, its data's mean/std and padding) or a registered model
    (its builder's initialisation; ImageNet statistics for 3 channels, MNIST's for 1)."""
    from cnnlab.models import create_model, get_model_info
    from cnnlab.training.run import load_run

    path = Path(run_or_model)
    if path.is_dir():
        run = load_run(path)
        info = run.data_info
        c, h, w = info["image_size"]
        pad = info.get("pad", 0)
        return Target(str(path), run.model.eval(), (c, h + 2 * pad, w + 2 * pad), tuple(info["mean"]),
                      tuple(info["std"]), tuple(info["classes"]), pad)
    info = get_model_info(str(run_or_model))
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if info.input_size[0] == 3 else (MNIST_MEAN, MNIST_STD)
    return Target(info.name, create_model(info.name).eval(), info.input_size, mean, std)
