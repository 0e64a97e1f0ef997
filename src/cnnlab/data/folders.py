"""Image folders (``root/<split>/<class>/*.jpg|png``, the ImageNet layout) decoded into memory.

A folder is decoded once with Pillow, in worker processes, into a uint8 tensor cache; the
second load reads that one file and starts in seconds. The cache lives under
``$CNNLAB_CACHE`` (else ``~/.cache/cnnlab/folders/``), never inside the data root (which may
be read-only). Its name is a hash of the folder's file list with every file's size and
modification time, and of the size policy, so adding, removing or editing an image makes a
new cache. A cache file that cannot be read is rebuilt.

Size policy (stated, not guessed): when every image has the same size it is kept as is;
otherwise (or when ``image_size`` is given) each image is resized so its shorter side is
``S`` and centre-cropped to ``S x S`` (``cnnlab.data.image``, the policy ``predict`` uses too). ``S`` is
``image_size`` when given, else the median shorter side of the folder's images.
Channels: RGB, unless every image is grayscale (8-bit, 16-bit, float, with or without alpha),
then one channel. Decoding is the image policy's (16-bit scaled to 8 bits, EXIF orientation,
transparency on white, the pixel limit); an empty class folder is refused, and so is a
``folder:`` dataset of one class.

An image that cannot be decoded is reported by path and skipped; the count is shown. It
never stops the run.

``cifar10-jpeg`` is registered here: the shared JPEG copy of CIFAR-10 (quality 75, 32x32)
with CIFAR-10's class names; any other folder loads as the dataset ``folder:/path/to/root``.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import os
import signal
import statistics
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.datasets import DatasetSpec, register_dataset, register_resolver
from cnnlab.data.files import atomic_write_bytes
from cnnlab.data.image import GRAY_MODES, decode_image, resize_and_crop
from cnnlab.data.root import ENV_VAR
from cnnlab.data.synsets import class_names
from cnnlab.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".webp", ".tif", ".tiff")
CACHE_ENV = "CNNLAB_CACHE"
CACHE_VERSION = 2  # bump when the cache layout or decoding changes (2: EXIF, 16-bit, alpha on white)
CHUNK = 500  # images per worker task: large enough to amortise the process round trip


def cache_dir() -> Path:
    """``$CNNLAB_CACHE`` (if set), else ``~/.cache/cnnlab``; folder caches go in ``folders/``."""
    env = os.environ.get(CACHE_ENV, "").strip()
    return (Path(env) if env else Path("~/.cache/cnnlab")).expanduser() / "folders"


@dataclass(frozen=True)
class FolderImages:
    """A decoded split: what ``load_folder`` returns."""

    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64
    classes: tuple[str, ...]  # sub-folder names, sorted: label i is classes[i]
    skipped: tuple[tuple[str, str], ...]  # (path, reason) of images that could not be read
    cache_file: Path | None  # where the decoded tensors were cached
    from_cache: bool  # true when read from the cache, false when decoded now


def list_classes(split_dir: Path) -> tuple[str, ...]:
    if not split_dir.is_dir():
        raise DataError(f"image folder {split_dir} does not exist; expected <root>/<split>/<class>/*.jpg")
    classes = tuple(sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not classes:
        raise DataError(f"{split_dir} has no class sub-folders; expected {split_dir}/<class>/*.jpg")
    return classes


def scan_files(split_dir: Path, classes: tuple[str, ...]) -> list[tuple[str, int, int, int]]:
    """(relative path, label, size in bytes, mtime in ns) of every image file, sorted. A class
    folder without images is refused: it would be a class the model can never be shown."""
    entries = []
    for label, name in enumerate(classes):
        found = 0
        with os.scandir(split_dir / name) as it:
            for e in it:
                if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES):
                    st = e.stat()
                    entries.append((f"{name}/{e.name}", label, st.st_size, st.st_mtime_ns))
                    found += 1
        if not found:
            raise DataError(
                f"class folder {split_dir / name} has no images ({', '.join(IMAGE_SUFFIXES)}); "
                "add images or remove the folder"
            )
    entries.sort()
    return entries


def _cache_key(split_dir: Path, entries, image_size: int | None) -> str:
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION}|{split_dir.resolve()}|size={image_size}\n".encode())
    for rel, label, size, mtime in entries:
        h.update(f"{rel}|{label}|{size}|{mtime}\n".encode())
    return h.hexdigest()[:24]


# --- decoding (runs in worker processes) ------------------------------------------------


def _probe(paths: list[str]) -> list[tuple[int, int, str] | None]:
    """(width, height, mode) from each file's header, or None when it cannot be opened."""
    from PIL import Image

    out = []
    for p in paths:
        try:
            with Image.open(p) as im:
                out.append((im.width, im.height, im.mode))
        except Exception:  # any Pillow failure means "unreadable"; the decode pass reports it
            out.append(None)
    return out


