"""Evaluating run folders: members, ensembles, test-time augmentation, the eval command."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.data import Batches, load_dataset
from cnnlab.models import create_model
from cnnlab.training.checkpoint import TrainingState, save_checkpoint
from cnnlab.training.config import TrainConfig
from cnnlab.training.evaluate import evaluate_members, metrics_from_probs, per_class_rows, predict_probs
from cnnlab.training.loop import fit
from cnnlab.training.run import load_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[str, list[Path]]:
    """Two LeNet-5 run folders on a 3-class image folder of 28x28 RGB images."""
    base = tmp_path_factory.mktemp("eval")
    root = base / "shapes"
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 12), ("test", 6)):
        for c, name in enumerate(("bars", "dots", "plain")):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                img = torch.randint(0, 60, (28, 28, 3), generator=g, dtype=torch.uint8)
                if name == "bars":
                    img[:, ::4] = 250
                elif name == "dots":
                    img[::5, ::5] = 250
                Image.fromarray(img.numpy()).save(d / f"{i}.png")
    mp = pytest.MonkeyPatch()
    mp.setenv("CNNLAB_CACHE", str(base / "cache"))
    data = f"folder:{root}"
    # One real (tiny) training run; the second member is its folder with other weights
    # committed as a newer checkpoint (what loading reads: the manifest, not the top-level
    # file), which is all an ensemble needs and saves a second training.
    config = TrainConfig(model="lenet5", data=data, epochs=1, batch_size=36, eval_batch_size=36, optimizer="sgd",
                         lr=0.05, val_size=0, seed=0, device="cpu", amp="off", out=str(base / "run0"))
    first = fit(config, quiet=True).path
    second = base / "run1"
    shutil.copytree(first, second)
    torch.manual_seed(1)
    other = create_model("lenet5", num_classes=3, in_chans=3)
    save_checkpoint(second, other, TrainingState(epoch=2), model_name="lenet5", is_best=True)
    out = [first, second]
    yield data, out
    mp.undo()


def test_ensemble_averages_member_probabilities(runs):
    data, paths = runs
    members = evaluate_members(paths, device="cpu")
    assert [m.name for m in members] == [str(p) for p in paths] + ["ensemble"]
    assert not torch.allclose(members[0].probs, members[1].probs, atol=1e-3)  # two different members
    assert torch.allclose(members[2].probs, (members[0].probs + members[1].probs) / 2)
    expected = metrics_from_probs(members[2].probs, members[2].labels)
    assert members[2].result.top1_err == expected.top1_err and members[2].result.num_images == 18
    assert torch.equal(members[2].result.confusion, expected.confusion)
    assert members[0].classes == ["bars", "dots", "plain"]
    simple = [(m.name, m.result) for m in evaluate_members(paths[:1], device="cpu")]
    assert len(simple) == 1 and simple[0][1].top1_err == members[0].result.top1_err


def test_tta_flip_and_10crop_average_the_views(runs):
    data, paths = runs
    run = load_run(paths[0])
    test = load_dataset(data, "test")
    plain, labels = predict_probs(run.model, Batches(test, 18, pad=2))
    mirrored, _ = predict_probs(run.model, Batches(test, 18, pad=2, augment=lambda x, g: x.flip(3)))
    flip, _ = predict_probs(run.model, Batches(test, 18, pad=2), tta="flip")
    assert torch.allclose(flip, (plain + mirrored) / 2, atol=1e-6)
    (m_flip,) = evaluate_members(paths[:1], device="cpu", tta="flip")
    assert torch.allclose(m_flip.probs, flip, atol=1e-6)
    # 10crop on 28x28 images padded to LeNet's 32x32: padded 4 more, then crops of 32x32.
    (m10,) = evaluate_members(paths[:1], device="cpu", tta="10crop")
    assert m10.probs.shape == (18, 3) and torch.allclose(m10.probs.sum(1), torch.ones(18))
    assert not torch.allclose(m10.probs, plain)
    centre, _ = predict_probs(run.model, Batches(test, 18, pad=6), tta="center", crop_size=(32, 32))
    assert torch.allclose(centre, plain, atol=1e-6)  # the centre crop of the extra padding is the plain image


def test_scoring_reports_each_batch_and_shows_a_live_bar(runs):
    import io
    import re

    from rich.console import Console

    from cnnlab.training.progress import EvalProgress

    data, paths = runs
    run = load_run(paths[0])
    seen: list[int] = []
    predict_probs(run.model, Batches(load_dataset(data, "test"), 7, pad=2), tta="flip", on_batch=seen.append)
    assert seen == [7, 7, 4]  # every image once, as its batch is scored (18 test images)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    with EvalProgress("runs/x, TTA flip", 18, console=console) as bar:
        for n in seen:
            bar.advance(n)
        bar._progress.refresh()
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())  # without the terminal's escapes
    assert "scoring runs/x, TTA flip" in shown and "18/18" in shown and "img/s" in shown
    quiet = io.StringIO()
    with EvalProgress("runs/x", 18, quiet=True, console=Console(file=quiet, force_terminal=True)) as bar:
        bar.advance(18)
    assert quiet.getvalue() == ""


def test_per_class_table(runs):
    _, paths = runs
    report = [(m.name, m.result) for m in evaluate_members(paths, device="cpu")]
    headers, rows = per_class_rows(["bars", "dots", "plain"], report)
    assert headers[:2] == ["class", "images"] and headers[-1] == "ensemble"
    assert [r[1] for r in rows] == ["6", "6", "6"]
    assert rows[0][-1] == f"{report[-1][1].per_class_acc[0]:.2%}"


def test_eval_command_with_tta_per_class_and_confusion(runs, tmp_path, capsys):
    _, paths = runs
    png = tmp_path / "confusion.png"
    main(["eval", str(paths[0]), str(paths[1]), "--device", "cpu", "--tta", "flip", "--per-class", "--confusion", str(png)])
    out = capsys.readouterr().out
    assert "ensemble" in out and "TTA flip" in out and "per-class accuracy" in out and "confusion matrix" in out
    assert png.stat().st_size > 5000
    # The printed errors are evaluate_members' numbers.
    ensemble = evaluate_members(paths, device="cpu", tta="flip")[-1].result
    (row,) = [line for line in out.splitlines() if "ensemble" in line and "%" in line and "18" in line]
    assert re.findall(r"(\d+\.\d\d)%", row)[:2] == [f"{100 * ensemble.top1_err:.2f}", f"{100 * ensemble.top5_err:.2f}"]


def test_data_command_prints_splits_folds_and_writes_a_grid(runs, tmp_path, capsys):
    data, _ = runs
    png = tmp_path / "grid.png"
    main(["data", data, "--val-size", "6", "--folds", "3", "--grid", str(png), "--per-class", "4"])
    out = capsys.readouterr().out
    assert "classes      3: bars, dots, plain" in out
    assert "train 30 / val 6 (seed 0) / test 18" in out
    assert "3-fold cross-validation" in out and "24" in out and "12" in out
    assert png.stat().st_size > 5000
