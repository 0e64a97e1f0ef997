"""`cnnlab train`: every setting reachable, the numbers it prints, the curves it draws."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import re

import click
import pytest

from cnnlab.cli import main
from cnnlab.cli.common import cli
from cnnlab.cli.train import OWN_OPTIONS, collect_settings
from cnnlab.training.config import TrainConfig
from cnnlab.training.run import read_history
from tests.cli.conftest import run_cli


def test_every_train_config_field_has_a_flag():
    command = cli.commands["train"]
    flags = {p.name for p in command.params}
    own = {"model": "model", "data": "data", "recipe": "recipe", "model_options": "options"}
    assert set(own) == set(OWN_OPTIONS)
    for f in dataclasses.fields(TrainConfig):
        assert own.get(f.name, f.name) in flags, f"TrainConfig.{f.name} has no flag in `cnnlab train`"
    assert "pairs" in flags  # --set
    choices = {p.name: p.type.choices for p in command.params if isinstance(p.type, click.Choice)}
    assert choices["schedule"] == ("constant", "step", "multistep", "plateau", "cosine", "onecycle")


def test_set_and_flags_merge_and_conflicts_are_refused():
    got = collect_settings({"epochs": 2, "gamma": None, "milestones": "0.2,0.4"}, ("gamma=0.5", "val_size=none"))
    assert got == {"epochs": 2, "milestones": (0.2, 0.4), "gamma": 0.5, "val_size": None}
    with pytest.raises(click.UsageError, match="epochs is given twice"):
        collect_settings({"epochs": 2}, ("epochs=3",))
    with pytest.raises(click.UsageError, match="give the model as MODEL"):
        collect_settings({}, ("model=vgg16",))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root):
    """(run folder, stdout) of `cnnlab train` through flags that had none before, and --set."""
    out = tmp_path_factory.mktemp("train") / "run"
    args = [
        "train", "lenet5", "--data", "mnist", "--data-root", str(data_root), "--epochs", "2", "--batch-size", "50",
        "--train-subset", "300", "--val-size", "100", "--eval-batch-size", "500", "--schedule", "step",
        "--step-size", "0.5", "--gamma", "0.5", "--set", "patience=3", "--no-eval-test-every-epoch",
        "--no-deterministic", "--pad", "2", "--set", "threads=none", "--device", "cpu", "--out", str(out), "-q",
    ]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        main(args)
    return out, stdout.getvalue()


def test_train_applies_the_settings_prints_the_final_numbers_and_draws_curves(trained):
    out, stdout = trained
    config = json.loads((out / "config.json").read_text())
    expected = dict(step_size=0.5, gamma=0.5, patience=3, eval_test_every_epoch=False, deterministic=False, pad=2,
                    eval_batch_size=500, train_subset=300, schedule="step", optimizer="adam",
                    recipe="lenet5-mnist", out=str(out))
    assert {k: config[k] for k in expected} == expected
    # threads=none (decide for the machine), --amp auto and an unset layout: config.json records
    # what was decided, so a resume continues with the same arithmetic.
    assert config["threads"] >= 1 and config["amp"] in ("on", "off") and isinstance(config["channels_last"], bool)
    history = read_history(out / "metrics.csv")
    # 6 steps per epoch of 12: the step schedule halves the recipe's lr 0.005 at half of training.
    assert [r["lr"] for r in history] == pytest.approx([0.005, 0.0025])
    assert math.isnan(history[0]["test_top1_err"]) and not math.isnan(history[1]["test_top1_err"])
    printed = re.search(r"test top-1 error (\d+\.\d\d)% \(accuracy (\d+\.\d\d)%\), top-5 error (\d+\.\d\d)%", stdout)
    assert printed[1] == f"{100 * history[-1]['test_top1_err']:.2f}"
    assert printed[3] == f"{100 * history[-1]['test_top5_err']:.2f}"
    assert f"run folder: {out}" in stdout
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_of_a_finished_run_redraws_missing_curves(trained, capsys):
    out, _ = trained
    (out / "curves.png").unlink()
    code, stdout, err = run_cli(["train", "--resume", str(out), "-q"], capsys)
    assert code == 0, err
    assert (out / "curves.png").is_file()
    assert len(read_history(out / "metrics.csv")) == 2  # nothing left to train
    code, _, err = run_cli(["train", "--resume", str(out), "--epochs", "3"], capsys)
    assert code == 2 and "--resume continues a run with its saved config" in err
