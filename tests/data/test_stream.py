"""The streaming path: the automatic choice, decode-time crops, workers, corrupt files, ranks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.stream import (
    StreamBatches,
    eval_transform,
    parse_size,
    plan_data,
    stream_splits,
    train_transform,
)
from cnnlab.errors import CnnlabError, DataError

COLOURS = [(250, 0, 0), (0, 250, 0), (0, 0, 250)]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))


def make_folder(root: Path, per_class: int = 6, size=(40, 30)) -> str:
    for split, n in (("train", per_class), ("test", 2)):
        for label, colour in enumerate(COLOURS):
            d = root / split / f"c{label}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = np.full((size[1], size[0], 3), colour, np.uint8)
                arr[:, : size[0] // 2] //= 2  # a left half darker: crops and flips show
                Image.fromarray(arr).save(d / f"{i}.jpg", quality=95)
    return f"folder:{root}"


def test_parse_size():
    assert parse_size("1GB") == 10**9 and parse_size("1.5 GiB") == int(1.5 * 2**30) and parse_size("4096") == 4096
    for bad in ("big", "-1GB", "0", "3 parsecs"):
        with pytest.raises(CnnlabError):
            parse_size(bad)


def test_plan_keeps_small_data_in_memory_and_streams_what_does_not_fit(tmp_path):
    name = make_folder(tmp_path)
    fits = plan_data(name, None, memory_budget="1GB")
    assert fits.mode == "memory" and "within the budget" in fits.reason and "memory_budget 1GB" in fits.reason
    over = plan_data(name, None, memory_budget="10KB")  # 24 images of 40x30x3 are 86 KB
    assert over.mode == "stream" and "over the budget" in over.reason
    assert plan_data(name, None, mode="stream").mode == "stream"
    assert plan_data(name, None, mode="memory").mode == "memory"
    assert "of" in plan_data(name, None).reason and "RAM" in plan_data(name, None).reason  # default: a share of RAM


def test_a_dataset_without_files_cannot_be_streamed(data_root):
    assert plan_data("mnist", data_root).mode == "memory"
    with pytest.raises(DataError, match="mnist cannot be streamed"):
        plan_data("mnist", data_root, mode="stream")


# --- decode-time crops ----------------------------------------------------------------------


def test_random_resized_crop_boxes_have_the_papers_area_and_aspect():
    t = train_transform("inception", 224)
    rng = np.random.default_rng(0)
    for _ in range(500):
        left, top, right, bottom = t.box(500, 375, rng)
        w, h = right - left, bottom - top
        assert 0 <= left and 0 <= top and right <= 500 and bottom <= 375
        area = w * h / (500 * 375)
        fallback = (w, h) == (500, 375)
        assert fallback or (0.08 - 0.01 <= area <= 1.0 and 3 / 4 - 0.02 <= w / h <= 4 / 3 + 0.02)


def test_scale_jittering_draws_s_in_the_vgg_range():
    t = train_transform("vgg", 224)
    assert (t.kind, t.sides) == ("scale", (256, 512))
    sides = []
    rng = np.random.default_rng(1)
    for _ in range(400):
        left, top, right, bottom = t.box(400, 300, rng)
        sides.append(224 * 300 / (right - left))  # the S that maps the box to a 224 crop
    assert 255.5 < min(sides) < 270 and 500 < max(sides) < 512.5
    assert train_transform("vgg", 112).sides == (128, 256)  # scaled with the output size


def test_alexnet_crops_stay_in_the_centre_square():
    t = train_transform("alexnet", 224)
    rng = np.random.default_rng(2)
    for _ in range(200):
        left, top, right, bottom = t.box(400, 300, rng)
        assert 50 - 1e-9 <= left and right <= 350 + 1e-9  # inside the centre 300x300 square
        assert right - left == pytest.approx(224 * 300 / 256)


def test_evaluation_is_resize_256_centre_224():
    t = eval_transform(224)
    assert (t.resize, t.size) == (256, 224)
    left, top, right, bottom = t.box(512, 400, np.random.default_rng())
    side = 224 * 400 / 256
    assert right - left == pytest.approx(side) and left == pytest.approx((512 - side) / 2)
    assert eval_transform(224, full=True).size == 256  # the 256 square that 10-crop cuts


def test_decoded_crops_are_uint8_of_the_output_size(tmp_path):
    make_folder(tmp_path)
    path = next((tmp_path / "train" / "c1").iterdir())
    for t in (train_transform("imagenet", 24), train_transform("resnet", 24), eval_transform(24)):
        out = t(str(path), seed=3)
        assert out.shape == (3, 24, 24) and out.dtype == torch.uint8
        assert out[1].float().mean() > 100  # green class
    assert torch.equal(train_transform("imagenet", 24)(str(path), 5), train_transform("imagenet", 24)(str(path), 5))


# --- the batches ------------------------------------------------------------------------------


def splits(tmp_path, **kwargs):
    return stream_splits(make_folder(tmp_path), None, size=16, val_size=3, **kwargs)


def collect(batches) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*list(batches))
    return torch.cat(xs), torch.cat(ys)


def test_splits_hold_out_like_load_dataset(tmp_path):
    train, val, test = splits(tmp_path)
    assert (len(train), len(val), len(test)) == (15, 3, 6)
    assert set(train.paths.tolist()).isdisjoint(val.paths.tolist())
    assert train.classes == ("c0", "c1", "c2") and train.image_size == (3, 16, 16)
    assert all(0 < m < 1 for m in train.mean)


def test_same_images_with_any_number_of_workers(tmp_path):
    train, _, _ = splits(tmp_path)
    got = []
    for workers in (0, 1, 2):
        b = StreamBatches(train, 4, transform=train_transform("imagenet", 16), shuffle=True, workers=workers,
                          generator=torch.Generator().manual_seed(0), seed=0)
        got.append(collect(b))
    for x, y in got[1:]:
        assert torch.equal(x, got[0][0]) and torch.equal(y, got[0][1])
    labels = got[0][1]
    assert sorted(labels.tolist()) == sorted(train.labels.tolist())  # every image once


def test_labels_match_the_pixels(tmp_path):
    _, _, test = splits(tmp_path)
    x, y = collect(StreamBatches(test, 4, transform=eval_transform(16), workers=1))
    assert torch.equal(x[:, :, 8, 12].argmax(1), y)  # right half: the class colour at full strength


def test_a_corrupt_jpeg_is_skipped_and_counted_never_a_crash(tmp_path, capsys):
    train, _, _ = splits(tmp_path)
    bad = Path(train.path(2))
    bad.write_bytes(bad.read_bytes()[:200])  # truncated mid-image
    Path(train.path(5)).write_bytes(b"not an image at all")
    b = StreamBatches(train, 4, transform=train_transform("imagenet", 16), shuffle=True, workers=1,
                      generator=torch.Generator().manual_seed(0), seed=0)
    for epoch in range(2):
        b.set_epoch(epoch)
        x, y = collect(b)
        assert len(y) == len(train) - 2
    assert len(b.skipped) == 4 and {p for p, _ in b.skipped} == {str(bad), train.path(5)}
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "skipped" in line]
    assert len(lines) == 2 and "skipped 2 unreadable image(s) this pass" in lines[0]


def test_ranks_take_disjoint_epoch_seeded_shares(tmp_path):
    train, _, test = splits(tmp_path)
    def part(rank, epoch, dataset=train, shuffle=True):
        b = StreamBatches(dataset, 2, transform=eval_transform(16), shuffle=shuffle, workers=0, rank=rank, world_size=2,
                          seed=7, generator=torch.Generator().manual_seed(rank))
        b.set_epoch(epoch)
        keys = b.indices().tolist()
        assert len(collect(b)[1]) == b.num_images == len(keys)
        return keys
    a, b = part(0, 0), part(1, 0)
    assert len(a) == len(b) == 7 and set(a).isdisjoint(b)  # 15 images: 7 each, one left out
    assert part(0, 1) != a  # a new order each epoch
    # evaluation: whole single-process batches, every image once
    ea, eb = part(0, 0, test, False), part(1, 0, test, False)
    assert sorted(ea + eb) == list(range(len(test))) and ea[:2] == [0, 1] and eb[:2] == [2, 3]
    with pytest.raises(ValueError, match="need seed"):
        StreamBatches(train, 2, transform=eval_transform(16), shuffle=True, world_size=2, rank=0)


@pytest.mark.slow
def test_training_streams_and_says_so_in_the_header(tmp_path, monkeypatch):
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.loop import fit

    name = make_folder(tmp_path)
    run = fit(TrainConfig(model="lenet5", data=name, epochs=1, batch_size=4, val_size=3, data_mode="stream",
                          crop_size=32, workers=1, augment="imagenet", model_options={}, out=str(tmp_path / "run"),
                          device="cpu"), quiet=True)
    header = (tmp_path / "run" / "train.log").read_text().splitlines()[0]
    assert "streamed from image files (data_mode=stream); 1 decoding worker(s), 32x32 crops" in header
    assert math.isfinite(run.final["train_loss"]) and run.data_info["image_size"] == [3, 32, 32]
