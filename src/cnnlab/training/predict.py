"""Classifying image files with a trained run.

Each file goes through the image policy (``cnnlab.data.image``: decode, convert, resize the
shorter side and centre-crop to the run's image size, the dark-background test), then through
the same batches and prediction loop as ``cnnlab eval`` (``Batches`` with the run's padding
and normalisation, :func:`cnnlab.training.evaluate.predict_probs`). So an image file gets the
probabilities ``eval`` gives it as part of an image-folder dataset.

Without a run (:func:`open_predictor`): a registered model with weights (a path, URL, run
folder or ``"torchvision"``), fed the way its weights expect when they are a published file
(``cnnlab.models.weight_files.Preprocess``: resize the shorter side with that interpolation,
centre crop, mean/std), else the ImageNet convention at the model's input size (shorter side
to 8/7 of it, bilinear; ImageNet mean/std), 1,000 outputs named by ImageNet-1k's classes
(``cnnlab.data.synsets.imagenet_names``); or an ``.onnx`` file run by onnxruntime, fed as its
``cnnlab.*`` metadata says (input size, mean, std, class names). A file ``cnnlab export``
wrote also records its run's padding (``pad``; 0 for a registered model): it is fed exactly as
the run is, the image policy at the run's image size (inversion test included), zero-padded,
normalised, so it gives the run's probabilities. An older file without ``pad`` gets the image
policy's shorter-side resize and centre crop to its input size, and a note saying so.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from cnnlab.data import Batches, ImageDataset
from cnnlab.data.image import (
    dark_background,
    decode_file,
    mismatch,
    normalise,
    read_image,
    resize_and_crop,
    to_model_input,
    to_uint8_tensor,
)
from cnnlab.data.synsets import imagenet_classes, imagenet_names
from cnnlab.errors import CnnlabError
from cnnlab.models.weight_files import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from cnnlab.training.evaluate import predict_probs
from cnnlab.training.run import WEIGHTS, Run, load_run


@dataclass
class Prediction:
    path: Path
    top: list[tuple[str, float]]  # (class name, probability), most probable first
    mismatch: str | None = None  # how the file differs from the training images (channels, size), if it does


def load_run_images(run: Run, paths: Sequence[str | os.PathLike], *, invert: str = "auto") -> torch.Tensor:
    """Image files as the run's dataset would hold them: uint8 (N, C, H, W)."""
    return read_run_images(run, paths, invert=invert)[0]


def read_run_images(
    run: Run, paths: Sequence[str | os.PathLike], *, invert: str = "auto"
) -> tuple[torch.Tensor, list[str | None]]:
    """:func:`load_run_images` and, per file, how it differs from the training images."""
    info = run.data_info
    return read_images(paths, tuple(info["image_size"]), mean=info["mean"], invert=invert)


def read_images(
    paths: Sequence[str | os.PathLike], image_size: Sequence[int], *, mean: Sequence[float], invert: str = "auto"
) -> tuple[torch.Tensor, list[str | None]]:
    """Image files as a dataset of ``image_size`` (C, H, W) whose training split has ``mean``
    holds them (steps 1-4 of the image policy: uint8 (N, C, H, W)), and how each file differs."""
    size, dark = tuple(image_size), dark_background(mean)
    images, differences = [], []
    for p in paths:
        image, decoded = read_image(Path(p), size, invert=invert, dark_background=dark)
        images.append(image)
        differences.append(mismatch(decoded, size))
    return torch.stack(images), differences


def predict_file_probs(
    run: Run, paths: Sequence[str | os.PathLike], *, invert: str = "auto", batch_size: int = 500
) -> torch.Tensor:
    """Softmax probabilities (N, classes), float32 on the CPU, of the image files ``paths``."""
    return _file_probs(run, load_run_images(run, paths, invert=invert), batch_size)


