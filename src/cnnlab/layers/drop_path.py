"""Stochastic depth (drop-path): Huang et al. 2016, "Deep Networks with Stochastic Depth".
https://arxiv.org/abs/1603.09382

In training, each sample's residual branch is zeroed with probability p and the survivors are
scaled by 1 / (1 - p), so the expected output is unchanged; in evaluation it is the identity.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask_shape = (x.shape[0],) + (1,) * (x.ndim - 1)  # one draw per sample
        mask = torch.empty(mask_shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"
