"""An image folder of three noisy pattern classes in mixed, non-square sizes: small enough
to train on in a second, varied enough that the size policy (shorter side, centre crop) matters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

CLASSES = ("bars", "dots", "plain")
SIZES = ((40, 28), (28, 52), (28, 28), (56, 36), (30, 28), (28, 33))  # (width, height); median shorter side 28


def make_patterns(root: Path, per_class: dict[str, int], *, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for split, n in per_class.items():
        for c, name in enumerate(CLASSES):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                w, h = SIZES[(i + c) % len(SIZES)]
                img = torch.randint(0, 60, (h, w, 3), generator=g, dtype=torch.uint8)
                if name == "bars":
                    img[:, ::4] = 250
                elif name == "dots":
                    img[::5, ::5] = 250
                Image.fromarray(img.numpy()).save(d / f"{i:02d}.png")


@pytest.fixture(scope="module")
def patterns(tmp_path_factory) -> str:
    """``folder:<root>`` with 10 training and 4 test images per class, its own image cache."""
    base = tmp_path_factory.mktemp("patterns")
    make_patterns(base / "root", {"train": 10, "test": 4})
    mp = pytest.MonkeyPatch()
    mp.setenv("CNNLAB_CACHE", str(base / "cache"))
    yield f"folder:{base / 'root'}"
    mp.undo()
