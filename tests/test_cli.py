"""The command line as a user meets it: one-line errors, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnlab
from cnnlab.cli import main
from cnnlab.data import load_dataset
from cnnlab.train.config import TrainConfig


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("cli") / "run"
    cnnlab.train(
        TrainConfig(model="lenet5", data="mnist", epochs=1, batch_size=50, train_subset=1000, val_size=500,
                    optimizer="adam", lr=0.003, model_options={"activation": "relu", "pool": "max"},
                    out=str(out), data_root=str(data_root), device="cpu"),
        quiet=True,
    )
    return out


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "lenet"], "error: unknown model 'lenet'; did you mean lenet5?"),
        (["train", "lenet5", "--data", "mnistt"], "error: unknown dataset 'mnistt'; did you mean mnist"),
        (["train", "lenet5", "-o", "depth=3"], "error: model 'lenet5' has no option 'depth'"),
        (["train", "lenet5", "--recipe", "nope"], "error: unknown recipe 'nope'"),
        (["train", "--resume", "/nonexistent/run"], "is not a run folder"),
        (["eval", "/nonexistent/run"], "is not a run folder"),
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


def test_eval_prints_errors(run_dir, capsys):
    code, out, err = run_cli(["eval", str(run_dir)], capsys)
    assert code == 0, err
    assert "top-1 error" in out and "10,000" in out


def test_predict_on_png(run_dir, tmp_path, capsys, data_root):
    test = load_dataset("mnist", "test", data_root)
    digit = test.images[0, 0].numpy()  # a 7
    white_on_black = tmp_path / "seven.png"
    Image.fromarray(digit).save(white_on_black)
    # The same digit drawn black on white and larger, as a user would scan it.
    black_on_white = tmp_path / "seven_scan.png"
    Image.fromarray(255 - np.kron(digit, np.ones((3, 3), dtype=np.uint8))).save(black_on_white)
    code, out, err = run_cli(["predict", str(run_dir), str(white_on_black), str(black_on_white)], capsys)
    assert code == 0, err
    lines = [l for l in out.splitlines() if "%" in l]
    assert len(lines) == 10  # top-5 for each image
    assert lines[0].split()[0] == "7" and lines[5].split()[0] == "7"


def test_predict_corrupt_image(run_dir, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    code, _, err = run_cli(["predict", str(run_dir), str(bad)], capsys)
    assert code == 1 and f"cannot decode image {bad}" in err


def test_checkpoint_from_a_different_model(run_dir, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    for f in ("config.json", "data.json"):
        (other / f).write_text((run_dir / f).read_text().replace('"lenet5"', '"mlp"').replace('"activation": "relu",\n    "pool": "max"', '"activation": "relu"'))
    (other / "best.safetensors").write_bytes((run_dir / "best.safetensors").read_bytes())
    code, _, err = run_cli(["eval", str(other)], capsys)
    assert code == 1 and "does not fit model mlp" in err


def test_models_lists_parameters(capsys):
    code, out, _ = run_cli(["models", "lenet*", "--no-macs", "--format", "csv"], capsys)
    assert code == 0
    assert "lenet5,lenet,61706," in out


def test_console_script_runs():
    exe = Path(sys.executable).parent / "cnnlab"
    result = subprocess.run([str(exe), "train", "vg16"], capture_output=True, text=True, env=os.environ.copy())
    assert result.returncode == 1
    assert result.stderr.strip() == "error: unknown model 'vg16'; did you mean vgg16, vgg16_c, vgg19?"
