"""Kill -9 anywhere, resume, and end with the weights of a run that was never interrupted.

A training process is killed with SIGKILL (no cleanup runs) at one of its *events*: a forward
pass of the model (training or evaluation) or a file operation of the checkpoint writer
(every write, fsync, link, rename and removal, through cnnlab.training.checkpoint's fault
points). It is then resumed with ``cnnlab train --resume`` until it finishes, and its final
``last`` and ``best`` weights and its loss history must be bitwise equal to those of an
uninterrupted run of the same config (CPU, one thread, deterministic).

- every file operation of every epoch's checkpoint commit, deterministically;
- kill points drawn at random over all events (seed printed; set CNNLAB_KILL_SEED to replay);
- a run killed twice before it finishes.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.training.checkpoint import latest_checkpoint, load_state, set_fault_hook
from cnnlab.training.config import TrainConfig
from cnnlab.training.loop import fit

from .conftest import Child, kill_self, run_cnnlab, tiny_config

RANDOM_KILLS = 6  # at least 5 per run of the suite (the minimum)


class Events:
    """Counts a training process's events and SIGKILLs it at one (by number or by label)."""

    def __init__(self, *, kill_at: int | None = None, kill_label: str | None = None, record: Path | None = None):
        self.kill_at, self.kill_label, self.record, self.n = kill_at, kill_label, record, 0

    def install(self) -> None:
        set_fault_hook(self.event)
        torch.nn.modules.module.register_module_forward_pre_hook(self._forward)

    def _forward(self, module, args) -> None:
        # Not the input-size check before training (a training-mode forward without autograd).
        if type(module).__name__ == "LeNet5" and (torch.is_grad_enabled() or not module.training):
            self.event("forward " + ("train" if module.training else "eval"))

    def event(self, label: str) -> None:
        self.n += 1
        if self.record is not None:
            with open(self.record, "a") as f:
                f.write(f"{self.n}\t{label}\n")
        if self.n == self.kill_at or label == self.kill_label:
            kill_self()


def train_child(out: Path, events: Events | None) -> Child:
    def target() -> int:
        if events is not None:
            events.install()
        fit(tiny_config(out), quiet=True)
        return 0

    return Child(target)


def final(out: Path) -> tuple[dict, dict, list]:
    checkpoint = latest_checkpoint(out)
    assert checkpoint is not None and checkpoint.epoch == 3, out
    # What the killed process left half-written is gone: temporaries, unfinished epoch folders.
    assert not [p for p in out.rglob("*") if ".tmp" in p.name or ".view-" in p.name], out
    assert all((f / "manifest.json").is_file() for f in (out / "checkpoints").iterdir()), out
    state = load_state(checkpoint.file("state.pt"))
    losses = [(r["train_loss"], r["val_loss"], r["test_loss"]) for r in state["history"]]
    return load_file(str(checkpoint.file("last.safetensors"))), load_file(str(checkpoint.file("best.safetensors"))), losses


def same(a: tuple, b: tuple) -> bool:
    (last_a, best_a, hist_a), (last_b, best_b, hist_b) = a, b
    return (last_a.keys() == last_b.keys() and all(torch.equal(last_a[k], last_b[k]) for k in last_a)
            and all(torch.equal(best_a[k], best_b[k]) for k in best_a) and str(hist_a) == str(hist_b))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny):
    """An uninterrupted run, and the list of its events."""
    base = tmp_path_factory.mktemp("crash")
    record = base / "events.txt"
    result = train_child(base / "reference", Events(record=record)).wait()
    assert result.code == 0, result.err
    events = [line.split("\t", 1)[1] for line in record.read_text().splitlines()]
    return base, final(base / "reference"), events


def resume_child(out: Path, events: Events | None) -> Child:
    def target() -> int:
        if events is not None:
            events.install()
        fit(TrainConfig(), resume=out, quiet=True)  # the run's saved config
        return 0

    return Child(target)


