"""Tar shards in the WebDataset layout, for clusters: each rank reads big files sequentially.

``cnnlab data pack DATASET --out shards/ --shard-size 1GB`` writes, per split,
``<split>-000000.tar``, ... in which sample ``k`` is two members, ``k.<ext>`` (the image
file's bytes, unchanged) and ``k.cls`` (its label, decimal): the convention of WebDataset
(Aizman et al. 2019, "High Performance I/O For Large Scale Deep Learning"), so its tools
read our shards too. Samples are packed in a seeded random order (a shard holds every class).
``index.json``, written last, lists the classes and each shard's sample count and byte size:
a folder without it is an unfinished pack.

Read with the standard library's ``tarfile``, not the ``webdataset`` package: we need each
rank to take an exact, contiguous share of the epoch's records (so an epoch covers every
image once across ranks), which takes record counts per shard and seeking within a shard;
webdataset splits by whole shards (unequal shares, or repeats) and would add three
dependencies for a reader of a hundred lines.

Rank ``r`` of ``W``, epoch ``e``: the shards in ``epoch_order(shards, seed, e)`` (unshuffled
for evaluation) form one sequence of records, of which rank r reads the r-th contiguous
share (``shard_sizes``): its own shards, plus at most a part of one at each end; its DataLoader
workers split that share again into contiguous parts (``worker_parts``), and the main process
cuts what they decode into batches of exactly ``batch_size`` records, so every rank takes the
same number of steps. Training shuffles within a buffer of ``SHUFFLE_BUFFER`` records. A
shard that is shorter than its index says, or that ends inside a record, stops the run with
one line naming it.

``--data shards:DIR`` trains on a pack: in memory when it fits the memory budget (small packs),
else streamed through the normal loop (``ShardSplit``, ``shard_splits``; chosen by
``cnnlab.data.stream.plan_data``).
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from cnnlab.data.batches import BatchPlan, check_plan, worker_context
from cnnlab.data.files import atomic_write_text
from cnnlab.data.sharding import epoch_order, shard_sizes
from cnnlab.errors import CnnlabError, DataError

INDEX = "index.json"
SHUFFLE_BUFFER = 2000  # records a training rank shuffles among


# --- writing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackReport:
    out: Path
    shards: dict[str, int]  # split -> shard files written
    images: dict[str, int]  # split -> samples
    bytes: int


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def pack(name: str, out: str | os.PathLike, *, shard_size: int, root: str | os.PathLike | None = None, seed: int = 0,
         quiet: bool = False) -> PackReport:
    """Pack the train and test splits of image-folder dataset ``name`` into shards of at
    most ``shard_size`` bytes (a single larger image gets a shard of its own) in ``out``,
    which must be empty or new. Each shard is written under a temporary name and renamed;
    ``index.json`` last."""
    from cnnlab.data.datasets import get_dataset_spec
    from cnnlab.data.root import data_root
    from cnnlab.data.stream import list_files

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CnnlabError(f"--out {out} exists and is not an empty folder; shards go into a new or empty one")
    out.mkdir(parents=True, exist_ok=True)
    spec = get_dataset_spec(name)
    index: dict = {"dataset": name, "classes": list(spec.classes_at(data_root(root))), "splits": {}}
    total = 0
    for split in ("train", "test"):
        paths, labels, _ = list_files(name, root, split)
        order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed)).tolist()
        shards: list[dict] = []
        tar, tmp, count, size = None, None, 0, 0

        def close() -> None:
            nonlocal tar
            tar.close()
            final = out / f"{split}-{len(shards):06d}.tar"
            tmp.rename(final)
            shards.append({"file": final.name, "count": count, "bytes": final.stat().st_size})

        for key, i in enumerate(order):
            data = Path(paths[i]).read_bytes()
            record = len(data) + 2048  # two headers and padding
            if tar is not None and size + record > shard_size:
                close()
                tar = None
            if tar is None:
                tmp = out / f".{split}-{len(shards):06d}.tar.tmp-{os.getpid()}"
                tar, count, size = tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT), 0, 0
            ext = Path(paths[i]).suffix.lower().lstrip(".") or "jpg"
            _add(tar, f"{key:09d}.{ext}", data)
            _add(tar, f"{key:09d}.cls", str(int(labels[i])).encode())
            count, size = count + 1, size + record
        if tar is not None:
            close()
        index["splits"][split] = shards
        total += sum(s["bytes"] for s in shards)
        if not quiet:
            print(f"{split}: {len(paths):,} images in {len(shards)} shard(s)", file=sys.stderr)
    atomic_write_text(out / INDEX, json.dumps(index, indent=1) + "\n")
    return PackReport(out, {s: len(v) for s, v in index["splits"].items()},
                      {s: sum(x["count"] for x in v) for s, v in index["splits"].items()}, total)


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardSet:
    """One split of a packed dataset."""

    folder: Path
    split: str
    files: tuple[str, ...]
    counts: tuple[int, ...]
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return sum(self.counts)


def open_shards(folder: str | os.PathLike, split: str) -> ShardSet:
    """Read ``index.json`` and check every shard of ``split`` is whole (its recorded size)."""
    folder = Path(folder)
    try:
        index = json.loads((folder / INDEX).read_text())
    except FileNotFoundError:
        raise DataError(f"{folder} has no {INDEX}: not a finished shard pack (cnnlab data pack ... --out {folder})") from None
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{folder / INDEX} is unreadable: {e}") from None
    if split not in index.get("splits", {}):
        raise DataError(f"{folder / INDEX} has no split {split!r}; it has {', '.join(index.get('splits', {}))}")
    entries = index["splits"][split]
    for e in entries:
        path = folder / e["file"]
        if not path.is_file():
            raise DataError(f"shard {path} is missing ({INDEX} lists it)")
        if path.stat().st_size != e["bytes"]:
            raise DataError(f"shard {path} is {path.stat().st_size:,} bytes, {INDEX} says {e['bytes']:,}: it is truncated or was changed; re-pack it")
    return ShardSet(folder, split, tuple(e["file"] for e in entries), tuple(e["count"] for e in entries), tuple(index["classes"]))


def iter_records(path: Path, start: int, stop: int) -> Iterator[tuple[int, bytes, int]]:
    """(key, image bytes, label) of records ``start``..``stop - 1`` of one shard, read in
    order (earlier records are skipped over by their headers). A shard that ends inside a
    record raises one DataError line."""
    done = 0
    try:
        with tarfile.open(path, "r:") as tar:
            pending: dict[str, bytes] = {}
            for member in tar:
                stem, _, ext = member.name.partition(".")
                if done < start:  # skip: headers only
                    if ext == "cls":
                        done += 1
                    continue
                if done >= stop:
                    return
                data = tar.extractfile(member).read()
                if len(data) != member.size:
                    raise EOFError("short read")
                if ext == "cls":
                    image = pending.pop(stem, None)
                    if image is None:
                        raise DataError(f"shard {path}: record {stem} has a label but no image")
                    yield int(stem), image, int(data)
                    done += 1
                else:
                    pending[stem] = data
        if done < stop:
            raise EOFError("fewer records than the index says")
    except (tarfile.ReadError, EOFError, OSError) as e:
        raise DataError(f"shard {path} ends in the middle of a record (after {done} whole records): the file is truncated ({e}); re-pack it") from None


def rank_ranges(counts: tuple[int, ...], order: list[int], *, rank: int, world_size: int, drop_last: bool) -> list[tuple[int, int, int]]:
    """(shard, start, stop) pieces of rank ``rank``'s contiguous share of the records of the
    shards taken in ``order``."""
    sizes = shard_sizes(sum(counts), world_size=world_size, drop_last=drop_last)
    lo = sum(sizes[:rank])
    hi = lo + sizes[rank]
    pieces, offset = [], 0
    for shard in order:
        a, b = max(lo, offset), min(hi, offset + counts[shard])
        if a < b:
            pieces.append((shard, a - offset, b - offset))
        offset += counts[shard]
    return pieces


def worker_parts(pieces: list[tuple[int, int, int]], *, worker: int, workers: int) -> list[tuple[int, int, int]]:
    """DataLoader worker ``worker``'s contiguous share of a rank's records (the ``pieces``
    taken as one sequence), so each worker reads sequentially, the shares add up to the
    rank's records exactly, and their sizes depend on the rank's count alone (equal on
    every rank of a training epoch)."""
    total = sum(b - a for _, a, b in pieces)
    lo, hi = total * worker // workers, total * (worker + 1) // workers
    mine, offset = [], 0
    for shard, a, b in pieces:
        x, y = max(lo, offset), min(hi, offset + b - a)
        if x < y:
            mine.append((shard, a + x - offset, a + y - offset))
        offset += b - a
    return mine


class _ShardStream(torch.utils.data.IterableDataset):
    """The records of this epoch's pieces, one item per record (None for a corrupt image)."""

    def __init__(self, shards: ShardSet, transform) -> None:
        self.shards, self.transform = shards, transform
        self.pieces: list[tuple[int, int, int]] = []
        self.shuffle_seed: int | None = None
        self.crop_seed = 0

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        mine = worker_parts(self.pieces, worker=wid, workers=nw)
        rng = np.random.default_rng(None if self.shuffle_seed is None else self.shuffle_seed + wid)
        buffer: list = []
        for shard, lo, hi in mine:
            try:
                for key, data, label in iter_records(self.shards.folder / self.shards.files[shard], lo, hi):
                    item = (key, data, label)
                    if self.shuffle_seed is None:
                        yield self._decode(item)
                        continue
                    buffer.append(item)
                    if len(buffer) >= SHUFFLE_BUFFER:
                        yield self._decode(buffer.pop(int(rng.integers(len(buffer)))))
            except DataError as e:
                yield None, -1, -1, str(e).splitlines()[0], True  # fatal: the main process raises it
                return
        while buffer:
            yield self._decode(buffer.pop(int(rng.integers(len(buffer)))))

    def _decode(self, item):
        key, data, label = item
        try:
            return self.transform.decode_bytes(data, (self.crop_seed + 1_000_003 * key) % 2**63), label, key, None, False
        except Exception as e:  # a corrupt image: skipped and counted, never a crash
            return None, label, key, str(e), False


