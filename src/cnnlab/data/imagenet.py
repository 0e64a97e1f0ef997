"""ImageNet (ILSVRC-2012) on disk, and Imagenette in the same layout.

Russakovsky et al. 2015, "ImageNet Large Scale Visual Recognition Challenge", IJCV 115
(https://arxiv.org/abs/1409.0575): 1.28M training images in 1,000 classes, 50,000 validation
images. The papers of the zoo report their errors on the validation set, so here ``test`` is
``val/`` and the ``val`` split is a hold-out carved from ``train/`` (10 images per class by
default), as for every other dataset.

Layout (``<root>/imagenet/``, or ``<root>`` itself when it holds ``train/``):

- ``train/<wnid>/*.JPEG``: one folder per class, named by its WordNet id; label order is the
  sorted folder names (as in every PyTorch ImageNet loader, and ``LOC_synset_mapping.txt``);
- ``val/``: either ``val/<wnid>/*.JPEG`` sub-folders, or the 50,000 images flat with the
  official ground truth: ``LOC_val_solution.csv`` (ImageId, then the box list whose first
  token is the wnid; the Kaggle localisation release), or
  ``ILSVRC2012_validation_ground_truth.txt`` (one ILSVRC2012_ID per line, in file-number
  order) with the devkit's ``meta.mat`` that maps those ids to wnids (``ILSVRC2012_devkit_t12``);
- class names from ``LOC_synset_mapping.txt`` or ``synsets.txt`` (``cnnlab.data.synsets``).

In memory, images are decoded through the image-folder cache (``cnnlab.data.folders``): a
flat ``val/`` becomes a folder of links sorted into classes under the cache, so it is
decoded and cached like any other folder. Streamed (``cnnlab.data.stream``), the same file
lists feed the DataLoader workers.

``imagenette`` (fastai's 10-class subset, https://github.com/fastai/imagenette) is registered
the same way on ``<root>/imagenette``; the shared copy is 160x160 (see its README).
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.data.datasets import DatasetSpec, register_dataset
from cnnlab.data.folders import IMAGE_SUFFIXES, cache_dir, load_folder
from cnnlab.data.synsets import class_names
from cnnlab.errors import DataError

GROUND_TRUTH_CSV = "LOC_val_solution.csv"
GROUND_TRUTH_TXT = "ILSVRC2012_validation_ground_truth.txt"
DEVKIT_META = "meta.mat"  # ILSVRC2012_devkit_t12/data/meta.mat: ILSVRC2012_ID -> WNID
VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})")  # the official validation file names


@dataclass(frozen=True)
class Layout:
    """An ILSVRC-style dataset folder, read: where it is and its classes."""

    base: Path  # the folder holding train/ and val/
    wnids: tuple[str, ...]  # train/ sub-folders, sorted: label i is wnids[i]
    classes: tuple[str, ...]  # display names in label order (synset file, else the wnids)


def locate(root: Path, name: str) -> Path:
    """``<root>/<name>`` when it holds ``train/``, else ``<root>`` itself when it does."""
    for base in (root / name, root):
        if (base / "train").is_dir():
            return base
    raise DataError(
        f"{name}: no {root / name}/train/ (nor {root}/train/); expected the ILSVRC-2012 layout "
        f"<root>/{name}/train/<wnid>/*.JPEG and val/ (set --data-root or $CNNLAB_DATA)"
    )


def read_layout(base: Path) -> Layout:
    train = base / "train"
    wnids = tuple(sorted(p.name for p in train.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not wnids:
        raise DataError(f"{train} has no class sub-folders; expected {train}/<wnid>/*.JPEG")
    return Layout(base, wnids, class_names(base, wnids))


def _images_in(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES))


def class_folder_files(split_dir: Path, wnids: tuple[str, ...]) -> list[tuple[str, int]]:
    """(path, label) of every image in ``split_dir/<wnid>/``, in label then name order; a
    class folder that is missing or holds no image is an error naming it."""
    entries = []
    for label, wnid in enumerate(wnids):
        folder = split_dir / wnid
        if not folder.is_dir():
            raise DataError(f"{split_dir} has no folder for class {wnid} (the training classes are the folders of train/)")
        names = _images_in(folder)
        if not names:
            raise DataError(f"class folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        entries.extend((str(folder / n), label) for n in names)
    return entries


def _find(base: Path, name: str) -> Path | None:
    """A ground-truth or devkit file in the places the official releases put it: the
    dataset folder, val/, the devkit's data/, or up to three folders above (Kaggle's
    ``ILSVRC/Data/CLS-LOC`` keeps the CSV files at the top)."""
    places = [base, base / "val", base / "ILSVRC2012_devkit_t12" / "data", base / "ILSVRC2012_devkit_t12"]
    places += list(base.parents)[:3]
    for place in places:
        if (place / name).is_file():
            return place / name
    return None


def _devkit_wnids(path: Path) -> dict[int, str]:
    """ILSVRC2012_ID -> wnid from the devkit's ``meta.mat`` (ids 1-1000 are the classes)."""
    from scipy.io import loadmat

    try:
        synsets = loadmat(str(path), squeeze_me=True)["synsets"]
        return {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["ILSVRC2012_ID"]) <= 1000}
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise DataError(f"cannot read the devkit mapping {path}: {e}") from None


