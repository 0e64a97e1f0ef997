"""Two-dimensional toy classification sets: points (z1, z2) with a class label.

They make the lectures' point about hidden layers visible: ``blobs`` is linearly separable,
so a single neuron (a perceptron) classifies it; ``xor``, ``moons`` and ``circles`` are not,
and need a hidden layer. All are generated with a seeded ``torch.Generator``, so a figure is
the same on every run.

- ``xor``: four Gaussian clusters at (+-1, +-1); class 1 where z1 and z2 have opposite signs
  (Minsky and Papert's example of what a single-layer perceptron cannot compute).
- ``moons``: two interleaving half circles (the shape of scikit-learn's ``make_moons``).
- ``circles``: a disc of class 1 inside a ring of class 0.
- ``blobs``: two Gaussian clusters, linearly separable.
"""

from __future__ import annotations

import math

import torch

from cnnlab.errors import UnknownNameError

TOY_DATASETS = ("xor", "moons", "circles", "blobs")


def make_toy(name: str, n: int = 400, *, noise: float = 0.15, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points of the named set: (n, 2) float32 coordinates and (n,) int64 labels in {0, 1}.

    ``noise`` is the standard deviation of the Gaussian jitter added to each point (in the
    units of the coordinates, which span roughly [-2, 2])."""
    if name not in TOY_DATASETS:
        raise UnknownNameError(f"unknown toy dataset {name!r}; expected one of {', '.join(TOY_DATASETS)}")
    if n < 4:
        raise ValueError(f"n must be >= 4, got {n}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    g = torch.Generator().manual_seed(seed)
    half = n // 2
    y = torch.cat([torch.zeros(n - half), torch.ones(half)]).long()
    if name == "xor":
        signs = torch.randint(0, 2, (n, 2), generator=g).float() * 2 - 1  # a random quadrant per point
        x = signs + noise * 2 * torch.randn(n, 2, generator=g)
        y = (signs[:, 0] != signs[:, 1]).long()
        return x, y
    if name == "moons":
        t = torch.rand(n, generator=g) * math.pi
        upper = torch.stack([torch.cos(t), torch.sin(t)], 1)  # class 0: upper half circle
        lower = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], 1)  # class 1: lower, shifted
        x = torch.where(y.unsqueeze(1) == 0, upper, lower) - torch.tensor([0.5, 0.25])
    elif name == "circles":
        t = torch.rand(n, generator=g) * 2 * math.pi
        radius = torch.where(y == 0, 1.0, 0.4)  # class 0 on the outer ring, class 1 inside
        x = radius.unsqueeze(1) * torch.stack([torch.cos(t), torch.sin(t)], 1) * 1.5
    else:  # blobs
        centres = torch.tensor([[-1.0, -0.6], [1.0, 0.6]])
        x = centres[y] + 2 * noise * torch.randn(n, 2, generator=g)
        return x, y
    return x + noise * torch.randn(n, 2, generator=g), y
