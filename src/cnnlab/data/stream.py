"""The streaming path: image files decoded per image in DataLoader worker processes.

Used when a dataset's decoded size does not fit the memory budget (ImageNet: 1.28M images,
hundreds of GB decoded), or when asked (``data_mode="stream"``). Per image, in a worker:
decode (the image policy's :func:`~cnnlab.data.image.decode_image`), then the one step that
must happen before images share a size, the crop of the training policy
(``cnnlab.data.augment_policies.POLICIES``):

- ``rrc``: random-resized crop, 8%-100% of the area, aspect ratio 3/4-4/3 (Szegedy et al.
  2015, Sec. 6), ten tries then a centre crop, as the common reference implementation does;
- ``scale``: shorter side S uniform in the policy's range (VGG's scale jittering, S in
  [256, 512]; ResNet's [256, 480]; AlexNet's fixed 256 with the centre 256x256 kept), then a
  random crop of the output size;
- evaluation: shorter side 256, centre 224 (the ratio 0.875 for other sizes); for 10-crop
  evaluation the whole 256x256 centre, whose ten 224 views ``cnnlab.data.tta`` cuts.

Everything else (flips, PCA lighting, colour, TrivialAugment, erasing, normalisation) is done
on whole batches on the training device, as on the in-memory path. Each image's random crop
is seeded from the epoch's seed and the image's index, so the same seed gives the same
images whatever the number of workers.

A file that cannot be decoded is skipped and counted (one line per epoch names the first);
it never stops a worker. Workers are persistent across epochs, batches are pinned for CUDA
and prefetched (``PREFETCH`` per worker).

Rank ``r`` of ``W`` reads ``order[r::W]`` of each epoch's order (``cnnlab.data.sharding``).
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np
import torch

from cnnlab.data.batches import Augment, BatchPlan, check_plan, worker_context
from cnnlab.data.datasets import DatasetSpec, get_dataset_spec
from cnnlab.data.image import (
    decode_image,
    decode_upload,
    resize_and_crop,
    to_uint8_tensor,
)
from cnnlab.data.root import data_root
from cnnlab.data.sharding import epoch_order, rank_part
from cnnlab.errors import CnnlabError, DataError

DATA_MODES = ("auto", "memory", "stream")  # --data-mode
MEMORY_FRACTION = 0.25  # default memory budget: this share of the machine's RAM
EVAL_RATIO = 0.875  # evaluation: resize to size / 0.875 (224 -> 256), centre crop `size`
PREFETCH = 4  # batches each worker keeps ready
STATS_SAMPLE = 500  # images decoded to estimate a streamed dataset's mean and std
HEADER_SAMPLE = 64  # image headers read to estimate the decoded size


# --- sizes and the memory budget ----------------------------------------------------------------

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def parse_size(text: str) -> int:
    """``"8GB"``, ``"500 MB"``, ``"1.5GiB"``, ``"4096"`` -> bytes (KB/MB/GB decimal, KiB/MiB/GiB binary)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).upper() if m else None
    if m is None or unit not in _UNITS:
        raise CnnlabError(f"expected a size such as 8GB, 500MB or 1.5GiB, got {text!r}")
    value = int(float(m.group(1)) * _UNITS[unit])
    if value <= 0:
        raise CnnlabError(f"a size must be > 0, got {text!r}")
    return value


