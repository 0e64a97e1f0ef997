"""`degradation-full`: the paper's scale, checked without training (it is a GPU job): the four
networks get He et al.'s Sec. 4.2 recipe (the shipped resnet-cifar recipe) on the full split."""

from __future__ import annotations

import pytest

from cnnlab.experiments import Settings, degradation, get_experiment
from cnnlab.training.config import load_recipe
from cnnlab.training.run import Run


def test_full_recipe_is_the_shipped_resnet_cifar_recipe():
    shipped = load_recipe("resnet-cifar")
    for key in ("optimizer", "lr", "momentum", "weight_decay", "schedule", "gamma", "batch_size", "augment", "val_size"):
        assert degradation.FULL_RECIPE[key] == shipped[key], key
    assert tuple(shipped["milestones"]) == degradation.FULL_RECIPE["milestones"]
    assert degradation.FULL_EPOCHS == shipped["epochs"] == 182  # 64k iterations of 128 on 45k images
    assert degradation.FULL_TRAIN // 128 * degradation.FULL_EPOCHS == pytest.approx(64000, rel=0.01)


def test_full_mode_trains_the_four_networks_at_the_papers_scale(monkeypatch):
    calls = []

    def fake_train(settings, label, **config):
        calls.append((label, config))
        history = [{"epoch": 1, "train_acc": 0.9 if "resnet" in label else 0.8, "test_top1_err": 0.2}]
        return Run(path=None, config=None, history=history)

    monkeypatch.setattr(degradation, "train_quiet", fake_train)
    outcome = get_experiment("degradation-full").run(Settings(quick=False))
    assert [c["model"] for _, c in calls] == ["plain20", "plain56", "resnet20", "resnet56"]
    for _, config in calls:
        assert config["model_options"] == {"width": 16} and config["epochs"] == 182
        assert config["train_subset"] is None and config["val_size"] == 5000 and config["augment"] == "cifar"
    assert "45,000 training images" in outcome.setup and "10,000 test images" in outcome.setup
    calls.clear()
    get_experiment("degradation-full").run(Settings(quick=True))  # --quick: the small test run
    assert {c["model_options"]["width"] for _, c in calls} == {degradation.WIDTH} and calls[0][1]["train_subset"] == 500
