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
share (``shard_sizes``): its own shards, plus at most a part of one at each end. Training
shuffles within a buffer of ``SHUFFLE_BUFFER`` records. A shard that is shorter than its
index says, or that ends inside a record, stops the run with one line naming it.
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
import torch.nn.functional as F

from cnnlab.data.files import atomic_write_text
from cnnlab.data.image import normalise
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


class _ShardStream(torch.utils.data.IterableDataset):
    """The records of this epoch's pieces, split between DataLoader workers by piece-parts."""

    def __init__(self, shards: ShardSet, transform) -> None:
        self.shards, self.transform = shards, transform
        self.pieces: list[tuple[int, int, int]] = []
        self.shuffle_seed: int | None = None
        self.crop_seed = 0

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        # Each worker takes an equal contiguous part of each piece: sequential reads.
        mine = []
        for shard, a, b in self.pieces:
            n = b - a
            lo, hi = a + n * wid // nw, a + n * (wid + 1) // nw
            if lo < hi:
                mine.append((shard, lo, hi))
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
    return images, labels, keys, bad, fatal


class ShardBatches:
    """Batches read from tar shards by DataLoader workers: the batch protocol of
    ``cnnlab.data.Batches`` (``len``, ``num_images``, ``set_epoch``, ``indices``), for rank
    ``rank`` of ``world_size``. ``mean``/``std`` normalise; ``augment`` runs on the batch."""

    def __init__(self, shards: ShardSet, batch_size: int, *, transform, mean, std, device="cpu", shuffle: bool = False,
                 augment=None, generator: torch.Generator | None = None, workers: int = 1, rank: int = 0,
                 world_size: int = 1, seed: int = 0, pad: int = 0, quiet: bool = False) -> None:
        self.shards, self.batch_size, self.shuffle = shards, batch_size, shuffle
        self.device = torch.device(device)
        self.augment, self.pad, self.quiet = augment, pad, quiet
        self.generator = generator if generator is not None else torch.Generator()
        self.rank, self.world_size, self.seed, self.epoch = rank, world_size, seed, 0
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1)
        self.skipped: list[tuple[int, str]] = []
        self._stream = _ShardStream(shards, transform)
        self._loader = torch.utils.data.DataLoader(
            self._stream, batch_size=batch_size, num_workers=workers, collate_fn=_collate,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
        )
        self._keys: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def pieces(self) -> list[tuple[int, int, int]]:
        n = len(self.shards.counts)
        order = epoch_order(n, seed=self.seed, epoch=self.epoch).tolist() if self.shuffle else list(range(n))
        return rank_ranges(self.shards.counts, order, rank=self.rank, world_size=self.world_size, drop_last=self.shuffle)

    @property
    def num_images(self) -> int:
        return sum(b - a for _, a, b in self.pieces())

    def __len__(self) -> int:
        # Workers each end with a part batch, so count per worker (an upper bound is not enough: DDP needs it exact).
        workers = max(1, self._loader.num_workers)
        total = 0
        for w in range(workers):
            n = sum((b - a) * (w + 1) // workers - (b - a) * w // workers for _, a, b in self.pieces())
            total += -(-n // self.batch_size)
        return total

    def indices(self) -> torch.Tensor:
        """Keys (positions in the packed split) of the images yielded in the last pass."""
        return torch.tensor(self._keys, dtype=torch.int64)

    def __iter__(self):
        self._stream.pieces = self.pieces()
        self._stream.shuffle_seed = int(torch.randint(0, 2**62, (1,), generator=self.generator)) if self.shuffle else None
        self._stream.crop_seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        self._keys = []
        for images, labels, keys, bad, fatal in self._loader:
            if fatal:
                raise DataError(fatal[0])
            self.skipped.extend(bad)
            if bad and not self.quiet:
                print(f"skipped {len(bad)} unreadable image(s) in the shards (first: record {bad[0][0]}: {bad[0][1]})", file=sys.stderr)
            if len(labels) == 0:
                continue
            self._keys.extend(keys.tolist())
            x = images.to(self.device).float().div_(255.0)
            if self.pad:
                x = F.pad(x, (self.pad,) * 4)
            if self.augment is not None:
                x = self.augment(x, self.generator)
            yield normalise(x, self.mean, self.std), labels.to(self.device)


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