def _decode(args: tuple[list[str], int | None, int]) -> tuple[np.ndarray, list[int], list[tuple[str, str]]]:
    """Decode a chunk with the image policy (``cnnlab.data.image``): (uint8 array (n_ok, H, W,
    C), indices within the chunk that worked, [(path, reason)] of the failures). ``size`` None
    keeps the native size."""
    paths, size, channels = args
    arrays, ok, failed = [], [], []
    for i, p in enumerate(paths):
        try:
            im = decode_image(p, channels)
            if size is not None:
                im = resize_and_crop(im, (size, size))
            arrays.append(np.asarray(im, dtype=np.uint8).reshape(im.height, im.width, channels))
            ok.append(i)
        except DataError as e:  # truncated, not an image, permission denied...: skip, report
            failed.append((p, str(e)))
    if arrays and len({a.shape for a in arrays}) > 1:
        # Only possible with size None and a folder whose headers lied; the caller checks.
        shapes = sorted({a.shape for a in arrays})
        raise DataError(f"images of different sizes {shapes[:3]} in one chunk; pass image_size")
    stacked = np.stack(arrays) if arrays else np.zeros((0, 1, 1, channels), np.uint8)
    return stacked, ok, failed


# --- worker processes that die with their parent ---------------------------------------

PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCHDOG_SECONDS = 1.0  # how often a worker without prctl checks that its parent lives


def die_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this process when process ``parent_pid`` dies (a killed
    ``cnnlab`` must not leave decoders behind). On Linux the kernel sends SIGKILL on the
    parent's death (prctl PR_SET_PDEATHSIG); elsewhere, or when the worker's parent is not
    ``parent_pid`` (a forkserver), a daemon thread checks every second."""
    if sys.platform.startswith("linux") and os.getppid() == parent_pid:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent_pid:  # the parent died before prctl took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="parent-watchdog").start()


def _watch_parent(parent_pid: int) -> None:
    while True:
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # a process with that pid exists (signals not allowed): still alive
            pass
        time.sleep(WATCHDOG_SECONDS)


# --- the loader -----------------------------------------------------------------------------


def _map_chunks(fn, chunks: list, sizes: list[int], workers: int, description: str, quiet: bool) -> list:
    """Run ``fn`` over ``chunks`` (of ``sizes`` images each) in a process pool, with a
    progress bar; the results in chunk order."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    results: list = [None] * len(chunks)
    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        disable=quiet, transient=True,
    ) as progress:
        task = progress.add_task(description, total=sum(sizes))
        if workers <= 1 or len(chunks) <= 1:
            for i, chunk in enumerate(chunks):
                results[i] = fn(chunk)
                progress.update(task, advance=sizes[i])
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
                futures = {pool.submit(fn, chunk): i for i, chunk in enumerate(chunks)}
                for future in as_completed(futures):
                    i = futures[future]
                    results[i] = future.result()
                    progress.update(task, advance=sizes[i])
    return results


def _read_cache(path: Path) -> dict | None:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        images, labels = blob["images"], blob["labels"]
        if images.dtype != torch.uint8 or images.ndim != 4 or len(labels) != len(images):
            return None
        return blob
    except FileNotFoundError:
        return None
    except Exception:  # truncated, wrong format, partial write: rebuild it
        return None