def _file_probs(run: Run, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    info = run.data_info
    files = ImageDataset(
        info.get("name", run.config.data), "files", images, torch.zeros(len(images), dtype=torch.int64),
        tuple(info["classes"]), tuple(info["mean"]), tuple(info["std"]),
    )
    model = run.model
    device = next(model.parameters()).device
    probs, _ = predict_probs(model, Batches(files, batch_size, device=device, pad=int(info.get("pad", 0))))
    return probs


def predict_images(run: Run, paths: Sequence[str | os.PathLike], *, k: int = 5, invert: str = "auto") -> list[Prediction]:
    """The ``k`` most probable classes of each image file (``k`` >= 1), and how each file
    differs from the training images."""
    if k < 1:
        raise CnnlabError(f"k must be >= 1 (classes to show per image), got {k}")
    images, differences = read_run_images(run, paths, invert=invert)
    probs = _file_probs(run, images, 500)
    classes = run.data_info["classes"]
    k = min(k, probs.shape[1])
    out = []
    for path, p in zip(paths, probs):
        values, indices = p.topk(k)
        out.append(Prediction(Path(path), [(classes[i], float(v)) for v, i in zip(values, indices)], differences[len(out)]))
    return out


# --- without a run: a model with weights, or an ONNX file -----------------------------------

_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
CROP_RATIO = 0.875  # ImageNet convention: centre crop = 7/8 of the resized shorter side (256 -> 224)


@dataclass
class Predictor:
    """A model to classify image files with, and how to feed it (not a run folder)."""

    label: str  # the model and its weights, or the ONNX file
    model: Callable[[torch.Tensor], torch.Tensor]  # (B, C, H, W) float -> logits; eval mode
    channels: int
    preprocess: Preprocess
    classes: tuple[str, ...]
    note: str = ""  # where the preprocessing comes from
    # An exported run (its ONNX metadata records the padding): fed as the run itself is, the
    # image policy at crop x crop (inversion test included), then zero-padded by this much on
    # each side before normalising. None: resize and crop to the input, normalise.
    pad: int | None = None


@dataclass(frozen=True)
class WeightsCrop:
    """The pixels a weights file expects of an image: shorter side resized to ``resize`` with
    its filter, centre ``crop``: uint8 (C, crop, crop), not yet normalised. Called as a
    streaming transform too (``cnnlab eval --weights``: ``(path, seed)``, in worker processes)."""

    channels: int
    preprocess: Preprocess

    def image(self, img: Image.Image) -> torch.Tensor:
        pre = self.preprocess
        return to_uint8_tensor(resize_and_crop(img, (pre.crop, pre.crop), shorter=pre.resize, resample=_FILTERS[pre.interpolation]))

    def __call__(self, path: str | os.PathLike, seed: int = 0) -> torch.Tensor:
        return self.image(decode_file(Path(path), self.channels).image)


def preprocess_image(path: str | os.PathLike, channels: int, pre: Preprocess) -> torch.Tensor:
    """An image file as a weights file expects it: float (C, crop, crop), normalised."""
    x = WeightsCrop(channels, pre)(path).float() / 255
    return normalise(x[None], pre.mean[:channels], pre.std[:channels])[0]


def _default_preprocess(side: int, channels: int) -> Preprocess:
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.5,), (0.5,))
    return Preprocess(round(side / CROP_RATIO), side, "bilinear", mean, std)  # type: ignore[arg-type]


def _model_predictor(name: str, weights: str) -> Predictor:
    from cnnlab.models import get_model_info
    from cnnlab.models.weights import pretrained, resolve_weights

    _, row = resolve_weights(name, weights)
    model = pretrained(name, weights).eval()
    info = get_model_info(model)
    channels, side = info.input_size[0], info.input_size[1]
    if row is not None:
        pre = row.preprocess
        note = f"{row.file_name}'s own ({row.tag}: shorter side {pre.resize} {pre.interpolation}, centre crop {pre.crop})"
    else:
        pre, note = _default_preprocess(side, channels), "the ImageNet convention at the model's input size (not a published file)"
    with torch.no_grad():
        classes = int(model(torch.zeros(1, channels, pre.crop, pre.crop)).shape[1])
    return Predictor(f"{name} with {weights}", model, channels, pre, output_names(classes), note)


def output_names(classes: int) -> tuple[str, ...]:
    """Names of a weight file's outputs: ImageNet-1k's (``cnnlab.data.synsets``) for 1,000, else "class i"."""
    if classes == len(imagenet_classes()):
        return imagenet_names()
    return tuple(f"class {i}" for i in range(classes))


