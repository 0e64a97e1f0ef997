"""What a run trains on: the config's dataset in memory or streamed, and its batches.

:func:`load_data` chooses the path (``cnnlab.data.stream.plan_data``: in memory when the
decoded images fit the memory budget, streamed from the files when not, or as forced by
``data_mode``) and loads the splits; :func:`make_batches` cuts them into batches with the
run's augmentation: on the stored batch in memory, or the crop at decode time and the rest on
the batch when streaming. Both follow one batch protocol (``cnnlab.data.Batches``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from cnnlab.data import Batches, ImageDataset, load_dataset, random_subset
from cnnlab.data.augment_policies import train_augment
from cnnlab.data.image import resize_and_crop, to_uint8_tensor
from cnnlab.data.shards import ShardBatches, ShardSplit, shard_splits
from cnnlab.data.stream import FileDataset, StreamBatches, default_workers, eval_transform, plan_data, stream_splits, train_transform
from cnnlab.errors import CnnlabError
from cnnlab.training.config import TrainConfig

Split = ImageDataset | FileDataset | ShardSplit
SHARDS = "shards:"  # a dataset name that is a folder written by `cnnlab data pack`


@dataclass(frozen=True)
class RunData:
    """The three splits and how they are held."""

    train: Split
    val: Split
    test: Split
    mode: str  # "memory" or "stream"
    note: str  # for the run header: the path chosen and why

    @property
    def sizes(self) -> tuple[int, int, int]:
        return len(self.train), len(self.val), len(self.test)


def load_data(config: TrainConfig, *, input_size: int) -> RunData:
    """The config's train, val and test splits (train cut to ``train_subset``), in memory or
    as files; ``input_size`` (the model's input side) is the streamed crop when the config
    sets no ``crop_size``."""
    plan = plan_data(config.data, config.data_root, mode=config.data_mode, memory_budget=config.memory_budget)
    if plan.mode == "stream":
        size = config.crop_size or config.image_size or input_size
        workers = default_workers() if config.workers is None else config.workers
        note = f"{plan.reason}; {workers} decoding worker(s), {size}x{size} crops"
        if config.data.startswith(SHARDS):
            if config.train_subset is not None:
                raise CnnlabError(f"train_subset cannot be used when streaming tar shards (got {config.train_subset}); "
                                  f"pack the subset, or use data_mode=memory")
            train, val, test = shard_splits(config.data[len(SHARDS):], size=size, val_size=config.val_size or 0)
            return RunData(train, val, test, "stream", note)
        train, val, test = stream_splits(config.data, config.data_root, size=size, val_size=config.val_size,
                                         seed=config.seed, train_subset=config.train_subset)
        return RunData(train, val, test, "stream", note)
    train = load_dataset(config.data, "train", config.data_root, val_size=config.val_size, seed=config.seed)
    val = load_dataset(config.data, "val", config.data_root, val_size=config.val_size, seed=config.seed)
    test = load_dataset(config.data, "test", config.data_root)
    if config.train_subset is not None:
        if not 0 < config.train_subset <= len(train):
            raise CnnlabError(f"train_subset must be in [1, {len(train)}], got {config.train_subset}")
        train = random_subset(train, config.train_subset, seed=config.seed + 1)  # not the hold-out's seed
    note = plan.reason
    if config.image_size is not None:
        old = "x".join(map(str, train.image_size[1:]))
        train, val, test = (resized(d, config.image_size) for d in (train, val, test))
        note += f"; images resized from {old} to {config.image_size}x{config.image_size} (image_size)"
    return RunData(train, val, test, "memory", note)


def resized(dataset: ImageDataset, size: int) -> ImageDataset:
    """``dataset`` with every image resized by the image policy's rule (shorter side to
    ``size``, centre ``size`` x ``size`` crop, bilinear: ``cnnlab.data.image.resize_and_crop``),
    for a model built for another input size than the dataset's (``image_size``; MNIST's
    28x28 for AlexNet's 224). Mean and std stay the training split's (resizing barely moves them)."""
    if tuple(dataset.image_size[1:]) == (size, size):
        return dataset
    images = [to_uint8_tensor(resize_and_crop(to_image(x), (size, size))) for x in dataset.images]
    empty = torch.zeros((0, dataset.image_size[0], size, size), dtype=torch.uint8)
    return replace(dataset, images=torch.stack(images) if images else empty)


def to_image(x: torch.Tensor):
    """A uint8 (C, H, W) tensor as a Pillow image (mode L or RGB)."""
    from PIL import Image

    array = x.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def make_batches(
    config: TrainConfig,
    dataset: Split,
    *,
    train: bool,
    device: torch.device,
    pad: int,
    generator: torch.Generator,
    rank: int = 0,
    world_size: int = 1,
) -> Batches | StreamBatches | ShardBatches:
    """Training (shuffled, augmented) or evaluation batches of ``dataset`` for this rank."""
    batch_size = config.batch_size if train else config.eval_batch_size
    streamed = isinstance(dataset, (FileDataset, ShardSplit))
    augment = None
    if train:
        augment = train_augment(config.augment, dataset, crop_size=config.crop_size, auto_augment=config.auto_augment,
                                random_erase=config.random_erase, crop_done=streamed)
    if isinstance(dataset, ShardSplit):
        channels, size = dataset.image_size[0], dataset.image_size[-1]
        transform = train_transform(config.augment, size, channels=channels) if train else eval_transform(size, channels=channels)
        return ShardBatches(dataset.shards, batch_size, transform=transform, mean=dataset.mean, std=dataset.std,
                            device=device, shuffle=train, augment=augment, generator=generator,
                            workers=default_workers() if config.workers is None else config.workers, rank=rank,
                            world_size=world_size, seed=config.seed, pad=pad, channels_last=config.channels_last)
    if not streamed:
        return Batches(dataset, batch_size, device=device, shuffle=train, pad=pad, augment=augment, generator=generator,
                       channels_last=config.channels_last, rank=rank, world_size=world_size, seed=config.seed)
    channels, size = dataset.image_size[0], dataset.image_size[-1]
    transform = train_transform(config.augment, size, channels=channels) if train else eval_transform(size, channels=channels)
    return StreamBatches(dataset, batch_size, transform=transform, workers=config.workers, device=device, shuffle=train,
                         pad=pad, augment=augment, generator=generator, channels_last=config.channels_last, rank=rank,
                         world_size=world_size, seed=config.seed)
