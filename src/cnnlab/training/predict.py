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
from cnnlab.data.image import dark_background, load_image
from cnnlab.training.evaluate import predict_probs
from cnnlab.training.run import Run


@dataclass
class Prediction:
    path: Path
    top: list[tuple[str, float]]  # (class name, probability), most probable first


def load_run_images(run: Run, paths: Sequence[str | os.PathLike], *, invert: str = "auto") -> torch.Tensor:
    """Image files as the run's dataset would hold them: uint8 (N, C, H, W)."""
    info = run.data_info
    size = tuple(info["image_size"])
    dark = dark_background(info["mean"])
    return torch.stack([load_image(Path(p), size, invert=invert, dark_background=dark) for p in paths])


def predict_file_probs(
    run: Run, paths: Sequence[str | os.PathLike], *, invert: str = "auto", batch_size: int = 500
) -> torch.Tensor:
    """Softmax probabilities (N, classes), float32 on the CPU, of the image files ``paths``."""
    info = run.data_info
    images = load_run_images(run, paths, invert=invert)
    files = ImageDataset(
        info.get("name", run.config.data), "files", images, torch.zeros(len(images), dtype=torch.int64),
        tuple(info["classes"]), tuple(info["mean"]), tuple(info["std"]),
    )
    model = run.model
    device = next(model.parameters()).device
    probs, _ = predict_probs(model, Batches(files, batch_size, device=device, pad=int(info.get("pad", 0))))
    return probs


def predict_images(run: Run, paths: Sequence[str | os.PathLike], *, k: int = 5, invert: str = "auto") -> list[Prediction]:
    """The ``k`` most probable classes of each image file."""
    probs = predict_file_probs(run, paths, invert=invert)
    classes = run.data_info["classes"]
    k = min(k, probs.shape[1])
    out = []
    for path, p in zip(paths, probs):
        values, indices = p.topk(k)
        out.append(Prediction(Path(path), [(classes[i], float(v)) for v, i in zip(values, indices)]))
    return out
