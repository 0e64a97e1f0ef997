"""What a run trains on: the config's dataset in memory or streamed, and its batches.

:func:`load_data` chooses the path (``cnnlab.data.stream.plan_data``: in memory when the
decoded images fit the memory budget, streamed from the files when not, or as forced by
``data_mode``) and loads the splits; :func:`make_batches` cuts them into batches with the
run's augmentation: on the stored batch in memory, or the crop at decode time and the rest on
the batch when streaming. Both follow one batch protocol (``cnnlab.data.Batches``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cnnlab.data import Batches, ImageDataset, load_dataset, random_subset
from cnnlab.data.augment_policies import train_augment
from cnnlab.data.stream import FileDataset, StreamBatches, default_workers, eval_transform, plan_data, stream_splits, train_transform
from cnnlab.errors import CnnlabError
from cnnlab.training.config import TrainConfig

Split = ImageDataset | FileDataset


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
        size = config.crop_size or input_size
        train, val, test = stream_splits(config.data, config.data_root, size=size, val_size=config.val_size,
                                         seed=config.seed, train_subset=config.train_subset)
        workers = default_workers() if config.workers is None else config.workers
        return RunData(train, val, test, "stream", f"{plan.reason}; {workers} decoding worker(s), {size}x{size} crops")
    train = load_dataset(config.data, "train", config.data_root, val_size=config.val_size, seed=config.seed)
    val = load_dataset(config.data, "val", config.data_root, val_size=config.val_size, seed=config.seed)
    test = load_dataset(config.data, "test", config.data_root)
    if config.train_subset is not None:
        if not 0 < config.train_subset <= len(train):
            raise CnnlabError(f"train_subset must be in [1, {len(train)}], got {config.train_subset}")
        train = random_subset(train, config.train_subset, seed=config.seed + 1)  # not the hold-out's seed
    return RunData(train, val, test, "memory", plan.reason)


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
) -> Batches | StreamBatches:
    """Training (shuffled, augmented) or evaluation batches of ``dataset`` for this rank."""
    batch_size = config.batch_size if train else config.eval_batch_size
    streamed = isinstance(dataset, FileDataset)
    augment = None
    if train:
        augment = train_augment(config.augment, dataset, crop_size=config.crop_size, auto_augment=config.auto_augment,
                                random_erase=config.random_erase, crop_done=streamed)
    if not streamed:
        return Batches(dataset, batch_size, device=device, shuffle=train, pad=pad, augment=augment, generator=generator,
                       channels_last=config.channels_last, rank=rank, world_size=world_size, seed=config.seed)
    channels, size = dataset.image_size[0], dataset.image_size[-1]
    transform = train_transform(config.augment, size, channels=channels) if train else eval_transform(size, channels=channels)
    return StreamBatches(dataset, batch_size, transform=transform, workers=config.workers, device=device, shuffle=train,
                         pad=pad, augment=augment, generator=generator, channels_last=config.channels_last, rank=rank,
                         world_size=world_size, seed=config.seed)
