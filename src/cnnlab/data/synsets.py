"""Class names of image folders named by WordNet ids (ImageNet's ``n01440764``).

ImageNet ships a synset mapping file, one class a line: ``wnid name, synonym, ...``
(``LOC_synset_mapping.txt`` in the ILSVRC 2012 localisation release, ``synsets.txt`` in
other copies). When a dataset folder holds one, every command shows the first name of each
class ("tench") instead of its folder name. Any image folder may carry one: ``folder:`` data
and the registered ImageNet-layout datasets all read it through :func:`class_names`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from cnnlab.errors import DataError

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