def _collate(items):
    fatal = [it[3] for it in items if it[4]]
    good = [it for it in items if it[0] is not None]
    bad = [(it[2], it[3]) for it in items if it[0] is None and not it[4]]
    images = torch.stack([it[0] for it in good]) if good else torch.zeros(0, dtype=torch.uint8)
    labels = torch.tensor([it[1] for it in good], dtype=torch.int64)
    keys = torch.tensor([it[2] for it in good], dtype=torch.int64)
    # Where each readable image sits among the hand-over's records (the batches are cut by record).
    slots = torch.tensor([i for i, it in enumerate(x for x in items if not x[4]) if it[0] is not None], dtype=torch.int64)
    return images, labels, keys, slots, bad, fatal, len(items) - len(fatal)


class ShardBatches(BatchPlan):
    """Batches read from tar shards by DataLoader workers: the batch protocol of
    ``cnnlab.data.Batches`` (``len``, ``num_images``, ``set_epoch``, ``indices``,
    ``batch_size``), for rank ``rank`` of ``world_size``. ``mean``/``std`` normalise;
    ``augment`` runs on the batch, on ``device``.

    Workers hand over what they decoded; this process cuts it into batches of exactly
    ``batch_size`` records (the last one shorter), counting a skipped corrupt image as a
    record, so the number of batches is ``ceil(records / batch_size)`` on every rank
    whatever the workers and the damage (DDP needs equal steps), and every batch but the
    last is whole unless an image in it could not be read."""

    def __init__(self, shards: ShardSet, batch_size: int, *, transform, mean, std, device="cpu", shuffle: bool = False,
                 augment=None, generator: torch.Generator | None = None, workers: int = 1, rank: int = 0,
                 world_size: int = 1, seed: int = 0, pad: int = 0, dtype: torch.dtype = torch.float32,
                 channels_last: bool = False, quiet: bool = False) -> None:
        check_plan(batch_size, rank=rank, world_size=world_size, shuffle=shuffle, seed=seed)
        self.shards, self.batch_size, self.shuffle, self.drop_last = shards, batch_size, shuffle, False
        self.device = torch.device(device)
        self.augment, self.pad, self.quiet = augment, pad, quiet
        self.dtype, self.channels_last = dtype, channels_last
        self.generator = generator if generator is not None else torch.Generator()
        self.rank, self.world_size, self.seed, self.epoch = rank, world_size, seed, 0
        self.mean = torch.tensor(mean, device=self.device, dtype=dtype).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=self.device, dtype=dtype).view(1, -1, 1, 1)
        self.skipped: list[tuple[int, str]] = []
        self._stream = _ShardStream(shards, transform)
        self._loader = torch.utils.data.DataLoader(
            self._stream, batch_size=batch_size, num_workers=workers, collate_fn=_collate,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
            multiprocessing_context=worker_context(workers),
        )
        self._keys: list[int] = []

    def pieces(self) -> list[tuple[int, int, int]]:
        n = len(self.shards.counts)
        order = epoch_order(n, seed=self.seed, epoch=self.epoch).tolist() if self.shuffle else list(range(n))
        return rank_ranges(self.shards.counts, order, rank=self.rank, world_size=self.world_size, drop_last=self.shuffle)

    @property
    def num_images(self) -> int:
        return sum(b - a for _, a, b in self.pieces())

    def __len__(self) -> int:
        return -(-self.num_images // self.batch_size)

    def indices(self) -> torch.Tensor:
        """Keys (positions in the packed split) of the images yielded in the last pass."""
        return torch.tensor(self._keys, dtype=torch.int64)

    def _raw(self):
        """(uint8 images, labels, keys, slots, records) as the workers hand them over."""
        for images, labels, keys, slots, bad, fatal, records in self._loader:
            if fatal:
                raise DataError(fatal[0])
            self.skipped.extend(bad)
            if bad and not self.quiet:
                print(f"skipped {len(bad)} unreadable image(s) in the shards (first: record {bad[0][0]}: {bad[0][1]})", file=sys.stderr)
            yield images, labels, keys, slots, records

    def __iter__(self):
        self._stream.pieces = self.pieces()
        self._stream.shuffle_seed = int(torch.randint(0, 2**62, (1,), generator=self.generator)) if self.shuffle else None
        self._stream.crop_seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        self._keys = []
        parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        slots = 0  # records in `parts`, readable or not
        for images, labels, keys, where, records in self._raw():
            offset = 0
            while offset < records:  # cut at record counts, so skipped images never shift the batches
                take = min(records - offset, self.batch_size - slots)
                good = (where >= offset) & (where < offset + take)  # the readable ones of these records
                parts.append((images[good], labels[good], keys[good]))
                slots, offset = slots + take, offset + take
                if slots == self.batch_size:
                    yield from self._emit(parts)
                    parts, slots = [], 0
        if slots:
            yield from self._emit(parts)

    def _emit(self, parts):
        labels = torch.cat([p[1] for p in parts])
        if len(labels) == 0:
            if self.world_size > 1:  # every rank must take the same steps
                raise DataError(f"a whole batch of {self.batch_size} records in the shards could not be read")
            return
        self._keys.extend(torch.cat([p[2] for p in parts]).tolist())
        images = torch.cat([p[0] for p in parts if len(p[1])]).to(self.device)  # a hand-over of only bad records has no image shape
        yield self.prepare(images), labels.to(self.device)


# --- a packed folder streamed through the training loop ------------------------------------

STATS_SAMPLE = 500  # records decoded to estimate a streamed pack's mean and std
HEADER_SAMPLE = 64  # records whose image header sizes the decoded pack


@dataclass(frozen=True)
class ShardSplit:
    """A split of a pack as the training loop holds it when streaming: the attributes of an
    ``ImageDataset`` that training and the run folder use (``name``, ``classes``, ``mean``,
    ``std``, ``image_size`` of the batches), no pixels."""

    name: str
    split: str
    shards: ShardSet
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: tuple[int, int, int]  # (channels, size, size) of the batches
    source: str = ""

    @property
    def classes(self) -> tuple[str, ...]:
        return self.shards.classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.shards)


