"""`cnnlab export` and `cnnlab bench` end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli.conftest import run_cli

pytest.importorskip("onnxruntime", reason="pip install 'cnnlab[onnx]'")


def test_export_a_run_and_check_it(run_dir: Path, tmp_path: Path, data_root: Path, capsys) -> None:
    from cnnlab.training.export import OnnxModel

    out = tmp_path / "lenet.onnx"
    code, stdout, stderr = run_cli(["export", str(run_dir), "--out", str(out), "--dynamic-batch",
                                    "--check-images", "40", "--data-root", str(data_root)], capsys)
    assert code == 0, stderr
    assert re.search(rf"^wrote {re.escape(str(out))} \(0\.\d MB\): .*run, input \(batch dynamic\) x 1x32x32, opset 20$",
                     stdout, re.MULTILINE)
    # A free batch is checked at two batch sizes; the line gives the worse of the two.
    check = re.search(r"onnxruntime vs PyTorch on 40 MNIST test images: max \|diff\| (\S+) \(logits up to (\S+)\), "
                      r"top-1 agreement 100\.0% on 40 images, at batch sizes 40 and 1$", stdout, re.MULTILINE)
    assert check and float(check.group(1)) <= 1e-4 * float(check.group(2))
    meta = OnnxModel(out).metadata
    assert meta["classes"] == [str(i) for i in range(10)] and meta["input_size"] == [1, 32, 32]
    assert len(meta["mean"]) == 1 and meta["source"] == str(run_dir)
    assert meta["pad"] == 2  # the run pads MNIST's 28x28 digits to LeNet-5's 32x32


@pytest.fixture()
def digits(data_root: Path, tmp_path: Path) -> list[Path]:
    """MNIST test digits as files: as they are, one drawn dark on light (the run's image policy
    inverts it), one resized to 60x45 (resized back to 28x28)."""
    from PIL import Image

    from cnnlab.data import load_dataset

    images = load_dataset("mnist", "test", root=data_root).images
    paths = []
    for i, pixels in enumerate([images[0, 0], images[1, 0], 255 - images[2, 0], images[3, 0]]):
        img = Image.fromarray(pixels.numpy())
        paths.append(tmp_path / f"digit{i}.png")
        (img.resize((60, 45)) if i == 3 else img).save(paths[-1])
    return paths


def test_an_exported_padded_run_predicts_what_the_run_does(run_dir: Path, tmp_path: Path, data_root: Path, digits,
                                                            capsys) -> None:
    from cnnlab.training.predict import (
        Predictor,
        open_predictor,
        predict_images,
        predict_with,
    )

    out = tmp_path / "lenet.onnx"
    code, _, stderr = run_cli(["export", str(run_dir), "--out", str(out), "--check-images", "0"], capsys)
    assert code == 0, stderr
    onnx = open_predictor(out)
    assert isinstance(onnx, Predictor) and onnx.pad == 2 and onnx.preprocess.crop == 28
    run = open_predictor(run_dir)
    want, got = predict_images(run, digits, k=10), predict_with(onnx, digits, k=10)
    for w, g in zip(want, got):  # every class's probability, to float32 rounding
        assert max(abs(p - dict(g.top)[name]) for name, p in w.top) < 1e-5, (w, g)
        assert g.mismatch == w.mismatch
    assert got[3].mismatch and "resized from 60x45 to 28x28" in got[3].mismatch
    assert [g.top[0][0] for g in got] == [w.top[0][0] for w in want]
    # The command line: the same printed classes and percentages, and where the feeding comes from.
    code, from_run, _ = run_cli(["predict", str(run_dir), *map(str, digits), "-k", "3"], capsys)
    assert code == 0
    code, from_onnx, stderr = run_cli(["predict", str(out), *map(str, digits), "-k", "3"], capsys)
    assert code == 0, stderr
    assert from_onnx == from_run
    assert "preprocessing from its metadata (the run's image policy at 28x28, zero-padded by 2 to 32x32)" in stderr


def test_an_old_onnx_file_without_padding_still_predicts_and_says_so(tmp_path: Path, digits, capsys) -> None:
    from cnnlab.models import create_model
    from cnnlab.training.export import export_onnx

    # What `cnnlab export` wrote before it recorded padding: no "pad" key.
    old = export_onnx(create_model("lenet5"), tmp_path / "old.onnx", input_size=(1, 32, 32),
                      metadata={"mean": [0.1307], "std": [0.3081], "classes": [str(i) for i in range(10)]})
    code, stdout, stderr = run_cli(["predict", str(old), str(digits[0]), "-k", "1"], capsys)
    assert code == 0, stderr
    assert "digit0.png" in stdout
    assert ("preprocessing from its metadata (shorter side resized to the input size, centre crop; the file records "
            "no padding: if its run padded its images, export it again)") in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lenet", "--out", "x.onnx"], r"error: unknown model 'lenet'; did you mean lenet5\?"),
        (["lenet5", "--out", "/no/such/folder/x.onnx"], r"error: cannot write /no/such/folder/x\.onnx: folder /no/such/folder does not exist"),
        (["lenet5", "--out", "x.onnx", "--opset", "9"], r"error: Invalid value for '--opset': 9 is not in the range 18<=x<=23"),
    ],
)
def test_export_bad_input_one_line(args, message, capsys) -> None:
    code, stdout, stderr = run_cli(["export", *args], capsys)
    assert code != 0 and re.match(message, stderr) and stderr.count("\n") == 1


def test_bench_table_of_named_settings(data_root: Path, capsys) -> None:
    code, stdout, stderr = run_cli(["bench", "resnet20", "--batch", "4", "--images", "8", "--min-time", "0",
                                    "--setting", "eager fp32", "--setting", "inference path",
                                    "--data-root", str(data_root)], capsys)
    assert code == 0, stderr
    assert re.search(r"threads, load average [\d.]+; matmul peak GFLOP/s: float32 [\d,]+", stdout)
    assert "resnet20, batch 4 x 3x32x32, 0.041 GMACs/image; agreement on 8 CIFAR-10 test images" in stdout
    assert re.search(r"eager fp32 .* 100\.0% \(max \|diff\| 0\)", stdout)
    assert re.search(r"inference path .* 19 BN folded, (channels-last|NCHW), (bf16|fp32)", stdout)
    assert "onnxruntime" not in stdout


@pytest.mark.slow
def test_bench_json_has_every_setting(data_root: Path, capsys) -> None:
    code, stdout, stderr = run_cli(["bench", "lenet5", "--batch", "8", "--images", "16", "--min-time", "0",
                                    "--mode", "inference", "--json", "--data-root", str(data_root)], capsys)
    assert code == 0, stderr
    report = json.loads(stdout)
    assert [r["setting"] for r in report["rows"]] == ["eager fp32", "inference path", "inference path fp32", "onnxruntime"]
    assert report["input_size"] == [1, 32, 32] and report["images"] == "16 MNIST test images"
    assert report["peak_gflops"]["float32"] > 0 and report["gmacs_per_image"] > 0
    eager, path, path32, onnx = report["rows"]
    assert path32["details"].endswith("fp32") and path32["top1_agreement"] == 1.0
    assert eager["top1_agreement"] == 1.0 and eager["max_abs_diff"] == 0.0
    assert onnx["top1_agreement"] == 1.0 and onnx["details"] == "opset 20, CPU execution provider"
    for row in report["rows"]:
        assert row["images_per_s"] > 0 and abs(row["gflops"] / row["images_per_s"] - 2 * report["gmacs_per_image"]) < 1e-6


def test_bench_unknown_setting(capsys) -> None:
    code, _, stderr = run_cli(["bench", "lenet5", "--setting", "turbo"], capsys)
    assert code != 0 and ("Invalid value for '--setting': 'turbo' is not one of 'eager fp32', 'inference path', "
                          "'inference path fp32', 'onnxruntime', 'train plain', 'train eager fp32'") in stderr


@pytest.mark.slow
def test_bench_training_rows_next_to_the_plain_loop(capsys) -> None:
    code, stdout, stderr = run_cli(["bench", "lenet5", "--batch", "4", "--steps", "1", "--min-time", "0",
                                    "--setting", "train plain", "--setting", "train eager fp32", "--setting", "train bf16"],
                                   capsys)
    assert code == 0, stderr
    assert "training lenet5, batch 4 x 1x32x32, 1 steps per call" in stdout and "agreement on" not in stdout
    assert re.search(r"train plain +│ +[\d,.]+ │ +1\.00x", stdout)
    assert re.search(r"train eager fp32 +│ +[\d,.]+ │ +[\d.]+x .* fp32 NCHW", stdout)
    assert re.search(r"train bf16 .*(bf16 channels-last|not native here)", stdout)
    code, stdout, _ = run_cli(["bench", "lenet5", "--batch", "4", "--steps", "1", "--min-time", "0",
                               "--mode", "training", "--setting", "train plain", "--setting", "eager fp32", "--json"], capsys)
    report = json.loads(stdout)
    assert report["rows"] == [] and [r["setting"] for r in report["training"]] == ["train plain"]
