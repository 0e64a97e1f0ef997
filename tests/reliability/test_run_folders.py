"""Run folders: one owner at a time, no dead folders, an honest first line.

- Two processes on one folder: exactly one trains, the other is refused in one line naming
  the holder (pid and host); a lock left by a killed process does not block the next one.
- A failure before the first checkpoint (an error, Ctrl-C, a NaN loss) removes what the run
  created; after it, the last checkpoint is kept and the message says which. A folder left by
  a process killed before its first checkpoint is taken over by a fresh start.
- train.log's header is on disk before the first epoch ends.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.training.checkpoint import latest_checkpoint, set_fault_hook
from cnnlab.training.loop import fit
from cnnlab.training.run import LOCK, RunBusyError, RunLock

from .conftest import Child, cli_target, kill_self, run_cnnlab, tiny_args, tiny_config

WAIT = 120  # seconds a test waits for a child to reach a point (never reached: the test fails)


@pytest.fixture(scope="module")
def warm(tmp_path_factory, tiny):
    return tmp_path_factory.mktemp("folders")


def wait_for(path: Path, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def pause_at(label: str, ready: Path, go: Path):
    """A fault hook: at ``label``, create ``ready`` and wait until ``go`` exists."""
    def hook(seen: str) -> None:
        if seen == label:
            ready.touch()
            wait_for(go, "the test to let go")

    return lambda: set_fault_hook(hook)


def test_second_process_on_a_busy_folder_is_refused_naming_the_holder(warm):
    out, ready, go = warm / "busy", warm / "busy.ready", warm / "busy.go"
    holder = Child(cli_target(tiny_args(out), before=pause_at("epoch 1: write last.safetensors", ready, go)))
    try:
        wait_for(ready, "the first process to hold the folder")
        lock_text = (out / LOCK).read_text()
        assert lock_text.startswith(f"pid {holder.pid} on host {socket.gethostname()} since ")
        for args in (tiny_args(out), ["train", "--resume", str(out), "-q"]):
            second = run_cnnlab(args)
            assert second.code == 1
            assert second.err_lines == [
                f"error: run folder {out} is in use by {lock_text.strip()}; wait for it to finish, or choose another --out"
            ]
    finally:
        go.touch()
    first = holder.wait()
    assert first.code == 0, first.err
    assert not (out / LOCK).exists()  # released, and the file removed on a clean exit
    assert latest_checkpoint(out).epoch == 3


def test_two_processes_started_together_exactly_one_trains(warm):
    out = warm / "race"
    a = Child(cli_target(tiny_args(out) + ["--seed", "1"]))
    b = Child(cli_target(tiny_args(out) + ["--seed", "2"]))
    results = {1: a.wait(), 2: b.wait()}
    winners = [seed for seed, r in results.items() if r.code == 0]
    assert len(winners) == 1, {s: (r.code, r.err) for s, r in results.items()}
    loser = results[3 - winners[0]]
    assert loser.code == 1 and len(loser.err_lines) == 1, loser.err
    assert ("is in use by pid" in loser.err) or ("already holds a run" in loser.err), loser.err
    # The folder is the winner's alone: its config, and weights that verify against its manifest.
    assert json.loads((out / "config.json").read_text())["seed"] == winners[0]
    assert latest_checkpoint(out).epoch == 3


def test_a_lock_left_by_a_killed_process_blocks_no_one(warm):
    out = warm / "killed-holder"
    killed = Child(cli_target(tiny_args(out), before=lambda: set_fault_hook(
        lambda label: kill_self() if label == "epoch 1: write last.safetensors" else None)))
    assert killed.wait().code == -signal.SIGKILL
    assert f"pid {killed.pid} " in (out / LOCK).read_text()  # stale: its holder is dead
    again = run_cnnlab(tiny_args(out))
    assert again.code == 0, again.err
    assert again.err_lines == [
        f"warning: {out} held a run that never completed an epoch (its process is gone); starting it again"
    ]


def test_the_lock_in_one_process():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        with RunLock(Path(d)):
            with pytest.raises(RunBusyError, match=f"is in use by pid {os.getpid()} on host"):
                RunLock(Path(d)).acquire()
        assert not (Path(d) / LOCK).exists()
        with RunLock(Path(d)):  # free again
            pass


def test_an_unknown_model_leaves_no_folder(warm):
    out = warm / "runs" / "nothing"
    result = run_cnnlab(["train", "lenet5x", "--out", str(out)])
    assert result.code == 1 and not out.exists() and not out.parent.exists()


def test_ctrl_c_in_epoch_1_removes_the_folder_and_says_so(warm):
    out = warm / "ctrl-c-1" / "run"
    before = lambda: set_fault_hook(lambda label: os.kill(os.getpid(), signal.SIGINT) if label.startswith("epoch 1: write last") else None)
    result = run_cnnlab([a for a in tiny_args(out) if a != "-q"], before=before)
    assert result.code == 130, result.err
    assert f"interrupted before the first epoch was saved; nothing is kept in {out}" in result.err
    assert "--resume" not in result.err
    assert not out.exists() and not out.parent.exists()


def test_ctrl_c_in_epoch_2_keeps_epoch_1_and_resume_finishes(warm):
    out = warm / "ctrl-c-2"
    before = lambda: set_fault_hook(lambda label: os.kill(os.getpid(), signal.SIGINT) if label.startswith("epoch 2: write last") else None)
    result = run_cnnlab([a for a in tiny_args(out) if a != "-q"], before=before)
    assert result.code == 130, result.err
    assert f"interrupted; 1 epoch(s) are saved in {out}; continue with: cnnlab train --resume {out}" in result.err
    resumed = run_cnnlab(["train", "--resume", str(out), "-q"])
    assert resumed.code == 0 and resumed.err_lines == [], resumed.err
    assert latest_checkpoint(out).epoch == 3


class NaNAfter:
    """A forward hook that makes the model's output NaN from the ``n``-th training forward on."""

    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    def __call__(self, module, args, output):
        # Training steps only: the input-size check before them runs a forward without autograd.
        if type(module).__name__ == "LeNet5" and module.training and torch.is_grad_enabled():
            self.seen += 1
            if self.seen >= self.n:
                return output * float("nan")
        return None


