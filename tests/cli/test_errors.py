"""The command line as a user meets it: one-line errors, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import run_cli


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "lenet"], "error: unknown model 'lenet'; did you mean lenet5?"),
        (["train", "lenet5", "--data", "mnistt"], "error: unknown dataset 'mnistt'; did you mean mnist"),
        (["train", "lenet5", "-o", "depth=3"], "error: model 'lenet5' has no option 'depth'"),
        (["train", "lenet5", "--recipe", "nope"], "error: unknown recipe 'nope'"),
        (["train", "--resume", "/nonexistent/run"], "is not a run folder"),
        (["eval", "/nonexistent/run"], "is not a run folder"),
        (["train", "lenet5", "--set", "gama=0.5"], "error: unknown training setting 'gama'; did you mean gamma?"),
        (["train", "lenet5", "--set", "epochs=many"], "error: setting epochs expects an integer, got 'many'"),
        (["train", "lenet5", "--milestones", "half"], "error: setting milestones expects comma-separated numbers"),
        (["train", "lenet5", "--set", "schedule=linear"], "error: unknown schedule 'linear'; expected one of constant, step"),
        (["predict", "/nonexistent/run", "x.png"], "is not a run folder"),
    ],
)
def test_errors_are_one_line(args, message, capsys):
    code, out, err = run_cli(args, capsys)
    assert code != 0
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_missing_dataset_names_files_folder_and_variable(tmp_path, capsys, monkeypatch):
    # No network in tests: make every mirror unreachable.
    import cnnlab.data.download as download_module

    def offline(*a, **k):
        raise download_module.DataError("could not download: offline")

    monkeypatch.setattr("cnnlab.data.mnist.download", offline)
    code, _, err = run_cli(["train", "lenet5", "--data-root", str(tmp_path), "--out", str(tmp_path / "r")], capsys)
    assert code == 1
    assert "train-images-idx3-ubyte.gz" in err and str(tmp_path / "mnist") in err and "CNNLAB_DATA" in err


def test_unwritable_output_folder(tmp_path, capsys, data_root):
    blocked = tmp_path / "file"
    blocked.write_text("x")
    code, _, err = run_cli(["train", "lenet5", "--data-root", str(data_root), "--out", str(blocked / "run")], capsys)
    assert code == 1 and "cannot write to output folder" in err


def test_checkpoint_from_a_different_model(run_dir, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    for f in ("config.json", "data.json"):
        (other / f).write_text((run_dir / f).read_text().replace('"lenet5"', '"mlp"').replace('"activation": "relu",\n    "pool": "max"', '"activation": "relu"'))
    (other / "best.safetensors").write_bytes((run_dir / "best.safetensors").read_bytes())
    code, _, err = run_cli(["eval", str(other)], capsys)
    assert code == 1 and "does not fit model mlp" in err


def test_console_script_runs():
    exe = Path(sys.executable).parent / "cnnlab"
    result = subprocess.run([str(exe), "train", "vg16"], capture_output=True, text=True, env=os.environ.copy())
    assert result.returncode == 1
    assert result.stderr.strip() == "error: unknown model 'vg16'; did you mean vgg16, vgg16_c, vgg19?"