def format_size(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def total_ram() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# --- datasets as files --------------------------------------------------------------------------


@dataclass
class FileDataset:
    """A split as image files: what the streaming path reads. Has the attributes of an
    :class:`~cnnlab.data.ImageDataset` that training and the run folder use, but no pixels."""

    name: str
    split: str
    paths: np.ndarray  # (N,) bytes: one buffer, so forked workers do not copy it page by page
    labels: torch.Tensor  # (N,) int64
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: tuple[int, int, int]  # (channels, size, size) of the evaluation batches
    source: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def path(self, index: int) -> str:
        return self.paths[index].decode()

    def subset(self, indices: torch.Tensor, split: str | None = None) -> "FileDataset":
        pick = indices.numpy()
        return replace(self, paths=self.paths[pick], labels=self.labels[indices], split=split or self.split)

    def __repr__(self) -> str:
        c, h, w = self.image_size
        return f"FileDataset({self.name!r}, split={self.split!r}, {len(self):,} image files, batches of {c}x{h}x{w}, {self.num_classes} classes)"


_LISTED: dict[tuple[str, str, str], tuple[list[str], torch.Tensor, str]] = {}


def list_files(name: str, root: str | os.PathLike | None, split: str) -> tuple[list[str], torch.Tensor, str]:
    """(paths, labels, source) of a dataset's canonical ``train`` or ``test`` split, listed
    once per process."""
    spec = get_dataset_spec(name)
    if spec.files is None:
        raise DataError(
            f"{name} cannot be streamed: only image-folder datasets (imagenet, imagenette, folder:PATH) and shard packs (shards:PATH) have files "
            f"to stream; use data_mode=memory"
        )
    root_path = data_root(root)
    key = (name, str(root_path), split)
    if key not in _LISTED:
        _LISTED[key] = spec.files(root_path, split)
    return _LISTED[key]


def _sample(n: int, k: int, seed: int) -> list[int]:
    return sorted(torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: min(n, k)].tolist())


def _headers(paths: list[str]) -> list[tuple[int, int, str]]:
    from PIL import Image

    out = []
    for p in paths:
        try:
            with Image.open(p) as im:
                out.append((im.width, im.height, im.mode))
        except Exception:  # any Pillow failure: unreadable, ignored by the estimate
            continue
    return out


def estimate_decoded_bytes(name: str, root: str | os.PathLike | None) -> tuple[int, int]:
    """(images, bytes) the in-memory path would hold for train + test: the image count times
    the size the folder policy keeps (native when the sampled headers agree, else the median
    shorter side squared), from a seeded sample of headers."""
    total, nbytes = 0, 0
    for split in ("train", "test"):
        paths, _, _ = list_files(name, root, split)
        headers = _headers([paths[i] for i in _sample(len(paths), HEADER_SAMPLE, 0)])
        if not headers:
            raise DataError(f"{name} {split}: none of {min(len(paths), HEADER_SAMPLE)} sampled images could be read")
        channels = 1 if all(m in ("L", "1") for _, _, m in headers) else 3
        sizes = {(w, h) for w, h, _ in headers}
        if len(sizes) == 1:
            w, h = sizes.pop()
            pixels = w * h
        else:
            side = int(np.median([min(w, h) for w, h, _ in headers]))
            pixels = side * side
        total += len(paths)
        nbytes += len(paths) * channels * pixels
    return total, nbytes


@dataclass(frozen=True)
class DataPlan:
    """Which path a run's data takes, and why (the run header prints ``reason``)."""

    mode: str  # "memory" or "stream"
    reason: str


