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

# An augmentation takes a float batch (B, C, H, W) in [0, 1] and a generator and returns one
# of the same kind (the data issue's augmentations follow this signature).
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class Batches:
    """Iterate over ``dataset`` in batches of float tensors ready for the model.

    ``pad`` adds zeros around each image (LeNet-5's 32x32 input from MNIST's 28x28: pad 2).
    ``shuffle`` draws a new order each epoch from ``generator``, whose state the trainer
    saves in checkpoints, so a resumed run sees the same batches as an uninterrupted one.
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
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
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

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_images(self) -> int:
        return len(self) * self.batch_size if self.drop_last else len(self.images)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> padded, augmented, normalised float batch."""
        x = images.to(self.dtype).div_(255.0)
        if self.pad:
            x = F.pad(x, (self.pad,) * 4)
        if self.augment is not None:
            x = self.augment(x, self.generator)
        x = normalise(x, self.mean, self.std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.images)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.device)
        else:
            order = None
        for b in range(len(self)):
            start = b * self.batch_size
            if order is None:
                idx = slice(start, start + self.batch_size)
                images, labels = self.images[idx], self.labels[idx]
            else:
                idx = order[start : start + self.batch_size]
                images, labels = self.images.index_select(0, idx), self.labels.index_select(0, idx)
            yield self.prepare(images), labels
