"""The ILSVRC-2012 layout (tiny fake trees), class names from synset files, and Imagenette."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import get_dataset_spec, load_dataset
from cnnlab.data.imagenet import read_layout, split_files, val_files
from cnnlab.data.synsets import class_names
from cnnlab.errors import DataError
from tests.cli.conftest import run_cli

# Three classes; label order is the sorted wnids. The devkit numbers them in another order.
WNIDS = ("n01440764", "n02102040", "n03000684")
NAMES = {"n01440764": "tench, Tinca tinca", "n02102040": "English springer, English springer spaniel",
         "n03000684": "chain saw, chainsaw"}
COLOURS = {"n01440764": (250, 0, 0), "n02102040": (0, 250, 0), "n03000684": (0, 0, 250)}
DEVKIT_ID = {"n03000684": 1, "n01440764": 2, "n02102040": 3}  # ILSVRC2012_ID, not sorted order


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))


def _image(path: Path, colour) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 16), colour).save(path, quality=95)


def make_tree(root: Path, val: str = "folders", per_class: int = 3, synsets: str | None = "LOC_synset_mapping.txt") -> Path:
    """A fake ``root/imagenet`` ILSVRC tree; ``val``: "folders", "csv", "txt", "flat" (no
    ground truth) or "none"."""
    base = root / "imagenet"
    for wnid in WNIDS:
        for i in range(per_class):
            _image(base / "train" / wnid / f"{wnid}_{i}.JPEG", COLOURS[wnid])
    number = 0
    rows, truth = [], []
    for wnid in WNIDS:
        for i in range(2):
            number += 1
            name = f"ILSVRC2012_val_{number:08d}"
            if val == "folders":
                _image(base / "val" / wnid / f"{name}.JPEG", COLOURS[wnid])
            elif val != "none":
                _image(base / "val" / f"{name}.JPEG", COLOURS[wnid])
            rows.append((name, f"{wnid} 1 2 10 12"))
            truth.append(DEVKIT_ID[wnid])
    if val == "csv":
        with open(base / "LOC_val_solution.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["ImageId", "PredictionString"])
            w.writerows(sorted(rows, key=lambda r: r[0][::-1]))  # any row order
    if val == "txt":
        (base / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(map(str, truth)) + "\n")
        _write_meta(base / "ILSVRC2012_devkit_t12" / "data" / "meta.mat")
    if synsets:
        (base / synsets).write_text("".join(f"{w} {NAMES[w]}\n" for w in WNIDS))
    return base


def _write_meta(path: Path) -> None:
    from scipy.io import savemat

    path.parent.mkdir(parents=True, exist_ok=True)
    synsets = np.zeros((4,), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")])
    for wnid, i in DEVKIT_ID.items():
        synsets[i - 1] = (i, wnid, NAMES[wnid], 0)
    synsets[3] = (1001, "n00000001", "a parent synset, not a class", 3)
    savemat(str(path), {"synsets": synsets})


def _labels_by_colour(images: torch.Tensor) -> list[int]:
    return images[:, :, 8, 10].float().argmax(1).tolist()  # the brightest channel is the class


@pytest.mark.parametrize("layout", ["folders", "csv", "txt"])
def test_every_val_layout_gives_the_same_labels(tmp_path, layout):
    make_tree(tmp_path, val=layout)
    test = load_dataset("imagenet", "test", tmp_path)
    assert len(test) == 6 and test.classes == ("tench", "English springer", "chain saw")
    assert test.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert _labels_by_colour(test.images) == test.labels.tolist()  # the pixels agree with the labels
    train = load_dataset("imagenet", "trainval", tmp_path)
    assert len(train) == 9 and _labels_by_colour(train.images) == train.labels.tolist()


def test_the_streaming_file_lists_agree(tmp_path):
    make_tree(tmp_path, val="txt")
    spec = get_dataset_spec("imagenet")
    paths, labels, source = spec.files(tmp_path, "test")
    assert len(paths) == 6 and labels.tolist() == [0, 0, 1, 1, 2, 2] and "ground_truth" in source
    assert all(Path(p).is_file() for p in paths)
    train_paths, train_labels, _ = spec.files(tmp_path, "train")
    assert len(train_paths) == 9 and sorted(set(train_labels.tolist())) == [0, 1, 2]


def test_root_may_be_the_dataset_folder_itself(tmp_path):
    base = make_tree(tmp_path)
    assert load_dataset("imagenet", "test", base).classes[0] == "tench"


def test_class_names_without_a_synset_file_are_the_wnids(tmp_path):
    make_tree(tmp_path, synsets=None)
    assert load_dataset("imagenet", "test", tmp_path).classes == WNIDS


def test_synsets_txt_and_duplicate_names(tmp_path):
    (tmp_path / "synsets.txt").write_text("n1 crane\nn2 crane, machine\nn3 tench\n")
    assert class_names(tmp_path, ["n1", "n2", "n3", "n4"]) == ("crane (n1)", "crane (n2)", "tench", "n4")


def test_folder_datasets_read_the_synset_file_too(tmp_path):
    base = make_tree(tmp_path)
    test = load_dataset(f"folder:{base}", "test")
    assert test.classes == ("tench", "English springer", "chain saw")


# --- bad input: one clear error each ------------------------------------------------------------


def test_flat_val_without_ground_truth(tmp_path):
    make_tree(tmp_path, val="flat")
    with pytest.raises(DataError, match="no ground truth: expected LOC_val_solution.csv"):
        load_dataset("imagenet", "test", tmp_path)


def test_ground_truth_txt_without_the_devkit_mapping(tmp_path):
    base = make_tree(tmp_path, val="txt")
    (base / "ILSVRC2012_devkit_t12" / "data" / "meta.mat").unlink()
    with pytest.raises(DataError, match="devkit mapping meta.mat"):
        load_dataset("imagenet", "test", tmp_path)


def test_val_folder_that_matches_no_layout(tmp_path):
    base = make_tree(tmp_path, val="folders")
    _image(base / "val" / "stray.JPEG", (1, 2, 3))  # sub-folders and a flat image
    with pytest.raises(DataError, match="matches no known layout"):
        val_files(read_layout(base))
    empty = make_tree(tmp_path / "b", val="none")
    (empty / "val").mkdir()
    with pytest.raises(DataError, match="matches no known layout"):
        val_files(read_layout(empty))


def test_class_folder_with_no_images(tmp_path):
    base = make_tree(tmp_path)
    for f in (base / "train" / WNIDS[1]).iterdir():
        f.unlink()
    with pytest.raises(DataError, match=f"class folder .*{WNIDS[1]} holds no images"):
        split_files(read_layout(base), "train")


def test_csv_missing_a_row_and_a_label_of_no_class(tmp_path):
    base = make_tree(tmp_path, val="csv")
    lines = (base / "LOC_val_solution.csv").read_text().splitlines()
    (base / "LOC_val_solution.csv").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match="has no label for"):
        val_files(read_layout(base))
    (base / "LOC_val_solution.csv").write_text("\n".join(lines[:-1] + [lines[-1].replace("n0", "n9", 1)]) + "\n")
    with pytest.raises(DataError, match="not a class folder of train"):
        val_files(read_layout(base))


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(DataError, match="expected the ILSVRC-2012 layout"):
        load_dataset("imagenet", "train", tmp_path)


def test_bad_layout_is_one_line_through_the_cli(tmp_path, capsys):
    make_tree(tmp_path, val="flat")
    code, out, err = run_cli(["data", "imagenet", "--data-root", str(tmp_path), "--val-size", "1", "--no-grid"], capsys)
    assert code != 0
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "no ground truth" in lines[0] and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "imagenet").iterdir()) == ["LOC_synset_mapping.txt", "train", "val"]


# --- the real Imagenette ----------------------------------------------------------------------------


def test_imagenette_is_registered_with_names(data_root):
    if not (data_root / "imagenette" / "train").is_dir():
        pytest.skip("no imagenette in the data root")
    spec = get_dataset_spec("imagenette")
    names = spec.classes_at(data_root)
    assert names[:2] == ("tench", "English springer") and names[4] == "church" and len(names) == 10
    train, _, _ = spec.files(data_root, "train")
    test, test_labels, _ = spec.files(data_root, "test")
    assert (len(train), len(test)) == (9469, 3925)  # the README's counts
    assert torch.bincount(test_labels).min() > 300
