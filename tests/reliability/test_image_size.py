"""``--image-size``: a dataset's images resized for a model built for another size, suggested
by the size check and remembered by the run for eval."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.training.config import TrainConfig
from cnnlab.training.evaluate import evaluate_members
from cnnlab.training.loop import fit
from cnnlab.training.validate import check_input_fits
from tests.cli.conftest import run_cli


@pytest.fixture
def folder8(tmp_path, monkeypatch):
    """8x8 RGB images of two colours: too small for LeNet-5's 32x32."""
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    for split, n in (("train", 6), ("test", 4)):
        for label, colour in enumerate(((240, 10, 10), (10, 10, 240))):
            d = tmp_path / "f8" / split / f"c{label}"
            d.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (8, 8), tuple(max(0, v - 9 * i) for v in colour)).save(d / f"{i}.png")
    return f"folder:{tmp_path / 'f8'}"


def test_the_size_check_suggests_image_size():
    with pytest.raises(CnnlabError) as e:
        check_input_fits("lenet5", {}, num_classes=2, image_size=(3, 8, 8), pad=0, data="d")
    assert "--pad 12" in str(e.value) and "--image-size 32" in str(e.value)


def test_image_size_resizes_every_split_and_eval_resizes_alike(folder8, tmp_path, capsys):
    code, out, err = run_cli(["train", "lenet5", "--data", folder8, "--device", "cpu", "-q", "--out", str(tmp_path / "no")], capsys)
    assert code != 0 and "--image-size 32" in err and "Traceback" not in err
    config = TrainConfig(model="lenet5", data=folder8, epochs=1, batch_size=4, val_size=2, image_size=32, device="cpu", amp="off",
                         out=str(tmp_path / "run"))
    run = fit(config, quiet=True)
    info = json.loads((run.path / "data.json").read_text())
    assert info["image_size"] == [3, 32, 32] and info["pad"] == 0  # resized, so no padding is needed
    assert "resized from 8x8 to 32x32" in (run.path / "train.log").read_text()
    (member,) = evaluate_members([run.path], device="cpu")
    assert member.result.num_images == 8
    code, out, err = run_cli(["train", "lenet5", "--data", folder8, "--image-size", "32", "--epochs", "1", "--device", "cpu",
                              "-q", "--out", str(tmp_path / "cli")], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "cli" / "data.json").read_text())["image_size"] == [3, 32, 32]
