"""Augmentation on whole batches of float tensors (B, C, H, W) in [0, 1], on their device.

Each augmentation is a small callable ``aug(x, generator) -> x`` that draws its randomness
from the generator it is given, so a seeded run (and a resumed one) sees the same images.
Presets compose them by name.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from cnnlab.errors import UnknownNameError

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _uniform_int(low: int, high: int, n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(low, high + 1, (n,), generator=generator)


class RandomShift:
    """Translate each image by up to ``max_shift`` pixels in x and y, filling with zeros.

    Implemented as a padded random crop, so it costs one pad and one gather per batch."""

    def __init__(self, max_shift: int) -> None:
        self.max_shift = max_shift

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        s = self.max_shift
        if s == 0:
            return x
        b, c, h, w = x.shape
        padded = F.pad(x, (s, s, s, s))
        dy = _uniform_int(0, 2 * s, b, generator).to(x.device)
        dx = _uniform_int(0, 2 * s, b, generator).to(x.device)
        rows = (dy.view(b, 1) + torch.arange(h, device=x.device).view(1, h))  # (B, H)
        cols = (dx.view(b, 1) + torch.arange(w, device=x.device).view(1, w))  # (B, W)
        idx_rows = rows.view(b, 1, h, 1).expand(b, c, h, w + 2 * s)
        out = padded.gather(2, idx_rows)
        idx_cols = cols.view(b, 1, 1, w).expand(b, c, h, w)
        return out.gather(3, idx_cols)

    def __repr__(self) -> str:
        return f"RandomShift({self.max_shift})"


class Compose:
    def __init__(self, steps: Sequence[Augment]) -> None:
        self.steps = list(steps)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for step in self.steps:
            x = step(x, generator)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.steps})"


def _mnist() -> Augment:
    # Small shifts only. Digits must not be flipped or rotated by 180 degrees: a mirrored
    # or upside-down digit is a different symbol or none (6 <-> 9, mirrored 2, 3, 7).
    return RandomShift(2)


PRESETS: dict[str, Callable[[], Augment | None]] = {
    "none": lambda: None,
    "mnist": _mnist,
}


def get_preset(name: str) -> Augment | None:
    try:
        factory = PRESETS[name]
    except KeyError:
        raise UnknownNameError(f"unknown augmentation preset {name!r}; expected one of {', '.join(PRESETS)}") from None
    return factory()
