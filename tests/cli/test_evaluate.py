"""`cnnlab eval` and `cnnlab predict` print the library's numbers."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

import cnnlab
from cnnlab.data import Batches, load_dataset
from cnnlab.training.evaluate import evaluate_weights, predict_probs
from cnnlab.training.predict import predict_file_probs
from tests.cli.conftest import run_cli


def test_eval_prints_the_errors_cnnlab_evaluate_computes(run_dir, capsys):
    code, out, err = run_cli(["eval", str(run_dir), "--device", "cpu"], capsys)
    assert code == 0, err
    assert "top-1 error" in out and "top-5 error" in out
    (row,) = [line for line in out.splitlines() if str(run_dir) in line]
    top1, top5 = re.findall(r"(\d+\.\d\d)%", row)
    loss = re.search(r"\s(\d+\.\d{4})\s", row)[1]
    expected = cnnlab.evaluate(run_dir, device="cpu")
    assert top1 == f"{100 * expected.top1_err:.2f}" and top5 == f"{100 * expected.top5_err:.2f}"
    assert float(loss) == pytest.approx(expected.loss, abs=2e-4)  # batches of 500 vs 1,000
    assert "10,000" in row and expected.num_images == 10_000
    assert expected.top1_err < 0.5  # a trained network, not chance (90% error)


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
    # The printed probability is the one eval's loop gives the same test image.
    run = cnnlab.load_run(run_dir)
    eval_probs, _ = predict_probs(run.model, Batches(test.subset([0]), 1, pad=run.data_info["pad"]))
    assert lines[0].split()[1] == f"{float(eval_probs[0, 7]):.2%}"
    file_probs = predict_file_probs(run, [white_on_black])
    assert np.allclose(file_probs.numpy(), eval_probs.numpy(), atol=1e-6)


def test_predict_corrupt_image(run_dir, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    code, _, err = run_cli(["predict", str(run_dir), str(bad)], capsys)
    assert code == 1 and f"cannot decode image {bad}" in err


def test_eval_a_model_with_weights_on_image_folders(tmp_path, capsys):
    # A ResNet-20 state dict of 10 outputs on a 10-class folder: the table names the model and
    # how it was scored; stderr says where the preprocessing came from.
    import torch

    from cnnlab.models import create_model
    from tests.training.test_evaluation_weights import image_folder

    root = image_folder(tmp_path / "ten", [f"c{i}" for i in range(10)], per_class=1)
    torch.manual_seed(0)
    torch.save(create_model("resnet20").state_dict(), tmp_path / "mine.pth")
    args = ["eval", "resnet20", "--weights", str(tmp_path / "mine.pth"), "--data", f"folder:{root}", "--device", "cpu",
            "--workers", "0"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "model" in out and "resnet20 with" in out and "outputs taken as" in out and re.search(r"\s10\s", out)
    assert "preprocessing from the ImageNet convention" in err
    expected = evaluate_weights("resnet20", str(tmp_path / "mine.pth"), data=f"folder:{root}", device="cpu", workers=0)
    assert f"{100 * expected.member.result.top1_err:.2f}%" in out


def test_eval_with_weights_errors_are_one_line(run_dir, tmp_path, capsys):
    import torch

    from cnnlab.models import create_model
    from tests.training.test_evaluation_weights import image_folder

    root = image_folder(tmp_path / "ten", [f"c{i}" for i in range(10)], per_class=1)
    torch.save(create_model("resnet20").state_dict(), tmp_path / "mine.pth")
    cases = [
        (["eval", "resnet20", "--data", f"folder:{root}"], "error: model resnet20 has no trained weights; give --weights"),
        (["eval", "resnet20", "--weights", str(tmp_path / "mine.pth")], "needs --data: the image-folder dataset"),
        (["eval", "resnet20", "--weights", "x.pth", "--checkpoint", "last", "--data", "mnist"],
         "error: --checkpoint last picks a run folder's file; resnet20 is not a run folder"),
        (["eval", str(run_dir), "--weights", str(tmp_path / "mine.pth")],
         "scores a registered MODEL (cnnlab eval MODEL --weights SOURCE --data DATA)"),
        # weights for another model: the first mismatching keys and the closest registered models
        (["eval", "lenet5", "--weights", str(tmp_path / "mine.pth"), "--data", f"folder:{root}", "--workers", "0"],
         "does not fit model lenet5: "),
    ]
    for args, message in cases:
        code, _, err = run_cli(args, capsys)
        assert code != 0 and message in err, (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
