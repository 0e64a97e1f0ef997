"""The checkpoint transaction, file by file: manifest, commit, verification, fall-back, cleanup."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.errors import CheckpointError, CheckpointWarning
from cnnlab.models import create_model
from cnnlab.training.checkpoint import (
    MANIFEST,
    TrainingState,
    epoch_folder,
    latest_checkpoint,
    load_checkpoint,
    load_state,
    remove_unfinished,
    save_checkpoint,
    save_state,
    save_weights,
    set_fault_hook,
    weights_file,
)


def model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("lenet5")


def commit(run: Path, epoch: int, *, best: bool = True) -> torch.nn.Module:
    m = model(epoch)
    state = TrainingState(epoch=epoch, history=[{"epoch": e} for e in range(1, epoch + 1)], best_val=0.5,
                          optimizer={"state": {}, "param_groups": []}, plateau={}, rng={"seed": torch.tensor([epoch])})
    save_checkpoint(run, m, state, model_name="lenet5", is_best=best)
    return m


def equal_to(path: Path, m: torch.nn.Module) -> bool:
    saved = load_file(str(path))
    return all(torch.equal(saved[k], v) for k, v in m.state_dict().items())


@pytest.fixture
def no_hook():
    yield
    set_fault_hook(None)


def test_a_commit_writes_a_manifest_naming_the_epoch_and_each_files_hash(tmp_path):
    m = commit(tmp_path, 1)
    folder = epoch_folder(tmp_path, 1)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["epoch"] == 1 and manifest["best_epoch"] == 1 and manifest["format"] == 1
    for name, entry in manifest["files"].items():
        data = (folder / name).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}, name
    assert equal_to(folder / "last.safetensors", m)
    # The top-level names are hard links to the committed files.
    for name in ("last.safetensors", "best.safetensors", "state.pt"):
        assert os.path.samefile(tmp_path / name, folder / name)


def test_two_checkpoints_are_kept_and_best_is_carried_by_a_link(tmp_path):
    best = commit(tmp_path, 1)
    commit(tmp_path, 2, best=False)
    last = commit(tmp_path, 3, best=False)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch-0002", "epoch-0003"]
    newest = latest_checkpoint(tmp_path)
    assert newest.epoch == 3 and newest.best_epoch == 1
    assert equal_to(newest.file("best.safetensors"), best) and equal_to(newest.file("last.safetensors"), last)
    assert weights_file(tmp_path, "best") == newest.file("best.safetensors")


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_with_one_warning(tmp_path):
    commit(tmp_path, 1)
    m2 = commit(tmp_path, 2)
    commit(tmp_path, 3)
    state = epoch_folder(tmp_path, 3) / "state.pt"
    data = bytearray(state.read_bytes())
    data[100] ^= 1
    state.unlink()
    state.write_bytes(bytes(data))
    target = create_model("lenet5")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_checkpoint(tmp_path, target)
    assert loaded.epoch == 2 and equal_to(epoch_folder(tmp_path, 2) / "last.safetensors", target)
    assert equal_to(epoch_folder(tmp_path, 2) / "last.safetensors", m2)
    messages = [str(w.message) for w in caught if issubclass(w.category, CheckpointWarning)]
    assert messages == [f"checkpoint epoch-0003 (state.pt does not match its manifest (changed or damaged after it "
                        f"was written)) in {tmp_path} is damaged; using epoch-0002"]


def test_files_that_disagree_on_the_epoch_are_caught(tmp_path):
    commit(tmp_path, 1)
    commit(tmp_path, 2)
    folder = epoch_folder(tmp_path, 2)
    # Epoch 1's weights put into epoch 2's checkpoint, the manifest's hash made to match:
    # the epoch in the weights' metadata still tells.
    (folder / "last.safetensors").unlink()
    shutil.copy(epoch_folder(tmp_path, 1) / "last.safetensors", folder / "last.safetensors")
    manifest = json.loads((folder / MANIFEST).read_text())
    data = (folder / "last.safetensors").read_bytes()
    manifest["files"]["last.safetensors"] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.warns(CheckpointWarning, match="last.safetensors is from epoch 1, the manifest says epoch 2"):
        assert latest_checkpoint(tmp_path).epoch == 1


def test_nothing_undamaged_is_one_error(tmp_path):
    commit(tmp_path, 1)
    (epoch_folder(tmp_path, 1) / "state.pt").unlink()
    with pytest.raises(CheckpointError, match=r"checkpoint epoch-0001 \(state.pt is missing\) .* no undamaged checkpoint is left"):
        load_checkpoint(tmp_path, create_model("lenet5"))


def test_an_unfinished_write_is_never_read_and_is_cleaned_up(tmp_path):
    commit(tmp_path, 1)
    half = epoch_folder(tmp_path, 2)
    half.mkdir()
    (half / "last.safetensors").write_bytes(b"half a file")
    (tmp_path / f".metrics.csv.tmp-{os.getpid() + 1}").write_text("x")
    assert latest_checkpoint(tmp_path).epoch == 1
    removed = remove_unfinished(tmp_path)
    assert half in removed and not half.exists()
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize("failing", ["write last.safetensors", "fsync last.safetensors", "link best.safetensors",
                                     "write state.pt", "fsync state.pt", "write manifest.json.tmp", "rename manifest.json"])
def test_a_full_disk_before_the_commit_keeps_the_previous_checkpoint(tmp_path, failing, no_hook):
    m1 = commit(tmp_path, 1)

    def full(label: str) -> None:
        if label == f"epoch 2: {failing}":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    set_fault_hook(full)
    with pytest.raises(CheckpointError) as e:
        commit(tmp_path, 2, best=False)
    assert str(e.value) == (f"could not write the checkpoint of epoch 2 in {tmp_path}: the disk is full; the checkpoint "
                            f"of epoch 1 is intact; free space and continue with: cnnlab train --resume {tmp_path}")
    assert not epoch_folder(tmp_path, 2).exists()
    newest = latest_checkpoint(tmp_path)
    assert newest.epoch == 1 and equal_to(newest.file("last.safetensors"), m1)
    assert equal_to(tmp_path / "last.safetensors", m1)


class Sentinel:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch '{self.path}'",))


def test_a_malicious_state_is_refused_in_one_line_without_running_it(tmp_path):
    path = tmp_path / "state.pt"
    for protocol in (2, 4):  # torch's unpickler names the global for protocol 2 only
        with open(path, "wb") as f:
            pickle.dump({"epoch": 1, "x": Sentinel(str(tmp_path / "pwned"))}, f, protocol=protocol)
        with pytest.raises(CheckpointError) as e:
            load_state(path)
        message = str(e.value)
        assert "\n" not in message and "weights_only" not in message and "refused" in message
        assert protocol == 4 or "(posix.system)" in message, message
    assert not (tmp_path / "pwned").exists()


def test_an_old_style_folder_is_read_and_a_torn_one_refused(tmp_path):
    m = model(3)
    save_weights(m, tmp_path / "last.safetensors", {"model": "lenet5", "epoch": "3"})
    state = {"epoch": 3, "history": [], "best_val": 0.1, "optimizer": {}, "plateau": {}, "rng": {}}
    save_state(state, tmp_path / "state.pt")
    target = create_model("lenet5")
    assert load_checkpoint(tmp_path, target).epoch == 3 and equal_to(tmp_path / "last.safetensors", target)
    assert weights_file(tmp_path, "best") == tmp_path / "last.safetensors"
    save_state({**state, "epoch": 2}, tmp_path / "state.pt")
    with pytest.raises(CheckpointError, match="torn checkpoint: last.safetensors is from epoch 3, state.pt from epoch 2"):
        load_checkpoint(tmp_path, create_model("lenet5"))


def test_extra_weights_are_part_of_the_transaction(tmp_path):
    ema = model(7)
    state = TrainingState(epoch=1, history=[], best_val=0.1, optimizer={}, plateau={}, rng={}, extra={"steps": 5})
    save_checkpoint(tmp_path, model(1), state, model_name="lenet5", is_best=True, extra_weights={"ema.safetensors": ema})
    checkpoint = latest_checkpoint(tmp_path)
    assert "ema.safetensors" in checkpoint.manifest["files"] and equal_to(weights_file(tmp_path, "ema"), ema)
    assert os.path.samefile(tmp_path / "ema.safetensors", checkpoint.file("ema.safetensors"))
    assert load_checkpoint(tmp_path, create_model("lenet5")).extra == {"steps": 5}
