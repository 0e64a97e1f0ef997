"""Classifying image files with a trained run.

Each file goes through the image policy (``cnnlab.data.image``: decode, convert, resize the
shorter side and centre-crop to the run's image size, the dark-background test), then through
the same batches and prediction loop as ``cnnlab eval`` (``Batches`` with the run's padding
and normalisation, :func:`cnnlab.training.evaluate.predict_probs`). So an image file gets the
probabilities ``eval`` gives it as part of an image-folder dataset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from cnnlab.data import Batches, ImageDataset
from cnnlab.data.image import dark_background, mismatch, read_image
from cnnlab.errors import CnnlabError
from cnnlab.training.evaluate import predict_probs
from cnnlab.training.run import Run


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
    size = tuple(info["image_size"])
    dark = dark_background(info["mean"])
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