def shard_split(folder: str | os.PathLike, split: str, *, mean, std, image_size) -> ShardSplit:
    """One split of a pack for evaluating a trained model, with the run's normalisation and
    batch size: ``test``, or ``train`` / ``trainval`` (a pack holds no hold-out)."""
    if split not in ("train", "trainval", "test"):
        raise CnnlabError(f"a shard pack has the splits train and test, not {split!r}")
    folder = Path(folder).expanduser()
    shards = open_shards(folder, "test" if split == "test" else "train")
    return ShardSplit(f"shards:{folder}", split, shards, tuple(mean), tuple(std), tuple(image_size), f"{folder}/{shards.split}-*.tar")


def _first_records(shards: ShardSet, k: int) -> Iterator[bytes]:
    """The image bytes of the first ``k`` records of the split, in pack order (which is a
    seeded random order of the images, so a fair sample)."""
    left = k
    for file, count in zip(shards.files, shards.counts):
        if left <= 0:
            return
        for _, data, _ in iter_records(shards.folder / file, 0, min(count, left)):
            yield data
        left -= min(count, left)


def sample_headers(shards: ShardSet, k: int = HEADER_SAMPLE) -> list[tuple[int, int, str]]:
    """(width, height, mode) of the first ``k`` readable records' images (headers only)."""
    from PIL import Image

    out = []
    for data in _first_records(shards, k):
        try:
            with Image.open(io.BytesIO(data)) as im:
                out.append((im.width, im.height, im.mode))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):  # Pillow's ways to refuse a file
            continue  # an unreadable record: left out of the estimate
    return out


