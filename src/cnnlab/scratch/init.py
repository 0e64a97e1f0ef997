"""Weight initialisation: random weights scaled by the fan-in so activations keep their size.

Each function takes the weight's shape, its fan-in (inputs per unit: ``in`` for a Linear
layer, ``in_chans * k * k`` for a convolution) and a NumPy random generator.
"""

from __future__ import annotations

import numpy as np


def he_normal(shape: tuple[int, ...], fan_in: int, rng: np.random.Generator) -> np.ndarray:
    """N(0, 2 / fan_in): He et al. 2015 (https://arxiv.org/abs/1502.01852), for ReLU networks.

    A ReLU zeroes half of its inputs, so the weights need twice the variance of 1/fan_in for
    each layer's pre-activations to keep the variance of the previous layer's.
    """
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)


def lecun_normal(shape: tuple[int, ...], fan_in: int, rng: np.random.Generator) -> np.ndarray:
    """N(0, 1 / fan_in): LeCun et al. 1998 ("Efficient BackProp"), for tanh and sigmoid networks."""
    return rng.normal(0.0, np.sqrt(1.0 / fan_in), size=shape)


def uniform_fan_in(shape: tuple[int, ...], fan_in: int, rng: np.random.Generator) -> np.ndarray:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for nn.Linear and nn.Conv2d weights."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape)