def _write_cache(path: Path, blob: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(blob, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_folder(
    split_dir: str | os.PathLike,
    *,
    image_size: int | None = None,
    classes: tuple[str, ...] | None = None,
    workers: int | None = None,
    cache: bool = True,
    quiet: bool = False,
) -> FolderImages:
    """Decode ``split_dir/<class>/*`` into uint8 tensors, through the cache.

    ``classes``: expected class folder names in label order (default: the sorted sub-folder
    names). ``image_size``: resize shorter side and centre-crop to this (see the module
    docstring); default: native size when all images agree. ``workers``: decoding processes
    (default: the number of CPU cores, at most 8)."""
    split_dir = Path(split_dir)
    found = list_classes(split_dir)
    if classes is None:
        classes = found
    elif tuple(classes) != found:
        raise DataError(f"{split_dir}: class folders {list(found)[:5]}... do not match the expected {list(classes)[:5]}...")
    entries = scan_files(split_dir, classes)
    if not entries:
        raise DataError(f"{split_dir} has class folders but no images ({', '.join(IMAGE_SUFFIXES)})")
    key = _cache_key(split_dir, entries, image_size)
    cache_file = cache_dir() / f"{split_dir.parent.name}-{split_dir.name}-{key}.pt"
    if cache:
        blob = _read_cache(cache_file)
        if blob is not None:
            skipped = tuple(tuple(s.split("\t", 1)) for s in blob.get("skipped", "").split("\n") if s)
            return FolderImages(blob["images"], blob["labels"], classes, skipped, cache_file, True)  # type: ignore[arg-type]

    workers = workers or min(8, os.cpu_count() or 1)
    paths = [str(split_dir / rel) for rel, *_ in entries]
    path_chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    sizes = [len(c) for c in path_chunks]
    probed = _map_chunks(_probe, path_chunks, sizes, workers, f"reading headers of {split_dir}", quiet)
    headers = [h for part in probed for h in part]
    readable = [h for h in headers if h is not None]
    channels = 1 if readable and all(m in GRAY_MODES for _, _, m in readable) else 3
    shapes = {(w, h) for w, h, _ in readable}
    target = image_size
    if target is None and len(shapes) > 1:
        target = int(statistics.median(min(w, h) for w, h, _ in readable))
        if not quiet:
            print(f"{split_dir}: images have {len(shapes)} different sizes; resizing the shorter side to {target} "
                  f"and centre-cropping to {target}x{target} (pass image_size to choose)", file=sys.stderr)

    decoded = _map_chunks(
        _decode, [(c, target, channels) for c in path_chunks], sizes, workers, f"decoding {split_dir}", quiet
    )
    arrays, keep, skipped = [], [], []
    for chunk_index, (array, ok, failed) in enumerate(decoded):
        if len(ok):
            arrays.append(array)
            keep.extend(chunk_index * CHUNK + i for i in ok)
        skipped.extend(failed)
    if not keep:
        raise DataError(f"{split_dir}: none of the {len(paths):,} images could be read (first: {skipped[0][1]})")
    if len({a.shape[1:] for a in arrays}) > 1:
        raise DataError(f"{split_dir}: decoded images differ in size; pass image_size")
    images = torch.from_numpy(np.concatenate(arrays)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([entries[i][1] for i in keep], dtype=torch.int64)
    if skipped and not quiet:
        print(f"{split_dir}: skipped {len(skipped)} unreadable image(s) of {len(paths):,}:", file=sys.stderr)
        for p, reason in skipped[:10]:
            print(f"  {p}: {reason}", file=sys.stderr)
        if len(skipped) > 10:
            print(f"  ... and {len(skipped) - 10} more", file=sys.stderr)
    written = None
    if cache:
        blob = {"images": images, "labels": labels, "skipped": "\n".join(f"{p}\t{r}" for p, r in skipped)}
        try:
            _write_cache(cache_file, blob)
            written = cache_file
        except OSError as e:
            if not quiet:
                print(f"could not write the image cache {cache_file}: {e.strerror}; set {CACHE_ENV}", file=sys.stderr)
    return FolderImages(images, labels, classes, tuple(skipped), written, False)


# --- as registered datasets ---------------------------------------------------------------


def folder_loader(subfolder: str | None, classes: tuple[str, ...] | None = None, image_size: int | None = None):
    """A DatasetSpec loader for ``<root>/<subfolder>/<split>/<class>/*`` (``subfolder`` None:
    the root given is the dataset folder itself)."""

    def load(root: Path, split: str, allow_download: bool) -> tuple[torch.Tensor, torch.Tensor, str]:
        base = root / subfolder if subfolder else root
        if not (base / split).is_dir():
            raise DataError(
                f"image folder {base / split} not found; expected {base}/{split}/<class>/*.jpg "
                f"(set {ENV_VAR} or --data-root to the folder that holds {subfolder or base.name}/)"
            )
        got = load_folder(base / split, image_size=image_size, classes=classes)
        return got.images, got.labels, str(base / split)

    return load


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

register_dataset(
    DatasetSpec(
        "cifar10-jpeg",
        CIFAR10_CLASSES,  # folder names sorted alphabetically = CIFAR-10's label order
        folder_loader("cifar10-jpeg", CIFAR10_CLASSES),
        val_size=5000,  # the 45k/5k split of He et al. 2016, Sec. 4.2
        description="CIFAR-10 as JPEG image folders (quality 75), 32x32 RGB",
    )
)


def _resolve_folder(name: str) -> DatasetSpec | None:
    """``folder:/path/to/root``: any image folder with ``train/`` and ``test/`` (or ``val/``)."""
    if not name.startswith("folder:"):
        return None
    path = Path(name[len("folder:") :]).expanduser()
    if not (path / "train").is_dir():
        raise DataError(f"{name}: expected {path}/train/<class>/*.jpg (and test/<class>/...) image folders")
    folders = list_classes(path / "train")
    if len(folders) == 1:
        # One class trains a model that is "100%" right by answering that class always.
        raise DataError(
            f"{path / 'train'} has one class folder ({folders[0]}); a classifier needs at least two: "
            f"add a folder per class under {path / 'train'}"
        )
    test_name = "test" if (path / "test").is_dir() else "val"

    def load(root: Path, split: str, allow_download: bool):
        split_dir = path / ("train" if split == "train" else test_name)
        got = load_folder(split_dir, classes=folders)
        return got.images, got.labels, str(split_dir)

    def files(root: Path, split: str):  # for the streaming path (cnnlab.data.stream)
        from cnnlab.data.imagenet import class_folder_files

        split_dir = path / ("train" if split == "train" else test_name)
        entries = class_folder_files(split_dir, folders)
        return [p for p, _ in entries], torch.tensor([label for _, label in entries], dtype=torch.int64), str(split_dir)

    # Class names from a synset mapping file beside train/ when there is one (ImageNet's wnids -> "tench").
    return DatasetSpec(name, class_names(path, folders), load, val_size=0, description=f"image folders under {path}", files=files)


register_resolver(_resolve_folder)