def decoded_bytes(folder: str | os.PathLike) -> tuple[int, int]:
    """(images, bytes) the in-memory path would hold for a pack's train + test splits: the
    record count times the decoded size of a sample of headers (as for image folders)."""
    images = nbytes = 0
    for split in ("train", "test"):
        shards = open_shards(Path(folder).expanduser(), split)
        headers = sample_headers(shards)
        if not headers:
            raise DataError(f"{folder} {split}: none of the first {min(len(shards), HEADER_SAMPLE)} records is a readable image")
        channels = 1 if all(m in ("L", "1") for *_, m in headers) else 3
        side = int(np.median([min(w, h) for w, h, _ in headers]))
        sizes = {(w, h) for w, h, _ in headers}
        w, h = next(iter(sizes))
        pixels = w * h if len(sizes) == 1 else side * side
        images += len(shards)
        nbytes += len(shards) * channels * pixels
    return images, nbytes


def shard_splits(folder: str | os.PathLike, *, size: int, val_size: int = 0) -> tuple[ShardSplit, ShardSplit, ShardSplit]:
    """(train, val, test) of a pack for streaming, batches of ``size`` x ``size``. A pack has
    a train and a test split; holding validation images out of it would take a second pass
    over the shards, so ``val_size`` must be 0 (pack the hold-out as its own folder)."""
    from cnnlab.data.datasets import channel_stats
    from cnnlab.data.stream import eval_transform

    if val_size:
        raise CnnlabError(f"val_size must be 0 when streaming tar shards (got {val_size}): a pack holds train and test only")
    folder = Path(folder).expanduser()
    train, test = open_shards(folder, "train"), open_shards(folder, "test")
    headers = sample_headers(train)
    channels = 1 if headers and all(m in ("L", "1") for *_, m in headers) else 3
    crops = []
    small = eval_transform(64, channels=channels)  # the statistics of centre crops, as for streamed folders
    for data in _first_records(train, STATS_SAMPLE):
        try:
            crops.append(small.decode_bytes(data, 0))
        except DataError:  # an unreadable record does not count
            continue
    if not crops:
        raise DataError(f"{folder}: none of the first {min(len(train), STATS_SAMPLE)} training records could be decoded")
    mean, std = channel_stats(torch.stack(crops))
    name = f"shards:{folder}"

    def split(shards: ShardSet, which: str) -> ShardSplit:
        return ShardSplit(name, which, shards, mean, std, (channels, size, size), f"{folder}/{which}-*.tar")

    empty = ShardSet(folder, "val", (), (), train.classes)
    return split(train, "train"), split(empty, "val"), split(test, "test")


