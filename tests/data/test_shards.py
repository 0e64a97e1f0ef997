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


def test_a_training_epoch_through_workers_gives_every_rank_the_same_batches_and_each_image_once(packed):
    # 21 records over 2 ranks, 2 workers each: 10 per rank (one left out), cut into batches of
    # exactly 4 by record whatever the workers hand over, so every rank takes the same steps.
    shards = open_shards(packed, "train")
    seen = []
    for rank in range(2):
        b = batches(shards, rank=rank, world_size=2, shuffle=True, workers=2, epoch=3)
        sizes = [len(y) for _, y in b]
        assert sizes == [4, 4, 2] and len(b) == 3
        seen.extend(b.indices().tolist())
    assert len(seen) == len(set(seen)) == 20 and set(seen) <= set(range(21))


def test_worker_parts_are_contiguous_shares_of_the_ranks_records():
    from cnnlab.data.shards import worker_parts

    pieces = [(2, 3, 5), (0, 0, 5)]  # 7 records
    parts = [worker_parts(pieces, worker=w, workers=3) for w in range(3)]
    assert parts == [[(2, 3, 5)], [(0, 0, 2)], [(0, 2, 5)]]
    assert sum(b - a for p in parts for _, a, b in p) == 7


def test_a_corrupt_record_is_skipped_without_shifting_the_batches(tmp_path):
    src = tmp_path / "src"
    for split in ("train", "test"):
        for label, colour in enumerate(COLOURS[:2]):
            d = src / split / f"c{label}"
            d.mkdir(parents=True)
            for i in range(5):
                Image.new("RGB", (8, 8), colour).save(d / f"{i}.png")
    (src / "train" / "c0" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    pack(f"folder:{src}", tmp_path / "shards", shard_size=10**6, quiet=True)
    b = ShardBatches(open_shards(tmp_path / "shards", "train"), 4, transform=eval_transform(8), mean=(0.5,) * 3,
                     std=(0.5,) * 3, workers=0, quiet=True)
    sizes = [len(y) for _, y in b]
    assert sum(sizes) == 9 and len(sizes) == 3 and len(b.skipped) == 1  # 10 records: 3 batches, one image short
    # Hand-overs of one record each (batch 1 in the workers' collation): some hold only the corrupt one.
    b = ShardBatches(open_shards(tmp_path / "shards", "train"), 1, transform=eval_transform(8), mean=(0.5,) * 3,
                     std=(0.5,) * 3, workers=0, quiet=True)
    assert len(b) == 10 and sum(len(y) for _, y in b) == 9
    # A batch made of a hand-over of only unreadable records (no image shape) and a readable one.
    empty = (torch.zeros(0, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))
    full = (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1]), torch.tensor([5, 6]))
    (x, y), = b._emit([empty, full])
    assert x.shape == (2, 3, 8, 8) and y.tolist() == [0, 1]


def shard_config(packed: Path, out: Path, **extra):
    from cnnlab.training.config import TrainConfig

    return TrainConfig(model="lenet5", data=f"shards:{packed}", data_mode="stream", epochs=2, batch_size=4,
                       eval_batch_size=8, lr=0.05, workers=1, device="cpu", amp="off", deterministic=True, threads=1,
                       out=str(out), **extra)


def test_training_streams_the_shards_through_the_loop_and_resumes_exactly(packed, tmp_path):
    from safetensors.torch import load_file

    from cnnlab.training.loop import StopTraining, fit

    whole = fit(shard_config(packed, tmp_path / "whole"), quiet=True)
    header = (tmp_path / "whole" / "train.log").read_text().splitlines()[0]
    assert "streamed from tar shards" in header and "21 train / 0 val / 15 test images" in header
    assert [r["epoch"] for r in whole.history] == [1, 2] and 0 <= whole.final["test_top1_err"] <= 1
    assert whole.data_info["image_size"] == [3, 32, 32] and whole.data_info["classes"] == ["c0", "c1", "c2"]
    # `cnnlab eval` of a run trained streamed streams too, with its validation crop: the numbers it logged.
    from cnnlab.training.evaluate import evaluate_members

    (member,) = evaluate_members([whole.path], device="cpu", weights="last", batch_size=8, stream=None, workers=0)
    assert member.result.num_images == 15 and member.result.loss == whole.final["test_loss"]
    assert member.result.top1_err == whole.final["test_top1_err"]

    def stop(epoch, record):
        raise StopTraining

    fit(shard_config(packed, tmp_path / "parts"), quiet=True, callbacks=[stop])
    fit(shard_config(packed, tmp_path / "parts"), resume=tmp_path / "parts", quiet=True)
    a, b = (load_file(str(tmp_path / run / "last.safetensors")) for run in ("whole", "parts"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_streaming_shards_refuses_a_hold_out_and_a_subset(packed, tmp_path):
    from cnnlab.training.loop import fit

    with pytest.raises(CnnlabError, match="val_size must be 0 when streaming tar shards"):
        fit(shard_config(packed, tmp_path / "a", val_size=3), quiet=True)
    with pytest.raises(CnnlabError, match="train_subset cannot be used when streaming tar shards"):
        fit(shard_config(packed, tmp_path / "b", train_subset=5), quiet=True)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.slow
def test_two_ranks_train_from_their_own_shards_and_evaluate_every_test_image_once(packed, tmp_path):
    """``cnnlab train --data shards:DIR --nproc 2`` (gloo on 127.0.0.1): each rank streams its
    share of the pack through the loop; the test error the two ranks gather is the one a
    single process measures on all 15 test images of the same checkpoint."""
    import os
    import subprocess
    import sys

    from cnnlab.training.evaluate import evaluate_members

    out = tmp_path / "run"
    command = [sys.executable, "-m", "cnnlab", "train", "lenet5", "--data", f"shards:{packed}", "--data-mode", "stream",
               "--epochs", "1", "--batch-size", "4", "--eval-batch-size", "4", "--workers", "1", "--threads", "1",
               "--device", "cpu", "--amp", "off", "--dist-timeout", "300", "--nproc", "2", "--out", str(out), "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = (out / "train.log").read_text().splitlines()
    assert "2 ranks (gloo" in lines[0] and "streamed from tar shards" in lines[0]
    assert "1 image(s) of each epoch's order left out" in lines[0]  # 21 records: 10 per rank
    record = json.loads(next(line for line in lines if line.startswith("{")))
    (member,) = evaluate_members([out], device="cpu", weights="last", stream=True, workers=0)
    assert member.result.num_images == 15
    assert record["test_top1_err"] == member.result.top1_err
    assert abs(record["test_loss"] - member.result.loss) < 1e-5  # other batch cuts: float rounding only


def test_a_pack_stays_in_memory_within_the_budget_and_streams_over_it(packed):
    from cnnlab.data.stream import plan_data

    assert plan_data(f"shards:{packed}", None).mode == "memory"
    plan = plan_data(f"shards:{packed}", None, memory_budget="1KB")
    assert plan.mode == "stream" and "tar shards" in plan.reason and "36 images decode to ~" in plan.reason
    assert plan_data(f"shards:{packed}", None, mode="stream").mode == "stream"
