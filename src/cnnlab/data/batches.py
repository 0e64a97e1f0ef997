"""Batches cut from in-memory uint8 tensors: no per-sample Python on the hot path.

The whole split lives on the training device as uint8 (MNIST's 60,000 images are 47 MB).
Each batch is one index_select, then conversion to float, padding, augmentation and
normalisation on the whole batch, on that device (the image policy of ``cnnlab.data.image``,
step 5).
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from cnnlab.data.datasets import ImageDataset
from cnnlab.data.image import normalise
from cnnlab.data.sharding import epoch_order, rank_part

# An augmentation takes a float batch (B, C, H, W) in [0, 1] and a generator and returns one
# of the same kind (the data issue's augmentations follow this signature).
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def prepare_batch(images: torch.Tensor, *, dtype: torch.dtype, pad: int, augment: Augment | None,
                  generator: torch.Generator, mean: torch.Tensor, std: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 (B, C, H, W) on the device -> padded, augmented, normalised float batch: the last
    step of the image policy, the same for every batch iterator (memory, files, shards)."""
    x = images.to(dtype).div_(255.0)
    if pad:
        x = F.pad(x, (pad,) * 4)
    if augment is not None:
        x = augment(x, generator)
    x = normalise(x, mean, std)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def worker_context(workers: int) -> str | None:
    """The start method of a loader's decoding workers: Linux's default ``fork``, except once
    torch.distributed has started (gloo/NCCL run their own threads, and a fork taken while one
    of them holds a lock can leave the worker hung for good, pytorch/pytorch#75147: one
    rank then stalls its peers until the collective timeout). ``forkserver`` forks from a
    clean single-threaded server instead."""
    if workers > 0 and torch.distributed.is_available() and torch.distributed.is_initialized():
        return "forkserver"
    return None


def check_plan(batch_size: int, *, rank: int, world_size: int, shuffle: bool, seed: int | None) -> None:
    """The arguments every batch iterator checks (a programming error, not a user's)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    if shuffle and world_size > 1 and seed is None:
        raise ValueError("shuffled batches of a distributed run need seed= (the same order on every rank)")


class BatchPlan:
    """How a pass over ``_total()`` images is cut into this rank's batches: the counting the
    in-memory :class:`Batches` and the streaming ``StreamBatches`` share (one home for it).
    Subclasses set ``batch_size``, ``shuffle``, ``drop_last``, ``rank``, ``world_size``,
    ``epoch`` and what :meth:`prepare` reads, and give ``_total`` and ``indices``."""

    batch_size: int
    shuffle: bool
    drop_last: bool
    rank: int
    world_size: int
    epoch: int

    def _total(self) -> int:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s order (0-based) for the next pass (with ``seed``)."""
        self.epoch = epoch

    def _count(self, n: int) -> int:
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __len__(self) -> int:
        """Batches this rank yields per pass."""
        if self.shuffle:
            return self._count(self._total() // self.world_size)
        return len(range(self.rank, self._count(self._total()), self.world_size))

    @property
    def num_images(self) -> int:
        """Images this rank yields per pass."""
        if self.shuffle:
            n = self._total() // self.world_size
            return len(self) * self.batch_size if self.drop_last else n
        return sum(len(r) for r in self._slices())

    def _slices(self) -> list[range]:
        """Unshuffled (evaluation): the single-process batches ``rank, rank + world_size, ...``."""
        n, size = self._total(), self.batch_size
        return [range(b * size, min((b + 1) * size, n)) for b in range(self.rank, self._count(n), self.world_size)]

    def _eval_indices(self) -> torch.Tensor:
        return torch.cat([torch.arange(r.start, r.stop) for r in self._slices()] or [torch.zeros(0, dtype=torch.int64)])

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> padded, augmented, normalised float batch."""
        return prepare_batch(images, dtype=self.dtype, pad=self.pad, augment=self.augment, generator=self.generator,
                             mean=self.mean, std=self.std, channels_last=self.channels_last)


class Batches(BatchPlan):
    """Iterate over ``dataset`` in batches of float tensors ready for the model.

    ``pad`` adds zeros around each image (LeNet-5's 32x32 input from MNIST's 28x28: pad 2).
    ``shuffle`` draws a new order each epoch: from ``seed`` and the epoch set by
    :meth:`set_epoch` when ``seed`` is given (what the trainer does: the same order on every
    rank, nothing to save for a resume), else from ``generator``. ``generator`` also drives
    ``augment``; the trainer saves its state in checkpoints.

    ``rank`` of ``world_size`` (distributed training, ``cnnlab.data.sharding``): shuffled
    batches come from ``order[rank::world_size]`` cut to the same length on every rank, so the
    ranks' b-th batches together are the single-process b-th batch of the global batch and
    every rank takes the same number of steps; unshuffled (evaluation) batches are the
    single-process batches ``rank, rank + world_size, ...``, whole, so each image is computed
    exactly as by one process, and :meth:`indices` says which images this rank yields.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        *,
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        drop_last: bool = False,
        pad: int = 0,
        augment: Augment | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        seed: int | None = None,
    ) -> None:
        check_plan(batch_size, rank=rank, world_size=world_size, shuffle=shuffle, seed=seed)
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.epoch = 0
        self.device = torch.device(device)
        self.images = dataset.images.to(self.device)
        self.labels = dataset.labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.pad = pad
        self.augment = augment
        self.generator = generator if generator is not None else torch.Generator()
        self.dtype = dtype
        self.channels_last = channels_last
        self.mean = torch.tensor(dataset.mean, device=self.device, dtype=dtype).view(1, -1, 1, 1)
        self.std = torch.tensor(dataset.std, device=self.device, dtype=dtype).view(1, -1, 1, 1)

    def _total(self) -> int:
        return len(self.images)

    def indices(self) -> torch.Tensor:
        """The dataset positions this rank yields in one pass, in order (int64, CPU)."""
        if self.shuffle:
            part = self._shuffled_part()
            return part[: self.num_images].cpu()
        return self._eval_indices()

    def _shuffled_part(self) -> torch.Tensor:
        n = len(self.images)
        if self.seed is not None:
            order = epoch_order(n, seed=self.seed, epoch=self.epoch)
        else:
            order = torch.randperm(n, generator=self.generator)
        return rank_part(order, rank=self.rank, world_size=self.world_size, drop_last=True).to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not self.shuffle:
            for r in self._slices():
                idx = slice(r.start, r.stop)
                yield self.prepare(self.images[idx]), self.labels[idx]
            return
        order = self._shuffled_part()
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.prepare(self.images.index_select(0, idx)), self.labels.index_select(0, idx)