# --- a packed folder as a dataset: ``shards:PATH`` ------------------------------------------


def _load_all(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Every record of a split decoded into memory, sized by the folder policy (native when
    all agree, else the median shorter side, centre-cropped): small packs train in memory."""
    import statistics

    from cnnlab.data.image import decode_upload, resize_and_crop, to_uint8_tensor

    shards = open_shards(folder, split)
    decoded, labels = [], []
    for file, count in zip(shards.files, shards.counts):
        for key, data, label in iter_records(folder / file, 0, count):
            try:
                decoded.append(decode_upload(data, 3).image)
                labels.append(label)
            except DataError as e:
                print(f"{folder / file}: skipped record {key}: {e}", file=sys.stderr)
    if not decoded:
        raise DataError(f"{folder}: no readable image in the {split} shards")
    sizes = {im.size for im in decoded}
    side = None if len(sizes) == 1 else int(statistics.median(min(im.size) for im in decoded))
    images = torch.stack([to_uint8_tensor(im if side is None else resize_and_crop(im, (side, side))) for im in decoded])
    return images, torch.tensor(labels, dtype=torch.int64), f"{folder}/{split}-*.tar"


def _resolve_shards(name: str):
    """``shards:/path``: a folder written by ``cnnlab data pack``."""
    from cnnlab.data.datasets import DatasetSpec

    if not name.startswith("shards:"):
        return None
    folder = Path(name[len("shards:"):]).expanduser()
    classes = open_shards(folder, "train").classes
    return DatasetSpec(name, classes, lambda root, split, download: _load_all(folder, split), val_size=0,
                       description=f"tar shards in {folder} (cnnlab data pack)")


def _register() -> None:
    from cnnlab.data.datasets import register_resolver

    register_resolver(_resolve_shards)


_register()
