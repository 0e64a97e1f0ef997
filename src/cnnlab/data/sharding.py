"""Which images each rank of a distributed run sees: the one rule for every data path.

Every rank draws the epoch's order from the same-seeded data generator, so all ranks hold
the same order; rank ``r`` of ``W`` takes ``order[r::W]``. Strided rather than contiguous:
rank r's b-th batch of B images and the other ranks' b-th batches are then, together, the
single-process batch ``order[b*B*W : (b+1)*B*W]`` of the global batch B*W, which is what
makes a W-rank run follow the 1-rank run with the same global batch (Goyal et al. 2017,
Sec. 2.2: the per-worker batch is a slice of the global one).
"""

from __future__ import annotations

import torch


def shard_sizes(n: int, *, world_size: int, drop_last: bool) -> list[int]:
    """Images each rank gets out of ``n``. ``drop_last`` (training): all the same, n // W,
    so every rank takes the same number of steps; else (evaluation) every image once, the
    first n % W ranks one more."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    base, extra = divmod(n, world_size)
    return [base] * world_size if drop_last else [base + (r < extra) for r in range(world_size)]


def rank_part(order: torch.Tensor, *, rank: int, world_size: int, drop_last: bool) -> torch.Tensor:
    """Rank ``rank``'s part of the epoch's ``order`` (the same tensor on every rank)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    part = order[rank::world_size]
    if drop_last:
        part = part[: len(order) // world_size]
    return part


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s order: the same on every rank, independent of the data
    generator (which also drives augmentation and differs between ranks). DistributedSampler
    uses ``seed + epoch``; the multiplier keeps (seed 0, epoch 1) and (seed 1, epoch 0) apart."""
    return seed * 1_000_003 + epoch


def epoch_order(n: int, *, seed: int, epoch: int) -> torch.Tensor:
    """A random order of ``n`` images for epoch ``epoch``, a pure function of (seed, epoch):
    every rank computes the same one, and a resumed run needs nothing saved to redraw it."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))
