"""Local response normalisation: Krizhevsky, Sutskever, Hinton 2012, "ImageNet Classification
with Deep Convolutional Neural Networks", NeurIPS, Section 3.3.
https://papers.nips.cc/paper/4824-imagenet-classification-with-deep-convolutional-neural-networks

Each activity a^i (channel i, one position) is divided by a sum over the n channels around it:

    b^i = a^i / (k + alpha * sum_{j = max(0, i - n/2)}^{min(N - 1, i + n/2)} (a^j)^2) ** beta

with the paper's k = 2, n = 5, alpha = 1e-4, beta = 0.75: "a form of lateral inhibition",
applied after the ReLU of conv1 and conv2.

Convention: here ``alpha`` multiplies the *sum* of squares, as in the paper's formula.
``torch.nn.LocalResponseNorm`` (like Caffe's LRN layer) multiplies the *mean*, alpha / n times
the sum, so the paper's layer is ``nn.LocalResponseNorm(n, alpha=n * alpha, beta=beta, k=k)``
there (alpha = 5e-4 for AlexNet). Ports that pass the paper's 1e-4 straight to those layers
normalise five times more weakly than the paper. The window is the same in both: n // 2
channels before channel i and (n - 1) // 2 after, clipped at the ends.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class LocalResponseNorm(nn.Module):
    """AlexNet's cross-channel normalisation, ``alpha`` scaling the sum of squares (paper)."""

    def __init__(self, size: int = 5, *, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"LRN size (channels in the window) must be >= 1, got {size}")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim < 3:
            raise ValueError(f"LRN expects (B, C, ...) input, got shape {tuple(x.shape)}")
        sq = x.pow(2).flatten(2).unsqueeze(1)  # (B, 1, C, H*W)
        # Zero-pad the channel axis so channel i's window is i - n//2 .. i + (n-1)//2, then
        # a (n x 1) average pool over (channel, position) gives the window mean; times n = sum.
        sq = F.pad(sq, (0, 0, self.size // 2, (self.size - 1) // 2))
        window_sum = F.avg_pool2d(sq, (self.size, 1), stride=1).squeeze(1) * self.size  # (B, C, H*W)
        denom = (self.k + self.alpha * window_sum).pow(self.beta)
        return x / denom.view_as(x)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