def _flat_labels(base: Path, names: list[str]) -> tuple[dict[str, str], Path]:
    """wnid of each flat validation file (by its stem), from the ground truth, and the file used."""
    csv_path = _find(base, GROUND_TRUTH_CSV)
    if csv_path is not None:
        with open(csv_path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows or [c.strip() for c in rows[0][:2]] != ["ImageId", "PredictionString"]:
            raise DataError(f"{csv_path}: expected the header 'ImageId,PredictionString'")
        truth = {}
        for row in rows[1:]:
            if len(row) >= 2 and row[1].split():
                truth[row[0].strip()] = row[1].split()[0]
        return truth, csv_path
    txt_path = _find(base, GROUND_TRUTH_TXT)
    if txt_path is not None:
        meta = _find(base, DEVKIT_META)
        if meta is None:
            raise DataError(
                f"{txt_path} gives ILSVRC2012_IDs, but the devkit mapping {DEVKIT_META} that turns them into wnids "
                f"was not found (expected {base}/ILSVRC2012_devkit_t12/data/{DEVKIT_META})"
            )
        ids = _devkit_wnids(meta)
        lines = [line.strip() for line in txt_path.read_text().splitlines() if line.strip()]
        truth = {}
        for name in names:
            m = VAL_NAME.search(name)
            if m is None:
                raise DataError(f"{base / 'val' / name}: not an official validation file name (ILSVRC2012_val_NNNNNNNN)")
            number = int(m.group(1))
            if not 1 <= number <= len(lines):
                raise DataError(f"{txt_path} has {len(lines):,} lines; no ground truth for {name}")
            try:
                truth[Path(name).stem] = ids[int(lines[number - 1])]
            except (ValueError, KeyError):
                raise DataError(f"{txt_path}:{number}: {lines[number - 1]!r} is not a class id of {meta}") from None
        return truth, txt_path
    raise DataError(
        f"{base / 'val'} holds {len(names):,} images but no ground truth: expected {GROUND_TRUTH_CSV}, or "
        f"{GROUND_TRUTH_TXT} with the devkit's {DEVKIT_META}, in {base} (or val/<wnid>/ sub-folders)"
    )


def val_files(layout: Layout) -> tuple[list[tuple[str, int]], str]:
    """(path, label) of every validation image, and how the labels were found."""
    val = layout.base / "val"
    if not val.is_dir():
        raise DataError(f"{layout.base} has train/ but no val/; expected val/<wnid>/*.JPEG or a flat val/ with ground truth")
    subfolders = [p for p in val.iterdir() if p.is_dir() and not p.name.startswith(".")]
    flat = _images_in(val)
    if subfolders and not flat:
        extra = sorted(p.name for p in subfolders if p.name not in layout.wnids)
        if extra:
            raise DataError(f"{val} has class folders {extra[:3]} that train/ does not have")
        return class_folder_files(val, layout.wnids), f"{val}/<wnid>/"
    if flat and not subfolders:
        truth, source = _flat_labels(layout.base, flat)
        index = {w: i for i, w in enumerate(layout.wnids)}
        entries = []
        for name in flat:
            wnid = truth.get(Path(name).stem)
            if wnid is None:
                raise DataError(f"{source} has no label for {val / name}")
            if wnid not in index:
                raise DataError(f"{source}: {name} is labelled {wnid}, which is not a class folder of train/")
            entries.append((str(val / name), index[wnid]))
        entries.sort(key=lambda e: (e[1], e[0]))
        return entries, f"{val} (labels from {source.name})"
    raise DataError(
        f"{val} matches no known layout: found {len(subfolders)} sub-folder(s) and {len(flat)} image(s) at the top; "
        f"expected val/<wnid>/*.JPEG, or all images flat in val/ with {GROUND_TRUTH_CSV} or {GROUND_TRUTH_TXT}"
    )


def split_files(layout: Layout, split: str) -> tuple[list[tuple[str, int]], str]:
    """(path, label) entries of the canonical ``train`` or ``test`` (= val/) split."""
    if split == "train":
        return class_folder_files(layout.base / "train", layout.wnids), str(layout.base / "train")
    return val_files(layout)


def _class_view(entries: list[tuple[str, int]], wnids: tuple[str, ...], name: str) -> Path:
    """A folder of links ``<cache>/views/<hash>/val/<wnid>/<file>`` sorting flat validation
    images into classes, so the image-folder decoder and its cache read them. Built once
    per file list (then reused), in a temporary folder renamed into place."""
    digest = hashlib.sha256("\n".join(f"{p}|{label}" for p, label in entries).encode()).hexdigest()[:20]
    view = cache_dir().parent / "views" / f"{name}-{digest}"
    if (view / "val").is_dir():
        return view / "val"
    tmp = view.with_name(f"{view.name}.tmp-{os.getpid()}")
    for wnid in wnids:
        (tmp / "val" / wnid).mkdir(parents=True, exist_ok=True)
    for path, label in entries:
        (tmp / "val" / wnids[label] / Path(path).name).symlink_to(os.path.abspath(path))
    try:
        tmp.rename(view)
    except OSError:  # another process built it first
        pass
    return view / "val"


@dataclass(frozen=True)
class ImageNetStyle:
    """Loader functions of a registered ILSVRC-layout dataset (``imagenet``, ``imagenette``)."""

    name: str  # also the folder under the data root
    memory_size: int | None  # in memory: images resized and centre-cropped to this side; None keeps the native size

    def layout(self, root: Path) -> Layout:
        return read_layout(locate(root, self.name))

    def classes(self, root: Path) -> tuple[str, ...]:
        return self.layout(root).classes

    def files(self, root: Path, split: str) -> tuple[list[str], torch.Tensor, str]:
        entries, source = split_files(self.layout(root), split)
        return [p for p, _ in entries], torch.tensor([label for _, label in entries], dtype=torch.int64), source

    def load(self, root: Path, split: str, allow_download: bool) -> tuple[torch.Tensor, torch.Tensor, str]:
        layout = self.layout(root)
        entries, source = split_files(layout, split)  # checks the layout, so errors name the real problem
        folder = layout.base / "train" if split == "train" else layout.base / "val"
        if split != "train" and not (folder / layout.wnids[0]).is_dir():
            folder = _class_view(entries, layout.wnids, self.name)
        got = load_folder(folder, classes=layout.wnids, image_size=self.memory_size)
        return got.images, got.labels, source


def _register(name: str, *, memory_size: int | None, val_size: int, description: str) -> None:
    style = ImageNetStyle(name, memory_size)
    register_dataset(
        DatasetSpec(name, (), style.load, val_size=val_size, description=description, list_classes=style.classes, files=style.files)
    )


# In memory, ImageNet is held at 256x256 (shorter side 256, centre crop): the size that
# AlexNet's random 224 crops are cut from (Krizhevsky et al. 2012, Sec. 2). At 1.28M images
# that is 252 GB, so it streams unless a machine has that much memory to spare.
_register("imagenet", memory_size=256, val_size=10_000,  # 10 per class, held out of train/
          description="ILSVRC-2012 (ImageNet-1k): train/<wnid>/*.JPEG, val/ as test")
# Imagenette's shared copy is all 160x160, kept as it is. val_size 500 (about 50 per class).
_register("imagenette", memory_size=None, val_size=500,
          description="Imagenette (fastai's 10 easy ImageNet classes), ImageNet layout")
