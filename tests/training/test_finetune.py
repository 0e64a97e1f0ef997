"""Fine-tuning end to end: a torchvision-format checkpoint (torchvision's own ResNet-18, built by
the oracle, tests/oracle.py, standing in for pretrained weights) into a run on a small folder
of CIFAR-10 photos with other classes: a new head, a frozen backbone or a slower one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.errors import CnnlabError
from cnnlab.training.config import TrainConfig
from cnnlab.training.loop import prepare, train_one_epoch
from tests import oracle
from tests.cli.conftest import run_cli

CLASSES = ("airplane", "cat", "ship")


@pytest.fixture(scope="module")
def photos(tmp_path_factory, data_root: Path) -> Path:
    """folder:ROOT with 3 CIFAR-10 classes, 16 train and 4 test photos each (32x32 JPEG)."""
    source = data_root / "cifar10-jpeg"
    if not source.is_dir():
        pytest.skip("no cifar10-jpeg in the data root")
    root = tmp_path_factory.mktemp("photos")
    for split, n in (("train", 16), ("test", 4)):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for f in sorted((source / split / c).iterdir())[:n]:
                shutil.copy(f, root / split / c / f.name)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """torchvision's resnet18 (its own code and initialisation, BN statistics set), saved as torchvision publishes."""
    model = oracle.randomise(oracle.build("resnet18"), size=(3, 32, 32))
    path = tmp_path_factory.mktemp("weights") / "resnet18-tv.pth"
    torch.save(model.state_dict(), path)
    return path


def _config(photos: Path, checkpoint: Path, tmp_path: Path, **kw) -> TrainConfig:
    return TrainConfig(model="resnet18", data=f"folder:{photos}", weights=str(checkpoint), epochs=1, batch_size=16,
                       val_size=0, pad=0, optimizer="sgd", lr=0.05, device="cpu", seed=0, threads=2,
                       out=str(tmp_path / "run"), **kw)


@pytest.mark.slow  # about 15 s: data decode, ResNet-18 on 48 photos
def test_cli_linear_probe_trains_only_a_new_head(photos: Path, checkpoint: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "resnet18", "--data", f"folder:{photos}", "--weights", str(checkpoint),
                              "--num-classes", "auto", "--freeze", "backbone", "--epochs", "1", "--batch-size", "16",
                              "--val-size", "0", "--pad", "0", "--lr", "0.05", "--device", "cpu", "--threads", "2",
                              "--out", str(run), "-q"], capsys)
    assert code == 0, err
    given = torch.load(checkpoint, weights_only=True)
    trained = load_file(str(run / "last.safetensors"))
    assert trained["fc.weight"].shape == (3, 512) and trained["fc.weight"].abs().sum() > 0  # new head, trained from zero
    # The frozen backbone, BN running statistics included (eval mode), is the file's, bit for bit.
    assert all(torch.equal(trained[k], v) for k, v in given.items() if not k.startswith("fc."))
    config = json.loads((run / "config.json").read_text())
    assert config["weights"] == str(checkpoint) and config["freeze"] == "backbone" and config["num_classes"] is None
    assert json.loads((run / "data.json").read_text())["classes"] == list(CLASSES)


def test_full_fine_tune_with_a_slower_backbone(photos: Path, checkpoint: Path, tmp_path: Path) -> None:
    setup = prepare(_config(photos, checkpoint, tmp_path, backbone_lr_scale=0.1))
    scales = sorted(g["lr_scale"] for g in setup.optimizer.param_groups)
    assert scales == [0.1, 1.0]
    head = next(g for g in setup.optimizer.param_groups if g["lr_scale"] == 1.0)
    assert {id(p) for p in head["params"]} == {id(setup.model.fc.weight), id(setup.model.fc.bias)}
    before = setup.model.bn1.running_mean.clone()
    train_one_epoch(setup.model, setup.train, setup.optimizer, setup.loss_fn, lr=setup.lr, epoch=0)
    lrs = {g["lr_scale"]: g["lr"] for g in setup.optimizer.param_groups}
    assert lrs[0.1] == pytest.approx(0.1 * lrs[1.0]) and lrs[1.0] > 0
    assert not torch.equal(setup.model.bn1.running_mean, before)  # not frozen: BN trains as usual
    assert setup.model.training


@pytest.mark.parametrize(("settings", "message"), [
    ({"num_classes": 5}, r"num_classes 5 does not match the dataset's 3 classes"),
    ({"weights": None, "freeze": "backbone"}, r"freeze=backbone fine-tunes pretrained weights: give weights"),
    ({"weights": None, "backbone_lr_scale": 0.1}, r"backbone_lr_scale=0.1 fine-tunes pretrained weights"),
])
def test_fine_tuning_settings_that_cannot_work(photos: Path, checkpoint: Path, tmp_path: Path, settings, message) -> None:
    config = _config(photos, checkpoint, tmp_path)
    config = TrainConfig(**{**config.to_dict(), **settings})
    with pytest.raises(CnnlabError, match=message):
        prepare(config)


def test_fine_tuning_settings_parse_and_check() -> None:
    from cnnlab.errors import UnknownNameError
    from cnnlab.training.config import parse_setting

    assert parse_setting("num_classes=auto") == ("num_classes", None)
    assert parse_setting("backbone_lr_scale=0.1") == ("backbone_lr_scale", 0.1)
    with pytest.raises(UnknownNameError, match=r"unknown freeze 'head'; expected one of none, backbone"):
        TrainConfig(freeze="head")
    with pytest.raises(CnnlabError, match=r"setting backbone_lr_scale must be > 0, got 0"):
        TrainConfig(backbone_lr_scale=0)
