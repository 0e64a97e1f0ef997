"""The sequential container and the two networks ``cnnlab scratch-train`` trains.

``Sequential.forward`` runs the layers in order; ``Sequential.backward`` runs their backward
passes in reverse: backpropagation is the chain rule applied layer by layer, from the loss
back to the input.
"""

from __future__ import annotations

import numpy as np

from cnnlab.scratch.init import lecun_normal
from cnnlab.scratch.layers import (
    AvgPool2d,
    Conv2d,
    Flatten,
    Layer,
    Linear,
    Parameter,
    ReLU,
    Tanh,
)


class Sequential(Layer):
    """Layers applied one after the other; parameters are named ``"<index>.<name>"``."""

    def __init__(self, *layers: Layer):
        self.layers = list(layers)

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
        return grad_out

    def params(self) -> dict[str, Parameter]:
        return {f"{i}.{name}": p for i, layer in enumerate(self.layers) for name, p in layer.params().items()}

    def buffers(self) -> dict[str, np.ndarray]:
        return {f"{i}.{name}": b for i, layer in enumerate(self.layers) for name, b in layer.buffers().items()}

    def train(self, mode: bool = True) -> "Sequential":
        """Training mode (Dropout drops, BatchNorm uses batch statistics) or, with False, inference."""
        self.training = mode
        for layer in self.layers:
            if isinstance(layer, Sequential):
                layer.train(mode)
            else:
                layer.training = mode
        return self

    def eval(self) -> "Sequential":
        return self.train(False)

    def astype(self, dtype: type) -> "Sequential":
        """Cast parameters, gradients and buffers (float64 for checking, float32 for speed)."""
        for p in self.params().values():
            p.data, p.grad = p.data.astype(dtype), p.grad.astype(dtype)
        for layer in self.layers:
            if isinstance(layer, Sequential):
                layer.astype(dtype)
                continue
            for name, buf in layer.buffers().items():
                setattr(layer, name, buf.astype(dtype))
        return self

    def num_params(self) -> int:
        return sum(p.data.size for p in self.params().values())

    def __repr__(self) -> str:
        return "Sequential(\n" + "".join(f"  ({i}) {layer!r}\n" for i, layer in enumerate(self.layers)) + ")"


def mlp(*, hidden: int = 300, num_classes: int = 10, in_features: int = 784, seed: int = 0) -> Sequential:
    """Flatten, one ReLU hidden layer, linear output: LeCun et al. 1998's "2-layer NN, 300 HU"."""
    rng = np.random.default_rng(seed)
    return Sequential(
        Flatten(),
        Linear(in_features, hidden, rng=rng),  # He init for the ReLU layer
        ReLU(),
        Linear(hidden, num_classes, rng=rng, init=lecun_normal),  # logits: no ReLU follows
    )


def lenet5(*, num_classes: int = 10, in_chans: int = 1, seed: int = 0) -> Sequential:
    """LeNet-5 (LeCun et al. 1998) as ``cnnlab.models.lenet.lenet5``'s default: tanh, average pooling,
    full C3 connections, 61,706 parameters. C1 pads the 28x28 digit by 2, the paper's 32x32 input."""
    rng = np.random.default_rng(seed)
    return Sequential(
        Conv2d(in_chans, 6, 5, padding=2, rng=rng, init=lecun_normal),  # C1 (B, 6, 28, 28)
        Tanh(),
        AvgPool2d(2),  # S2 (B, 6, 14, 14)
        Conv2d(6, 16, 5, rng=rng, init=lecun_normal),  # C3 (B, 16, 10, 10)
        Tanh(),
        AvgPool2d(2),  # S4 (B, 16, 5, 5)
        Conv2d(16, 120, 5, rng=rng, init=lecun_normal),  # C5 (B, 120, 1, 1)
        Tanh(),
        Flatten(),
        Linear(120, 84, rng=rng, init=lecun_normal),  # F6
        Tanh(),
        Linear(84, num_classes, rng=rng, init=lecun_normal),  # output logits
    )


MODELS = {"mlp": mlp, "lenet5": lenet5}