def plan_data(name: str, root: str | os.PathLike | None, *, mode: str = "auto", memory_budget: str | None = None) -> DataPlan:
    """In memory when the decoded size fits the budget (``memory_budget``, else
    ``MEMORY_FRACTION`` of RAM), streamed when not; ``mode`` "memory" or "stream" forces one."""
    if mode not in DATA_MODES:
        raise CnnlabError(f"unknown data mode {mode!r}; expected one of {', '.join(DATA_MODES)}")
    spec: DatasetSpec = get_dataset_spec(name)
    if mode == "memory":
        return DataPlan("memory", "in memory (data_mode=memory)")
    shards = name.startswith("shards:")
    if shards and mode == "stream":
        return DataPlan("stream", "streamed from tar shards, each rank reading its own share (data_mode=stream)")
    if spec.files is None and not shards:
        if mode == "stream":
            list_files(name, root, "train")  # raises the one-line reason
        return DataPlan("memory", "in memory (not an image-folder dataset)")
    if mode == "stream":
        return DataPlan("stream", "streamed from image files (data_mode=stream)")
    budget = parse_size(memory_budget) if memory_budget else int(MEMORY_FRACTION * total_ram())
    why = f"memory_budget {memory_budget}" if memory_budget else f"{MEMORY_FRACTION:.0%} of {format_size(total_ram())} RAM"
    if shards:
        from cnnlab.data.shards import decoded_bytes

        n, nbytes = decoded_bytes(name[len("shards:"):])
    else:
        n, nbytes = estimate_decoded_bytes(name, root)
    if nbytes <= budget:
        return DataPlan("memory", f"in memory: {n:,} images decode to ~{format_size(nbytes)}, within the budget {format_size(budget)} ({why})")
    source = "tar shards, each rank reading its own share" if shards else "image files"
    return DataPlan("stream", f"streamed from {source}: {n:,} images decode to ~{format_size(nbytes)}, over the budget {format_size(budget)} ({why})")


