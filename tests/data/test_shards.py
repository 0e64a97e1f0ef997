"""Tar shards: packing, exactly-once coverage across ranks, labels, truncated shards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from cnnlab.data import load_dataset
from cnnlab.data.shards import INDEX, ShardBatches, iter_records, open_shards, pack, rank_ranges
from cnnlab.data.stream import eval_transform
from cnnlab.errors import CnnlabError, DataError
from tests.cli.conftest import run_cli

COLOURS = [(250, 0, 0), (0, 250, 0), (0, 0, 250)]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def packed(tmp_path) -> Path:
    """A folder dataset of 3 classes x 7 training images (5 test) packed into ~6 shards."""
    for split, per_class in (("train", 7), ("test", 5)):
        for label, colour in enumerate(COLOURS):
            d = tmp_path / "src" / split / f"c{label}"
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (16, 12), colour).save(d / f"{i}.png")
    pack(f"folder:{tmp_path / 'src'}", tmp_path / "shards", shard_size=10_000, quiet=True)
    return tmp_path / "shards"


def batches(shards, *, rank=0, world_size=1, shuffle=False, workers=0, epoch=0):
    b = ShardBatches(shards, 4, transform=eval_transform(8), mean=(0.5,) * 3, std=(0.5,) * 3, shuffle=shuffle,
                     workers=workers, rank=rank, world_size=world_size, generator=torch.Generator().manual_seed(rank))
    b.set_epoch(epoch)
    return b


def keys_of(b) -> list[int]:
    labels = []
    for _, y in b:
        labels.extend(y.tolist())
    assert len(labels) == b.num_images
    return b.indices().tolist()


def test_pack_writes_webdataset_shards_and_an_index(packed):
    index = json.loads((packed / INDEX).read_text())
    train = index["splits"]["train"]
    assert len(train) > 2 and sum(s["count"] for s in train) == 21
    assert index["classes"] == ["c0", "c1", "c2"]
    first = next(iter_records(packed / train[0]["file"], 0, 1))
    key, data, label = first
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 0 <= label < 3  # the file's own bytes
    import tarfile

    with tarfile.open(packed / train[0]["file"]) as tar:
        names = tar.getnames()
    assert names[0].endswith(".png") and names[1].endswith(".cls") and names[0][:9] == names[1][:9]


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_an_evaluation_pass_covers_every_image_exactly_once_across_ranks(packed, world_size):
    shards = open_shards(packed, "train")
    keys = [k for r in range(world_size) for k in keys_of(batches(shards, rank=r, world_size=world_size, workers=2))]
    assert sorted(keys) == list(range(21))


def test_a_training_epoch_covers_every_image_once_and_the_order_changes(packed):
    shards = open_shards(packed, "train")
    epochs = []
    for epoch in (0, 1):
        keys = [k for r in range(3) for k in keys_of(batches(shards, rank=r, world_size=3, shuffle=True, workers=1, epoch=epoch))]
        assert sorted(keys) == list(range(21))  # 21 = 3 x 7: nothing left out
        epochs.append(keys)
    assert epochs[0] != epochs[1]
    # Two ranks of 21: equal shares of 10, one image left out (a different one as the shard order changes)
    two = [k for r in range(2) for k in keys_of(batches(shards, rank=r, world_size=2, shuffle=True))]
    assert len(two) == len(set(two)) == 20


def test_rank_ranges_are_contiguous_shares_of_the_shard_sequence():
    pieces = [rank_ranges((5, 5, 5), [2, 0, 1], rank=r, world_size=2, drop_last=False) for r in range(2)]
    assert pieces == [[(2, 0, 5), (0, 0, 3)], [(0, 3, 5), (1, 0, 5)]]


def test_labels_survive_the_round_trip(packed):
    for x, y in batches(open_shards(packed, "test")):
        colour = x[:, :, 4, 4].argmax(1)  # the class's colour is its brightest channel
        assert torch.equal(colour, y)
    test = load_dataset(f"shards:{packed}", "test")  # small packs also load into memory
    assert len(test) == 15 and torch.equal(test.images[:, :, 5, 5].float().argmax(1), test.labels)


def test_a_truncated_shard_is_one_clear_error(packed, capsys):
    index = json.loads((packed / INDEX).read_text())
    path = packed / index["splits"]["test"][0]["file"]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 100])
    with pytest.raises(DataError, match="truncated"):
        open_shards(packed, "test")
    with pytest.raises(DataError, match="ends in the middle of a record"):
        list(iter_records(path, 0, index["splits"]["test"][0]["count"]))
    before = {p.name: p.read_bytes() for p in packed.iterdir()}
    code, out, err = run_cli(["data", f"shards:{packed}", "--no-grid"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and len(lines) == 1 and "truncated" in lines[0] and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in packed.iterdir()} == before  # nothing was changed


def test_a_truncated_record_met_while_streaming_stops_with_one_line(packed):
    index = json.loads((packed / INDEX).read_text())
    entry = index["splits"]["test"][0]
    path = packed / entry["file"]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    entry["bytes"] = len(data) // 2  # an index that agrees: only the record tells
    (packed / INDEX).write_text(json.dumps(index))
    with pytest.raises(DataError, match="ends in the middle of a record") as e:
        for _ in batches(open_shards(packed, "test"), workers=1):
            pass
    assert "\n" not in str(e.value)


def test_pack_refuses_a_folder_that_is_not_empty(packed, tmp_path, capsys):
    with pytest.raises(CnnlabError, match="not an empty folder"):
        pack(f"folder:{tmp_path / 'src'}", packed, shard_size=10_000)
    code, out, err = run_cli(["data", "pack", f"folder:{tmp_path / 'src'}", "--out", str(tmp_path / "new"), "--shard-size", "1MB"], capsys)
    assert code == 0, err
    assert "train 21 images in 1 shard(s), test 15 images in 1 shard(s)" in out
    code, out, err = run_cli(["data", "pack", f"folder:{tmp_path / 'src'}", "--out", str(tmp_path / "x"), "--shard-size", "big"], capsys)
    assert code != 0 and "expected a size" in err
