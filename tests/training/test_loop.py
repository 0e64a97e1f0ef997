"""The loop's pieces: fit's contract with its caller, one epoch, the shape of the package."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from pathlib import Path

import pytest
import torch
from torch import nn

import cnnlab
import cnnlab.training
from cnnlab.data import Batches, ImageDataset
from cnnlab.errors import CnnlabError
from cnnlab.training.config import TrainConfig
from cnnlab.training.loop import EpochStats, fit, train_one_epoch
from cnnlab.training.optim import AUX_WEIGHT, loss_with_aux, make_loss, make_optimizer


def test_cnnlab_train_is_fit_and_the_package_imports():
    import cnnlab.training.loop

    assert cnnlab.train is fit and cnnlab.training.loop.fit is fit
    assert cnnlab.evaluate is cnnlab.training.evaluate.evaluate
    for module_info in pkgutil.iter_modules(cnnlab.training.__path__):  # no re-export shadows a module
        module = importlib.import_module(f"cnnlab.training.{module_info.name}")
        assert getattr(cnnlab.training, module_info.name) is module, module_info.name


def test_no_function_in_training_takes_six_positional_parameters():
    # Longer argument lists are keyword-only or a dataclass (Setup, EpochStats, TrainingState).
    for module_info in pkgutil.iter_modules(cnnlab.training.__path__):
        module = importlib.import_module(f"cnnlab.training.{module_info.name}")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            positional = [p for p in inspect.signature(fn).parameters.values()
                          if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            assert len(positional) < 6, f"{module.__name__}.{name} takes {len(positional)} positional parameters"


def test_fit_returns_the_run_folder_and_leaves_the_config_alone(patterns, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = TrainConfig(model="lenet5", data=patterns, epochs=1, batch_size=10, optimizer="sgd", lr=0.05,
                         val_size=0, device="cpu")
    run = fit(config, quiet=True)
    assert config.out is None  # the caller's config is not written to
    assert run.path.parent == Path("runs") and run.path.name.startswith("lenet5-root-")
    assert run.config.out == str(run.path)
    assert json.loads((run.path / "config.json").read_text())["out"] == str(run.path)
    assert [r["epoch"] for r in run.history] == [1] and run.model is not None
    assert not (run.path / "curves.png").exists()
    # The README's way to draw the curves from Python:
    from cnnlab.viz.curves import plot_curves, save_figure

    save_figure(plot_curves([(run.path.name, run.history)], title=run.path.name), run.path / "curves.png")
    assert (run.path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def tiny_batches(n: int = 12, batch: int = 4) -> Batches:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 4, 4), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % 3
    return Batches(ImageDataset("t", "train", images, labels, ("a", "b", "c"), (0.5,), (0.25,)), batch)


def test_train_one_epoch_sets_the_learning_rate_of_every_global_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    optimizer = make_optimizer(model.parameters(), name="sgd", lr=0.1)
    asked = []

    def lr(step: int) -> float:
        asked.append(step)
        return 0.01 * (step + 1)

    stats = train_one_epoch(model, tiny_batches(), optimizer, make_loss("ce", num_classes=3), lr=lr, epoch=2)
    assert isinstance(stats, EpochStats)
    assert asked == [6, 7, 8]  # epoch 2 of 3-step epochs
    assert stats.lr == pytest.approx(0.09) and optimizer.param_groups[0]["lr"] == pytest.approx(0.09)
    assert stats.images == 12 and 0 <= stats.acc <= 1 and stats.loss > 0 and stats.seconds > 0


def test_a_loss_that_is_not_finite_names_the_step_and_learning_rate():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    optimizer = make_optimizer(model.parameters(), name="adam", lr=0.1)
    with pytest.raises(CnnlabError, match=r"the loss became nan at epoch 3, step 1 \(last finite loss none yet\); the learning rate 0.5 is probably too high"):
        train_one_epoch(model, tiny_batches(), optimizer, lambda logits, y: logits.sum() * float("nan"),
                        lr=lambda step: 0.5, epoch=2)


def test_reading_the_loss_every_few_batches_gives_the_same_epoch_and_names_the_same_bad_step():
    # On a GPU the losses are read on the host every HOST_READ_EVERY batches (no stall per step);
    # the numbers and the step a non-finite loss names must be those of reading every batch.
    def run(read_every, loss_fn=None):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        optimizer = make_optimizer(model.parameters(), name="sgd", lr=0.1)
        stats = train_one_epoch(model, tiny_batches(), optimizer, loss_fn or make_loss("ce", num_classes=3),
                                lr=lambda step: 0.1, epoch=0, read_every=read_every)
        return stats, torch.cat([p.detach().flatten() for p in model.parameters()])

    (one, w1), (four, w4) = run(1), run(4)
    assert (one.loss, one.acc, one.images) == (four.loss, four.acc, four.images) and torch.equal(w1, w4)
    calls = []

    def nan_at_second_batch(logits, y):
        calls.append(1)
        return logits.sum().abs() * (float("nan") if len(calls) == 2 else 0.0)

    with pytest.raises(CnnlabError, match=r"the loss became nan at epoch 1, step 2 \(last finite loss 0\)"):
        run(8, nan_at_second_batch)
    assert len(calls) == 3  # the epoch's 3 batches ran before the one read: the report is late, not wrong


def test_auxiliary_losses_are_weighted():
    ce = make_loss("ce", num_classes=3)
    y = torch.tensor([0, 1])
    main, aux = torch.randn(2, 3), (torch.randn(2, 3), torch.randn(2, 3))
    assert loss_with_aux(ce, main, aux, y) == pytest.approx(float(ce(main, y) + AUX_WEIGHT * (ce(aux[0], y) + ce(aux[1], y))))
    mse = make_loss("mse", num_classes=3)
    assert float(mse(torch.tensor([[100.0, 0.0, 0.0]]), torch.tensor([0]))) == pytest.approx(0.0, abs=1e-6)