def _file_stats(dataset: FileDataset, channels: int, seed: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std estimated from ``STATS_SAMPLE`` training images, centre
    crops at 64 px (the in-memory path computes them exactly from every pixel)."""
    from cnnlab.data.datasets import channel_stats

    crops = []
    for i in _sample(len(dataset), STATS_SAMPLE, seed):
        try:
            crops.append(eval_transform(64, channels=channels)(dataset.path(i), 0))
        except DataError:
            continue
    if not crops:
        raise DataError(f"{dataset.name}: none of the sampled training images could be decoded")
    return channel_stats(torch.stack(crops))


def stream_splits(
    name: str,
    root: str | os.PathLike | None,
    *,
    size: int,
    val_size: int | None = None,
    seed: int = 0,
    train_subset: int | None = None,
) -> tuple[FileDataset, FileDataset, FileDataset]:
    """(train, val, test) as files, with the same seeded hold-out rule as ``load_dataset``;
    batches of evaluation images are ``size`` x ``size``."""
    spec = get_dataset_spec(name)
    root_path = data_root(root)
    paths, labels, source = list_files(name, root, "train")
    test_paths, test_labels, test_source = list_files(name, root, "test")
    headers = _headers([paths[i] for i in _sample(len(paths), HEADER_SAMPLE, 0)])
    channels = 1 if headers and all(m in ("L", "1") for _, _, m in headers) else 3
    classes = spec.classes_at(root_path)
    full = FileDataset(name, "trainval", np.array(paths, dtype=np.bytes_), labels, classes, (0.0,) * channels,
                       (1.0,) * channels, (channels, size, size), source)
    mean, std = _file_stats(full, channels, seed)
    full = replace(full, mean=mean, std=std)
    test = replace(full, split="test", paths=np.array(test_paths, dtype=np.bytes_), labels=test_labels, source=test_source)
    val, train = hold_out(full, spec.val_size if val_size is None else val_size, seed)
    if train_subset is not None:
        if not 0 < train_subset <= len(train):
            raise CnnlabError(f"train_subset must be in [1, {len(train)}], got {train_subset}")
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 1))[:train_subset]
        train = train.subset(pick.sort().values)
    return train, val, test


def hold_out(full: FileDataset, n_val: int, seed: int) -> tuple[FileDataset, FileDataset]:
    """(val, train) of the training files: ``load_dataset``'s seeded hold-out rule, so a
    streamed split holds the images the in-memory one does (when every file decodes)."""
    if not 0 <= n_val < len(full):
        raise CnnlabError(f"val_size must be in [0, {len(full)}), got {n_val}")
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed))
    return full.subset(order[:n_val].sort().values, "val"), full.subset(order[n_val:].sort().values, "train")


def file_split(
    name: str,
    root: str | os.PathLike | None,
    split: str,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    image_size: tuple[int, int, int],
    val_size: int | None = None,
    seed: int = 0,
) -> FileDataset:
    """One split (train, val, trainval or test) as files, for evaluating a trained model: its
    normalisation (``mean``, ``std``) and batch size (``image_size``) are the run's, so
    nothing but the file list is read here (the in-memory path decodes the training split
    for its statistics)."""
    from cnnlab.data.datasets import SPLITS

    if split not in SPLITS:
        raise CnnlabError(f"unknown split {split!r} for {name}; expected one of {', '.join(SPLITS)}")
    spec = get_dataset_spec(name)
    paths, labels, source = list_files(name, root, "test" if split == "test" else "train")
    full = FileDataset(name, "test" if split == "test" else "trainval", np.array(paths, dtype=np.bytes_), labels,
                       spec.classes_at(data_root(root)), tuple(mean), tuple(std), tuple(image_size), source)
    if split in ("test", "trainval"):
        return full
    val, train = hold_out(full, spec.val_size if val_size is None else val_size, seed)
    return val if split == "val" else train


# --- decode-time transforms (run in the workers) --------------------------------------------------


@dataclass(frozen=True)
class DecodeTransform:
    """Decode one file and crop it to ``size`` x ``size`` uint8 (C, size, size)."""

    kind: str  # "eval", "rrc", "scale", or "fit": the in-memory folder policy (shorter side to size, centre crop)
    size: int  # output side
    channels: int = 3
    resize: int = 256  # "eval": the shorter side before the centre crop
    area: tuple[float, float] = (0.08, 1.0)  # "rrc"
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # "rrc"
    sides: tuple[int, int] = (256, 256)  # "scale": S range, already scaled to `size`
    square: bool = False  # "scale": keep the centre square first (AlexNet)

    def box(self, width: int, height: int, rng: np.random.Generator) -> tuple[float, float, float, float]:
        """The source box (left, top, right, bottom) that is resized to the output."""
        short = min(width, height)
        if self.kind == "eval":
            side = self.size * short / self.resize
            left, top = (width - side) / 2, (height - side) / 2
            return left, top, left + side, top + side
        if self.kind == "scale":
            s = int(rng.integers(self.sides[0], self.sides[1] + 1))
            side = self.size * short / s  # the output crop, in source pixels
            x0, y0, w, h = 0.0, 0.0, float(width), float(height)
            if self.square:
                x0, y0, w, h = (width - short) / 2, (height - short) / 2, float(short), float(short)
            left = x0 + rng.uniform(0, max(w - side, 0.0))
            top = y0 + rng.uniform(0, max(h - side, 0.0))
            return left, top, left + side, top + side
        area = width * height
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * rng.uniform(*self.area)
            aspect = math.exp(rng.uniform(log_lo, log_hi))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
                return left, top, left + w, top + h
        # No draw fitted: the whole image, cut to the nearest allowed aspect ratio, centred.
        aspect = width / height
        w, h = width, height
        if aspect < self.ratio[0]:
            h = round(width / self.ratio[0])
        elif aspect > self.ratio[1]:
            w = round(height * self.ratio[1])
        left, top = (width - w) // 2, (height - h) // 2
        return left, top, left + w, top + h

    def __call__(self, path: str, seed: int) -> torch.Tensor:
        return self.crop(decode_image(path, self.channels), seed)

    def decode_bytes(self, data: bytes, seed: int) -> torch.Tensor:
        """The same for an image file's bytes (a record of a tar shard)."""
        return self.crop(decode_upload(data, self.channels).image, seed)

    def crop(self, img, seed: int) -> torch.Tensor:
        from PIL import Image

        if self.kind == "fit":  # exactly what the in-memory path stores (cnnlab.data.folders)
            return to_uint8_tensor(resize_and_crop(img, (self.size, self.size)))
        box = self.box(img.width, img.height, np.random.default_rng(seed))
        out = img.resize((self.size, self.size), Image.Resampling.BILINEAR, box=box)
        array = np.asarray(out, dtype=np.uint8).reshape(self.size, self.size, self.channels)
        return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def eval_transform(size: int, *, channels: int = 3, full: bool = False) -> DecodeTransform:
    """Shorter side to ``size / 0.875``, centre ``size`` crop; ``full``: the whole centre
    square of that side (for 10-crop evaluation)."""
    resize = round(size / EVAL_RATIO)
    return DecodeTransform("eval", resize if full else size, channels, resize=resize)


def fit_transform(size: int, *, channels: int = 3) -> DecodeTransform:
    """The in-memory size policy per file: shorter side to ``size`` and the centre ``size``
    square (an image already ``size`` x ``size`` is kept as decoded), so a streamed
    evaluation sees the pixels an in-memory one does."""
    return DecodeTransform("fit", size, channels)


def train_transform(preset: str, size: int, *, channels: int = 3) -> DecodeTransform:
    """The decode-time crop of augmentation preset ``preset`` at output ``size``: its
    policy's crop when it has one, else the evaluation crop (the preset then runs whole on
    the batches, as in memory)."""
    from cnnlab.data.augment_policies import POLICIES

    policy = POLICIES.get(preset)
    if policy is None:
        return eval_transform(size, channels=channels)
    if policy.crop == "rrc":
        return DecodeTransform("rrc", size, channels, area=policy.area, ratio=policy.ratio)
    k = size / policy.size  # the papers' S range is for 224 crops; scale it with the output
    sides = (round(policy.sides[0] * k), round(policy.sides[1] * k))
    return DecodeTransform("scale", size, channels, sides=sides, square=policy.square)


class _Decoder(torch.utils.data.Dataset):
    """Map-style dataset over (index, seed) keys; a file that fails gives None, not an error."""

    def __init__(self, paths: np.ndarray, labels: torch.Tensor, transform: DecodeTransform) -> None:
        self.paths, self.labels, self.transform = paths, labels.numpy(), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        try:
            return self.transform(self.paths[index].decode(), seed), int(self.labels[index]), index, None
        except Exception as e:  # a bad file must never kill a worker: report it and go on
            return None, int(self.labels[index]), index, str(e) if isinstance(e, DataError) else f"{type(e).__name__}: {e}"


def _collate(items):
    good = [it for it in items if it[0] is not None]
    bad = [(it[2], it[3]) for it in items if it[0] is None]
    if good:
        images = torch.stack([it[0] for it in good])
        labels = torch.tensor([it[1] for it in good], dtype=torch.int64)
    else:
        images, labels = torch.zeros(0, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64)
    return images, labels, bad


class _EpochSampler:
    """Batches of (index, seed) keys of the current epoch (set by StreamBatches per epoch)."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.keys: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return -(-len(self.keys) // self.batch_size)

    def __iter__(self):
        for start in range(0, len(self.keys), self.batch_size):
            yield self.keys[start : start + self.batch_size]


def default_workers() -> int:
    """Half the cores (the training process needs the rest), 1 to 8."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


class StreamBatches(BatchPlan):
    """Batches decoded from files by DataLoader workers, ready for the model: the streaming
    counterpart of :class:`~cnnlab.data.Batches`, with the same protocol (``len``,
    ``num_images``, ``set_epoch``, ``indices``, ``batch_size``; see /docs/distributed.md).

    ``transform``: the decode-time crop; ``augment``: what follows on whole batches on the
    device, drawing from ``generator``, which also gives each epoch's crop seed. Shuffled
    (training): the order of epoch ``e`` is ``epoch_order(n, seed, e)`` (the same on every
    rank; from ``generator`` when ``seed`` is None, single process only), this rank taking
    ``order[rank::world_size]`` cut to the same length on every rank. Unshuffled
    (evaluation): the single-process batches ``rank, rank + world_size, ...``, whole.
    ``workers`` 0 decodes in this process."""

    def __init__(
        self,
        dataset: FileDataset,
        batch_size: int,
        *,
        transform: DecodeTransform,
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        drop_last: bool = False,
        pad: int = 0,
        augment: Augment | None = None,
        generator: torch.Generator | None = None,
        workers: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        seed: int | None = None,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
        quiet: bool = False,
    ) -> None:
        check_plan(batch_size, rank=rank, world_size=world_size, shuffle=shuffle, seed=seed)
        self.dataset, self.batch_size, self.transform = dataset, batch_size, transform
        self.device = torch.device(device)
        self.shuffle, self.drop_last, self.pad, self.augment = shuffle, drop_last, pad, augment
        self.generator = generator if generator is not None else torch.Generator()
        self.workers = default_workers() if workers is None else workers
        self.rank, self.world_size, self.seed, self.epoch = rank, world_size, seed, 0
        self.dtype, self.channels_last, self.quiet = dtype, channels_last, quiet
        self.mean = torch.tensor(dataset.mean, device=self.device, dtype=dtype).view(1, -1, 1, 1)
        self.std = torch.tensor(dataset.std, device=self.device, dtype=dtype).view(1, -1, 1, 1)
        self.skipped: list[tuple[str, str]] = []  # (path, reason) of every image skipped so far
        self._sampler = _EpochSampler(batch_size)
        self._loader = torch.utils.data.DataLoader(
            _Decoder(dataset.paths, dataset.labels, transform),
            batch_sampler=self._sampler,
            num_workers=self.workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
            persistent_workers=self.workers > 0,
            prefetch_factor=PREFETCH if self.workers > 0 else None,
            multiprocessing_context=worker_context(self.workers),
        )

    def _total(self) -> int:
        return len(self.dataset)

    def indices(self) -> torch.Tensor:
        """The dataset positions this rank yields in one pass, in order (int64)."""
        if self.shuffle:
            if self.seed is None:
                raise ValueError("indices() of a shuffled pass needs seed= (else the order is drawn when iterating)")
            order = epoch_order(len(self.dataset), seed=self.seed, epoch=self.epoch)
            return rank_part(order, rank=self.rank, world_size=self.world_size, drop_last=True)[: self.num_images]
        return self._eval_indices()

    def epoch_keys(self) -> list[tuple[int, int]]:
        """This pass's (index, seed) keys for this rank; advances the generator."""
        if self.shuffle and self.seed is None:
            order = torch.randperm(len(self.dataset), generator=self.generator)
            part = rank_part(order, rank=0, world_size=1, drop_last=True)[: self.num_images]
        else:
            part = self.indices()
        epoch_seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        # Each image's crop depends on the pass and the image only, not on which worker decodes it.
        return [(i, (epoch_seed + 1_000_003 * i) % 2**63) for i in part.tolist()]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self._sampler.keys = self.epoch_keys()
        bad_now: list[tuple[str, str]] = []
        for images, labels, bad in self._loader:
            bad_now.extend((self.dataset.path(i), reason) for i, reason in bad)
            if len(labels) == 0:
                if self.world_size > 1:  # every rank must take the same steps
                    raise DataError(f"a whole batch of {self.batch_size} images could not be read (first: {bad_now[-1][0]})")
                continue
            non_blocking = self.device.type == "cuda"
            yield self.prepare(images.to(self.device, non_blocking=non_blocking)), labels.to(self.device, non_blocking=non_blocking)
        if bad_now:
            self.skipped.extend(bad_now)
            if not self.quiet:
                path, reason = bad_now[0]
                print(f"{self.dataset.name} {self.dataset.split}: skipped {len(bad_now)} unreadable image(s) this pass "
                      f"({len(self.skipped)} so far); first: {path}: {reason}", file=sys.stderr)

