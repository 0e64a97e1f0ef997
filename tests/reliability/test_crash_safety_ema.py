"""Kill -9 at every file operation of an EMA run's checkpoint commit, resume, and end with the
weights *and the weight average* of the uninterrupted run: the EMA is part of the transaction."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.training.checkpoint import latest_checkpoint
from cnnlab.training.config import TrainConfig
from cnnlab.training.loop import fit

from .conftest import Child, tiny_config
from .test_crash_safety import Events


def ema_config(out: Path) -> TrainConfig:
    return tiny_config(out, ema_decay=0.9, ema_every=2, amp="off")  # fp32: no measured precision choice


def child(out: Path, events: Events | None, *, resume: bool) -> Child:
    def target() -> int:
        if events is not None:
            events.install()
        fit(TrainConfig() if resume else ema_config(out), resume=out if resume else None, quiet=True)
        return 0

    return Child(target)


def weights(out: Path) -> tuple[dict, dict]:
    checkpoint = latest_checkpoint(out)
    assert checkpoint is not None and checkpoint.epoch == 3, out
    return tuple(load_file(str(checkpoint.file(n))) for n in ("last.safetensors", "ema.safetensors"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny):
    base = tmp_path_factory.mktemp("crash-ema")
    record = base / "events.txt"
    result = child(base / "reference", Events(record=record), resume=False).wait()
    assert result.code == 0, result.err
    events = [line.split("\t", 1)[1] for line in record.read_text().splitlines()]
    return base, weights(base / "reference"), events


@pytest.mark.slow
def test_a_kill_at_every_file_operation_of_an_ema_commit_resumes_to_the_same_average(reference):
    base, (last, ema), events = reference
    labels = [e for e in events if e.startswith("epoch 2: ")]
    assert any("ema.safetensors" in e for e in labels), labels  # its write is one of the commit's operations
    wrong = []
    for i, label in enumerate(labels):
        out = base / f"kill-{i}"
        code = child(out, Events(kill_label=label), resume=False).wait().code
        done = child(out, None, resume=True).wait()
        if code != -9 or done.code != 0:
            wrong.append(f"{label}: exit codes {code}, {done.code} ({done.err[-300:]})")
            continue
        got_last, got_ema = weights(out)
        if not all(torch.equal(last[k], got_last[k]) for k in last) or not all(torch.equal(ema[k], got_ema[k]) for k in ema):
            wrong.append(f"{label}: resumed to different weights or average")
    print(f"killed at {len(labels)} file operations of an EMA commit, {len(labels) - len(wrong)} resumed exactly")
    assert not wrong, wrong
