"""Streaming evaluation: a split decoded file by file in workers gives exactly the numbers of
the same split in memory; the choice follows the run's memory budget and how it trained."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data.stream import FileDataset
from cnnlab.training.config import TrainConfig
from cnnlab.training.evaluate import evaluate, evaluate_members, run_split
from cnnlab.training.loop import fit
from cnnlab.training.run import load_run
from tests.cli.conftest import run_cli


@pytest.fixture(scope="module")
def run(patterns, tmp_path_factory):
    """LeNet-5 trained one epoch in memory on the mixed-size pattern folder (median 28: resized and cropped)."""
    out = tmp_path_factory.mktemp("stream-eval") / "run"
    config = TrainConfig(model="lenet5", data=patterns, epochs=1, batch_size=8, eval_batch_size=7, lr=0.05, val_size=6,
                         data_mode="memory", device="cpu", amp="off", threads=1, out=str(out))
    return fit(config, quiet=True).path


@pytest.mark.parametrize("split", ["test", "val"])
def test_a_streamed_split_gives_exactly_the_in_memory_numbers(run, split):
    memory, = evaluate_members([run], split=split, device="cpu", batch_size=5, stream=False)
    streamed, = evaluate_members([run], split=split, device="cpu", batch_size=5, stream=True, workers=2)
    assert isinstance(run_split(load_run(run), split, stream=True), FileDataset)
    assert memory.result.num_images == streamed.result.num_images == (12 if split == "test" else 6)
    assert torch.equal(memory.labels, streamed.labels)
    assert torch.equal(memory.probs, streamed.probs)  # bitwise: the same pixels, batches and order
    assert memory.result.loss == streamed.result.loss and torch.equal(memory.result.confusion, streamed.result.confusion)
    assert evaluate(run, split=split, device="cpu", stream=True).top1_err == memory.result.top1_err


def test_the_eval_command_streams_when_asked_and_prints_the_same_table(run, capsys):
    tables = []
    for flag in ("--no-stream", "--stream"):
        code, out, err = run_cli(["eval", str(run), flag, "--workers", "1", "--device", "cpu"], capsys)
        assert code == 0, err
        tables.append(out)
    assert "top-1 error" in tables[0] and tables[0] == tables[1]


def test_a_split_over_the_runs_memory_budget_or_trained_streamed_is_streamed(run):
    loaded = load_run(run)
    assert not isinstance(run_split(loaded, "test", stream=None), FileDataset)  # small: in memory
    loaded.config.memory_budget = "1KB"
    assert isinstance(run_split(loaded, "test", stream=None), FileDataset)
    loaded = load_run(run)
    loaded.data_info["mode"] = "stream"
    assert isinstance(run_split(loaded, "test", stream=None), FileDataset)