def _onnx_predictor(path: Path) -> Predictor:
    from cnnlab.training.export import OnnxModel

    onnx = OnnxModel(path)
    meta = onnx.metadata
    try:
        c, h, w = (int(v) for v in meta["input_size"])  # type: ignore[union-attr]
        mean, std = tuple(meta["mean"]), tuple(meta["std"])  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        raise CnnlabError(f"{path} has no cnnlab input_size/mean/std metadata; write it with `cnnlab export`") from None
    if h != w:
        raise CnnlabError(f"{path} takes {h}x{w} inputs; predict feeds square crops only")
    classes = meta.get("classes")
    with torch.no_grad():
        n = int(onnx(torch.zeros(1, c, h, w)).shape[1])
    names = tuple(classes) if isinstance(classes, list) and len(classes) == n else tuple(f"class {i}" for i in range(n))
    pad = meta.get("pad")  # absent from files exported before cnnlab recorded a run's padding
    if pad is None:
        pre = Preprocess(h, h, "bilinear", mean, std)  # type: ignore[arg-type]
        note = ("its metadata (shorter side resized to the input size, centre crop; the file records no padding: "
                "if its run padded its images, export it again)")
        return Predictor(str(path), onnx, c, pre, names, note)
    if not isinstance(pad, int) or not 0 <= 2 * pad < h:
        raise CnnlabError(f"{path}: its metadata's pad {pad!r} does not fit its {h}x{w} input; expected an integer 0 <= pad < {h / 2:g}")
    side = h - 2 * pad
    pre = Preprocess(side, side, "bilinear", mean, std)  # type: ignore[arg-type]
    padding = f", zero-padded by {pad} to {h}x{w}" if pad else ""
    return Predictor(str(path), onnx, c, pre, names, f"its metadata (the run's image policy at {side}x{side}{padding})", pad)


def open_predictor(target: str | os.PathLike, *, weights: str | None = None, checkpoint: str | None = None) -> Run | Predictor:
    """What ``cnnlab predict TARGET`` classifies with: a run folder (its ``checkpoint``, "best"
    or "last"; ``weights`` a source to load instead), an ``.onnx`` file, or a registered model
    name with ``weights`` (a model without weights would predict noise, so that is refused)."""
    path = Path(target)
    # A registered name never holds a slash: anything path-like but ONNX is a run folder to load.
    if path.is_dir() or (path.suffix != ".onnx" and ("/" in str(target) or os.sep in str(target) or path.exists())):
        if weights in WEIGHTS:  # the old spelling: --weights best|last of a run
            checkpoint, weights = checkpoint or weights, None
        run = load_run(path, weights=checkpoint or "best")
        if weights is not None:
            from cnnlab.models.weights import load_weights

            load_weights(run.model, weights)
        return run
    if checkpoint is not None:
        raise CnnlabError(f"--checkpoint {checkpoint} picks a run folder's file; {target} is not a run folder")
    if path.suffix == ".onnx":
        if weights is not None:
            raise CnnlabError(f"{target} holds its own weights; give no --weights with an ONNX file")
        return _onnx_predictor(path)
    from cnnlab.models import get_model_info

    name = get_model_info(str(target)).name  # an unknown name fails with the closest ones
    if weights is None:
        raise CnnlabError(f"model {name} has no trained weights; give --weights (a file, URL, run folder or torchvision)")
    return _model_predictor(name, weights)


def predict_with(
    predictor: Predictor, paths: Sequence[str | os.PathLike], *, k: int = 5, batch_size: int = 64, invert: str = "auto"
) -> list[Prediction]:
    """The ``k`` most probable classes of each image file under ``predictor``. ``invert``: the
    image policy's inversion test, for an exported run (``predictor.pad`` set), as a run has it."""
    if k < 1:
        raise CnnlabError(f"k must be >= 1 (classes to show per image), got {k}")
    pre = predictor.preprocess
    if predictor.pad is None:
        x = torch.stack([preprocess_image(p, predictor.channels, pre) for p in paths])
        differences: list[str | None] = [None] * len(paths)
    else:  # what predict_images does with the run: the same reading, padding and normalisation
        images, differences = read_images(paths, (predictor.channels, pre.crop, pre.crop), mean=pre.mean, invert=invert)
        x = to_model_input(images, mean=pre.mean, std=pre.std, pad=predictor.pad)
    with torch.no_grad():
        logits = torch.cat([predictor.model(part) for part in x.split(batch_size)])
    probs = logits.float().softmax(1)
    k = min(k, probs.shape[1])
    out = []
    for path, p in zip(paths, probs):
        values, indices = p.topk(k)
        top = [(predictor.classes[i], float(v)) for v, i in zip(values, indices)]
        out.append(Prediction(Path(path), top, differences[len(out)]))
    return out
