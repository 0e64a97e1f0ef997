"""Classifying image files with a trained run: Pillow decode, then the run's preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from cnnlab.errors import DataError
from cnnlab.train.loop import Run


@dataclass
class Prediction:
    path: Path
    top: list[tuple[str, float]]  # (class name, probability), most probable first


def image_to_tensor(path: Path, image_size: tuple[int, int, int], *, invert: str = "auto", dark_background: bool = False) -> torch.Tensor:
    """Decode an image file into a uint8 (C, H, W) tensor of the dataset's size and channels.

    Resizes with Pillow's bilinear filter (antialiased). ``invert``: "yes", "no" or "auto";
    "auto" inverts a grayscale image when the dataset has dark backgrounds (MNIST: white
    digits on black) but the image's border is bright (a digit drawn black on white)."""
    channels, height, width = image_size
    try:
        with Image.open(path) as img:
            img.load()
            img = img.convert("L" if channels == 1 else "RGB")
    except FileNotFoundError:
        raise DataError(f"no image at {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"cannot decode image {path}: {e}") from None
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(img, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy())
    tensor = tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1)
    if channels == 1 and (invert == "yes" or (invert == "auto" and dark_background)):
        border = torch.cat([tensor[0, 0], tensor[0, -1], tensor[0, :, 0], tensor[0, :, -1]]).float().mean()
        if invert == "yes" or border > 127:
            tensor = 255 - tensor
    return tensor.contiguous()


@torch.no_grad()
def predict_images(run: Run, paths: list[Path], *, k: int = 5, invert: str = "auto") -> list[Prediction]:
    info = run.data_info
    size = tuple(info["image_size"])
    dark = info["mean"][0] < 0.5 if size[0] == 1 else False
    images = torch.stack([image_to_tensor(Path(p), size, invert=invert, dark_background=dark) for p in paths])
    x = images.float() / 255.0
    if info.get("pad"):
        x = F.pad(x, (info["pad"],) * 4)
    mean = torch.tensor(info["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(info["std"]).view(1, -1, 1, 1)
    model = run.model.eval()
    device = next(model.parameters()).device
    probs = F.softmax(model(((x - mean) / std).to(device)).float(), dim=1).cpu()
    k = min(k, probs.shape[1])
    out = []
    for path, p in zip(paths, probs):
        values, indices = p.topk(k)
        out.append(Prediction(Path(path), [(info["classes"][i], float(v)) for v, i in zip(values, indices)]))
    return out
