"""The shipped ImageNet-1k class list against torchvision's own (tests/oracle.py) and Imagenette's wnids."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cnnlab.data.synsets import (
    dataset_wnids,
    imagenet_classes,
    imagenet_indices,
    imagenet_names,
    read_synsets,
)
from cnnlab.errors import DataError
from tests import oracle

# fastai's Imagenette classes as its synsets.txt lists them: wnid and the names WordNet gives.
IMAGENETTE = {
    "n01440764": "tench, Tinca tinca",
    "n02102040": "English springer, English springer spaniel",
    "n02979186": "cassette player",
    "n03000684": "chain saw, chainsaw",
    "n03028079": "church, church building",
    "n03394916": "French horn, horn",
    "n03417042": "garbage truck, dustcart",
    "n03425413": "gas pump, gasoline pump, petrol pump, island dispenser",
    "n03445777": "golf ball",
    "n03888257": "parachute, chute",
}


def torchvision_categories() -> list[str]:
    """torchvision's ``_IMAGENET_CATEGORIES``, read from its source without running it."""
    tree = ast.parse(oracle.source("models/_meta.py"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_IMAGENET_CATEGORIES" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("torchvision/models/_meta.py has no _IMAGENET_CATEGORIES")


def test_names_are_torchvisions_in_its_order() -> None:
    assert list(imagenet_names()) == torchvision_categories()


def test_wnids_are_the_sorted_ilsvrc_ids() -> None:
    wnids = [c.wnid for c in imagenet_classes()]
    assert len(wnids) == 1000 and len(set(wnids)) == 1000
    assert wnids == sorted(wnids)  # torchvision's index order is sorted wnid order
    assert all(len(w) == 9 and w[0] == "n" and w[1:].isdigit() for w in wnids)


def test_imagenette_wnids_sit_at_the_index_whose_torchvision_name_is_theirs() -> None:
    # Ties the wnid column to torchvision's names: each Imagenette wnid's index in our file
    # holds, in torchvision's list, one of the names WordNet gives that wnid.
    names = torchvision_categories()
    indices = imagenet_indices(list(IMAGENETTE))
    assert indices == [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]
    for (wnid, synonyms), i in zip(IMAGENETTE.items(), indices):
        assert names[i] in [s.strip() for s in synonyms.split(",")], (wnid, names[i])


def test_the_shared_imagenette_folder_maps_the_same(data_root: Path) -> None:
    if not (data_root / "imagenette" / "synsets.txt").is_file():
        pytest.skip("no imagenette in the data root")
    assert {w: n.split(",")[0] for w, n in IMAGENETTE.items()} == read_synsets(data_root / "imagenette" / "synsets.txt")
    assert list(dataset_wnids("imagenette", data_root)) == list(IMAGENETTE)


def test_classes_that_are_not_wnids_get_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^folder:x has class 'red' and 1 more, not an ImageNet-1k wnid"):
        imagenet_indices(["red", "n01440764", "blue"], what="folder:x")
    with pytest.raises(DataError, match=r"^mnist has no class folders to read wnids from"):
        dataset_wnids("mnist")
    (tmp_path / "train" / "n01443537").mkdir(parents=True)
    (tmp_path / "train" / "cat").mkdir()
    assert dataset_wnids(f"folder:{tmp_path}") == ("cat", "n01443537")