def test_a_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(warm):
    out = warm / "nan-late"
    # 7 training steps per epoch: step 10 is epoch 2, step 3.
    before = lambda: torch.nn.modules.module.register_module_forward_hook(NaNAfter(10))
    result = run_cnnlab(tiny_args(out), before=before)
    assert result.code == 1
    assert result.err_lines == [
        "error: the loss became nan at epoch 2, step 3 (last finite loss "
        + result.err.split("(last finite loss ")[1].split(")")[0]
        + f"); the learning rate 0.003 is probably too high: lower it (--lr) and train again; the checkpoint of epoch 1 in {out} is kept"
    ]
    assert latest_checkpoint(out).epoch == 1


def test_a_nan_loss_in_epoch_1_leaves_no_folder(warm):
    out = warm / "nan-early"
    result = run_cnnlab(tiny_args(out), before=lambda: torch.nn.modules.module.register_module_forward_hook(NaNAfter(2)))
    assert result.code == 1 and len(result.err_lines) == 1
    assert result.err_lines[0].endswith(f"no epoch had completed, so nothing is kept in {out}")
    assert "epoch 1, step 2 (last finite loss" in result.err
    assert not out.exists()


def test_the_log_header_is_on_disk_before_the_first_epoch_ends(warm):
    out, ready, go = warm / "header", warm / "header.ready", warm / "header.go"
    def pause_in_the_first_step(module, args) -> None:
        if type(module).__name__ == "LeNet5" and module.training and torch.is_grad_enabled() and not ready.exists():
            ready.touch()
            wait_for(go, "the test to let go")

    before = lambda: torch.nn.modules.module.register_module_forward_pre_hook(pause_in_the_first_step)
    child = Child(cli_target(tiny_args(out), before=before))
    try:
        wait_for(ready, "the first training step")
        header = (out / "train.log").read_text()
    finally:
        go.touch()
    assert child.wait().code == 0
    assert header.startswith("lenet5 (") and f"run folder {out}" in header and header.count("\n") == 1


def test_a_refused_out_leaves_the_run_alone(warm, tmp_path):
    out = warm / "kept"
    assert run_cnnlab(tiny_args(out)).code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    refused = run_cnnlab(tiny_args(out))
    assert refused.code == 1 and "already holds a run" in refused.err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # curves.png too


def test_library_errors_release_the_folder(warm):
    # In one process: a failed fit leaves no lock behind, so the next fit on the folder runs.
    out = warm / "library"
    with pytest.raises(CnnlabError):
        fit(tiny_config(out, model_options={"activation": "nonsense"}), quiet=True)
    assert not out.exists()
    fit(tiny_config(out, epochs=1), quiet=True)
    assert latest_checkpoint(out).epoch == 1 and not (out / LOCK).exists()
