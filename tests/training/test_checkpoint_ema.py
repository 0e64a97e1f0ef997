"""The EMA of the weights inside the checkpoint transaction: committed in each epoch's folder
and manifest with its counters, read back from the same checkpoint on resume."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from cnnlab.errors import CheckpointWarning
from cnnlab.models import create_model
from cnnlab.training.checkpoint import checkpoint_file, epoch_folder, weights_file
from cnnlab.training.config import TrainConfig
from cnnlab.training.extras import StepExtras
from cnnlab.training.loop import StopTraining, fit


def config(data: str, out, epochs: int = 3, lookahead: bool = False) -> TrainConfig:
    return TrainConfig(model="lenet5", data=data, epochs=epochs, batch_size=10, eval_batch_size=30, lr=0.05,
                       val_size=6, ema_decay=0.8, ema_every=2, eval_test_every_epoch=False, device="cpu", amp="off",
                       deterministic=True, threads=1, out=str(out), lookahead=lookahead)


def stop_after(n: int):
    def callback(epoch, record):
        if epoch == n:
            raise StopTraining

    return callback


@pytest.mark.parametrize("lookahead", [False, True])
def test_the_ema_is_committed_in_the_epoch_folder_and_a_resume_continues_it_bitwise(patterns, tmp_path, lookahead):
    # With lookahead the weights are pulled back to the EMA every 2 steps, across the epoch
    # boundaries (3 steps per epoch): a resume must restore both the average and the ramp.
    whole = fit(config(patterns, tmp_path / "whole", lookahead=lookahead), quiet=True)
    folder = epoch_folder(tmp_path / "whole", 3)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert "ema.safetensors" in manifest["files"]  # hashed and committed with the weights
    with safe_open(str(folder / "ema.safetensors"), framework="pt") as f:
        meta = f.metadata()
    steps = 3 * -(-24 // 10)  # 30 training images - 6 held out = 24: 3 steps per epoch
    assert meta["epoch"] == "3" and meta["steps"] == str(steps) and meta["n_averaged"] == str(steps // 2)
    assert checkpoint_file(tmp_path / "whole", 3, "ema.safetensors") == folder / "ema.safetensors"
    assert weights_file(tmp_path / "whole", "ema") == folder / "ema.safetensors"

    fit(config(patterns, tmp_path / "parts", lookahead=lookahead), quiet=True, callbacks=[stop_after(1)])
    fit(config(patterns, None, lookahead=lookahead), resume=tmp_path / "parts", quiet=True, callbacks=[stop_after(2)])
    parts = fit(config(patterns, None, lookahead=lookahead), resume=tmp_path / "parts", quiet=True)
    for name in ("last.safetensors", "ema.safetensors"):
        a = load_file(str(epoch_folder(tmp_path / "whole", 3) / name))
        b = load_file(str(epoch_folder(tmp_path / "parts", 3) / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert whole.final["ema_val_top1_err"] == parts.final["ema_val_top1_err"]


def test_a_checkpoint_without_its_ema_restarts_the_average_with_a_warning(patterns, tmp_path):
    fit(config(patterns, tmp_path / "run", epochs=2), quiet=True, callbacks=[stop_after(1)])
    folder = epoch_folder(tmp_path / "run", 1)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["files"]["ema.safetensors"]  # a checkpoint that never held it (EMA turned on later)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "run" / "ema.safetensors").unlink()
    assert checkpoint_file(tmp_path / "run", 1, "ema.safetensors") is None
    extras = StepExtras(config(patterns, None), create_model("lenet5", num_classes=3, in_chans=3), num_classes=3,
                        generator=torch.Generator())
    warning = extras.load(tmp_path / "run", epoch=1)
    assert warning and "no ema.safetensors of epoch 1" in warning and "restarts" in warning
    resumed = fit(config(patterns, None, epochs=2), resume=tmp_path / "run", quiet=True)
    assert resumed.final["epoch"] == 2 and "ema.safetensors" in json.loads(
        (epoch_folder(tmp_path / "run", 2) / "manifest.json").read_text())["files"]


def test_a_damaged_ema_makes_the_resume_fall_back_to_the_previous_checkpoint_whole(patterns, tmp_path):
    # The EMA is part of the transaction: a damaged one is a damaged checkpoint, so the resume
    # takes the one before (weights, state and EMA together) and still ends bitwise equal.
    whole = fit(config(patterns, tmp_path / "whole"), quiet=True)
    fit(config(patterns, tmp_path / "parts"), quiet=True, callbacks=[stop_after(2)])
    ema = epoch_folder(tmp_path / "parts", 2) / "ema.safetensors"
    data = bytearray(ema.read_bytes())
    data[-1] ^= 0xFF  # a flipped bit in the last tensor: still a readable file, no longer the committed one
    ema.unlink()  # the top-level view is a hard link to it: leave that one intact
    ema.write_bytes(bytes(data))
    assert checkpoint_file(tmp_path / "parts", 2, "ema.safetensors") is None
    with pytest.warns(CheckpointWarning, match="epoch-0002"):
        parts = fit(config(patterns, None), resume=tmp_path / "parts", quiet=True)
    assert [r["epoch"] for r in parts.history] == [1, 2, 3]
    for name in ("last.safetensors", "ema.safetensors"):
        a = load_file(str(epoch_folder(tmp_path / "whole", 3) / name))
        b = load_file(str(epoch_folder(tmp_path / "parts", 3) / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert whole.final["ema_val_top1_err"] == parts.final["ema_val_top1_err"]
