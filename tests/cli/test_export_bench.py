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
    check = re.search(r"onnxruntime vs PyTorch on 40 MNIST test images: max \|diff\| (\S+) \(logits up to (\S+)\), "
                      r"top-1 agreement 100\.0% on 40 images", stdout)
    assert check and float(check.group(1)) <= 1e-4 * float(check.group(2))
    meta = OnnxModel(out).metadata
    assert meta["classes"] == [str(i) for i in range(10)] and meta["input_size"] == [1, 32, 32]
    assert len(meta["mean"]) == 1 and meta["source"] == str(run_dir)


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
