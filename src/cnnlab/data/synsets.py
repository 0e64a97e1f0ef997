"""Class names of image folders named by WordNet ids (ImageNet's ``n01440764``).

ImageNet ships a synset mapping file, one class a line: ``wnid name, synonym, ...``
(``LOC_synset_mapping.txt`` in the ILSVRC 2012 localisation release, ``synsets.txt`` in
other copies). When a dataset folder holds one, every command shows the first name of each
class ("tench") instead of its folder name. Any image folder may carry one: ``folder:`` data
and the registered ImageNet-layout datasets all read it through :func:`class_names`.

The 1,000 ILSVRC-2012 classes themselves ship with the package (``imagenet_classes.txt``
beside this module: wnid and torchvision's English name, in the index order of every
ImageNet-1k classifier, which is sorted wnid order; Russakovsky et al. 2015). A weight file's
output ``i`` is ``imagenet_classes()[i]``, and :func:`imagenet_indices` finds the
outputs of a dataset whose classes are wnids (Imagenette's ten).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from cnnlab.errors import DataError

IMAGENET_CLASSES_FILE = "imagenet_classes.txt"  # package data of cnnlab.data

SYNSET_FILES = ("LOC_synset_mapping.txt", "synsets.txt")  # looked for in this order


def find_synset_file(folder: Path) -> Path | None:
    for name in SYNSET_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def read_synsets(path: Path) -> dict[str, str]:
    """``wnid -> first name`` from a synset mapping file (blank lines ignored)."""
    names: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read the synset mapping {path}: {e}") from None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        wnid, _, rest = line.partition(" ")
        name = rest.split(",")[0].strip()
        if not name:
            raise DataError(f"{path}:{number}: expected 'wnid name, synonyms', got {line!r}")
        names[wnid] = name
    return names


def class_names(folder: Path, folders: Sequence[str]) -> tuple[str, ...]:
    """Display names for class sub-folders ``folders`` (label order) of a dataset in
    ``folder``: the synset file's first names when the folder has a mapping file, else the
    folder names. A folder the mapping does not list keeps its own name. Names that repeat
    (ImageNet has two "crane" and two "maillot" classes) get their folder name appended,
    so every class stays distinguishable in tables and confusion matrices."""
    path = find_synset_file(folder)
    if path is None:
        return tuple(folders)
    mapping = read_synsets(path)
    names = [mapping.get(f, f) for f in folders]
    counts = {n: names.count(n) for n in names}
    return tuple(f"{n} ({f})" if counts[n] > 1 else n for n, f in zip(names, folders))


# --- the ILSVRC-2012 classes ----------------------------------------------------------------


class ImageNetClass(NamedTuple):
    wnid: str  # WordNet id, e.g. "n01440764"
    name: str  # torchvision's English name, e.g. "tench" (unique across the 1,000)


@functools.cache
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    """The 1,000 ImageNet-1k classes in output order (index i = output i of a 1000-class weight file)."""
    text = (resources.files("cnnlab.data") / IMAGENET_CLASSES_FILE).read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    return tuple(ImageNetClass(wnid, name) for wnid, name in rows)


def imagenet_names() -> tuple[str, ...]:
    """The English names of the 1,000 ImageNet-1k classes, in output order."""
    return tuple(c.name for c in imagenet_classes())


def imagenet_indices(wnids: Sequence[str], *, what: str = "the dataset") -> list[int]:
    """The ImageNet-1k output index of each wnid in ``wnids``; a class that is not one of the
    1,000 is one DataError line naming it (``what``: whose classes these are)."""
    index = {c.wnid: i for i, c in enumerate(imagenet_classes())}
    missing = [w for w in wnids if w not in index]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DataError(
            f"{what} has class {missing[0]!r}{more}, not an ImageNet-1k wnid (n01440764 ...); 1000-class "
            "weights can only be scored on a dataset whose class folders are ImageNet wnids (imagenet, imagenette)"
        )
    return [index[w] for w in wnids]


def dataset_wnids(name: str, root: str | os.PathLike | None = None) -> tuple[str, ...]:
    """The class folder names, in label order, of an image-folder dataset (``imagenet``,
    ``imagenette``, ``folder:PATH``): for ImageNet-style data, its wnids. Other datasets have
    no class folders: one DataError line."""
    # Imported here: both modules import this one for class_names.
    from cnnlab.data.datasets import get_dataset_spec
    from cnnlab.data.folders import list_classes
    from cnnlab.data.imagenet import ImageNetStyle
    from cnnlab.data.root import data_root

    if name.startswith("folder:"):
        return list_classes(Path(name[len("folder:"):]).expanduser() / "train")
    style = getattr(get_dataset_spec(name).load, "__self__", None)  # the registered ILSVRC-layout loaders
    if isinstance(style, ImageNetStyle):
        return style.layout(data_root(root)).wnids
    raise DataError(f"{name} has no class folders to read wnids from; expected imagenet, imagenette or folder:PATH")