def kill_and_resume(out: Path, events: list[Events], *, cli: bool = True) -> list[int]:
    """Run, killed at each of ``events`` in turn, then resume until done (``cli``: with
    ``cnnlab train --resume``, else the library's fit); the exit codes."""
    codes = [train_child(out, events[0]).wait().code]
    for later in events[1:]:
        codes.append(resume_child(out, later).wait().code)
    result = run_cnnlab(["train", "--resume", str(out), "-q"]) if cli else resume_child(out, None).wait()
    assert result.code == 0, (out, result.err)
    assert "Traceback" not in result.err
    return codes + [result.code]


def test_the_reference_run_has_the_events_the_kills_aim_at(reference):
    _, _, events = reference
    commits = [e for e in events if e.startswith("epoch ")]
    assert sum(e.endswith("rename manifest.json") for e in commits) == 3
    assert {"forward train", "forward eval"} <= set(events)
    assert any("remove epoch-0001" in e for e in commits)  # the third commit prunes the first


@pytest.mark.slow
@pytest.mark.parametrize("epoch", [1, 2, 3])
def test_a_kill_at_every_file_operation_of_a_commit(reference, epoch):
    base, expected, events = reference
    labels = [e for e in events if e.startswith(f"epoch {epoch}: ")]
    assert len(labels) >= 10, labels
    wrong = []
    for i, label in enumerate(labels):
        out = base / f"commit{epoch}-{i}"
        codes = kill_and_resume(out, [Events(kill_label=label)], cli=False)  # the CLI's resume: the tests below
        if codes[0] != -9:
            wrong.append(f"{label}: not killed ({codes})")
        elif not same(final(out), expected):
            wrong.append(f"{label}: resumed to different weights")
    print(f"epoch {epoch}: killed at {len(labels)} file operations, {len(labels) - len(wrong)} resumed exactly")
    assert not wrong, wrong


@pytest.mark.slow
def test_kills_at_random_points_resume_exactly(reference):
    base, expected, events = reference
    seed = int(os.environ.get("CNNLAB_KILL_SEED", random.SystemRandom().randrange(10**6)))
    rng = random.Random(seed)
    points = sorted(rng.sample(range(1, len(events) + 1), RANDOM_KILLS))
    print(f"random kill points of {len(events)} events (CNNLAB_KILL_SEED={seed}): "
          + ", ".join(f"{n} ({events[n - 1]})" for n in points))
    wrong = []
    for n in points:
        out = base / f"random-{seed}-{n}"
        codes = kill_and_resume(out, [Events(kill_at=n)])
        if codes[0] != -9 or not same(final(out), expected):
            wrong.append(f"event {n} ({events[n - 1]}): exit codes {codes}")
    assert not wrong, f"seed {seed}: {wrong}"


@pytest.mark.slow
def test_a_run_killed_twice_resumes_exactly(reference):
    base, expected, events = reference
    first = next(i for i, e in enumerate(events, 1) if e == "epoch 1: rename manifest.json") + 3
    # The resumed process counts its own events from 1: kill it in the middle of epoch 3's commit.
    second = Events(kill_label="epoch 3: write state.pt")
    codes = kill_and_resume(base / "twice", [Events(kill_at=first), second])
    assert codes[:2] == [-9, -9] and same(final(base / "twice"), expected)


def test_a_kill_before_the_first_checkpoint_resumes_from_epoch_0(reference):
    base, expected, _ = reference
    out = base / "before-first"
    assert train_child(out, Events(kill_at=3)).wait().code == -9  # a forward pass of epoch 1
    assert (out / "config.json").is_file() and latest_checkpoint(out) is None
    result = run_cnnlab(["train", "--resume", str(out), "-q"])
    assert result.code == 0, result.err
    assert result.err_lines[0] == f"warning: {out} has no completed epoch to resume from; starting it from epoch 0"
    assert same(final(out), expected)
