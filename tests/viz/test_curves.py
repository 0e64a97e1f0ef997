"""Training curves: loss, error and learning rate per epoch, runs overlaid (``cnnlab viz curves``)."""

from __future__ import annotations

import csv

import matplotlib.pyplot as plt
import pytest
from click.testing import CliRunner

from cnnlab.cli import cli
from cnnlab.errors import CnnlabError
from cnnlab.training.run import read_history
from cnnlab.viz.curves import plot_curves, save_figure


def _history(scale: float) -> list[dict]:
    return [
        {"epoch": e, "train_loss": scale / e, "val_loss": 1.2 * scale / e, "train_acc": 1 - 0.1 / e,
         "val_top1_err": 0.12 / e, "test_top1_err": 0.13 / e, "lr": 0.1 * 0.5 ** (e - 1)}
        for e in range(1, 5)
    ]


def _write_run(folder, history) -> None:
    folder.mkdir(parents=True)
    with open(folder / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def test_three_labelled_panels_with_every_run_overlaid():
    fig = plot_curves([("a", _history(1.0)), ("b", _history(2.0))], title="two runs")
    loss, err, lr = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["Loss", "Top-1 error", "Learning rate (end of epoch)"]
    assert all(ax.get_xlabel() == "epoch" for ax in fig.axes)
    assert len(loss.lines) == 4 and len(err.lines) == 6 and len(lr.lines) == 2  # per run: 2, 3 and 1 curves
    assert [t.get_text() for t in loss.get_legend().get_texts()][:2] == ["a: train", "a: validation"]
    # errors are drawn in percent: train error = 1 - train_acc
    assert list(err.lines[0].get_ydata()) == pytest.approx([100 * 0.1 / e for e in range(1, 5)])
    assert list(lr.lines[1].get_ydata()) == pytest.approx([0.1, 0.05, 0.025, 0.0125])
    assert fig._suptitle.get_text() == "two runs"
    plt.close(fig)


def test_missing_values_are_skipped():
    history = _history(1.0)
    history[1]["test_top1_err"] = float("nan")  # test error only evaluated at the end
    fig = plot_curves([("a", history)])
    test_line = fig.axes[1].lines[2]
    assert list(test_line.get_xdata()) == [1, 3, 4]
    plt.close(fig)


def test_a_run_without_a_hold_out_has_no_validation_curves_and_an_ema_run_shows_its_ema():
    history = [{**row, "val_loss": float("nan"), "val_top1_err": float("nan"), "ema_test_top1_err": 0.11 / row["epoch"]}
               for row in _history(1.0)]
    fig = plot_curves([("a", history)])
    loss, err, _ = fig.axes
    assert [t.get_text() for t in loss.get_legend().get_texts()] == ["train"]
    assert [t.get_text() for t in err.get_legend().get_texts()] == ["train", "test", "test, EMA weights"]
    assert list(err.lines[2].get_ydata()) == pytest.approx([11 / e for e in range(1, 5)])
    plt.close(fig)


def test_save_figure_writes_a_png_and_makes_the_folder(tmp_path):
    path = save_figure(plot_curves([("a", _history(1.0))]), tmp_path / "sub" / "c.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_cli_overlays_runs_read_from_their_folders(tmp_path):
    _write_run(tmp_path / "run1", _history(1.0))
    _write_run(tmp_path / "run2", _history(2.0))
    assert read_history(tmp_path / "run1" / "metrics.csv")[2]["epoch"] == 3
    runner = CliRunner()
    out = tmp_path / "both.png"
    result = runner.invoke(cli, ["viz", "curves", str(tmp_path / "run1"), str(tmp_path / "run2"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 5000
    result = runner.invoke(cli, ["viz", "curves", str(tmp_path / "run1")])
    assert result.exit_code == 0 and (tmp_path / "run1" / "curves.png").is_file()
    result = runner.invoke(cli, ["viz", "curves", str(tmp_path)])
    assert "has no metrics.csv" in str(result.exception)


def test_run_histories_and_a_runs_curves_png(tmp_path):
    from cnnlab.errors import CnnlabError
    from cnnlab.training.config import TrainConfig
    from cnnlab.viz.curves import run_histories, write_run_curves

    _write_run(tmp_path / "run1", _history(1.0))
    TrainConfig(model="lenet5", data="mnist").save(tmp_path / "run1" / "config.json")
    ((name, history),) = run_histories([tmp_path / "run1"])
    assert name == "run1" and [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert history[1]["lr"] == pytest.approx(0.05)
    path = write_run_curves(tmp_path / "run1")
    assert path == tmp_path / "run1" / "curves.png" and path.stat().st_size > 5000
    with pytest.raises(CnnlabError, match="has no metrics.csv"):
        run_histories([tmp_path])


def test_time_to_accuracy_puts_minutes_from_the_start_on_the_x_axis(tmp_path):
    a = [{**row, "elapsed_s": 90.0 * row["epoch"]} for row in _history(1.0)]
    b = [{**row, "elapsed_s": 30.0 * row["epoch"]} for row in _history(2.0)]
    fig = plot_curves([("slow", a), ("fast", b)], x="time")
    loss, err, lr = fig.axes
    assert all(ax.get_xlabel().startswith("minutes from the start") for ax in fig.axes)
    assert list(err.lines[2].get_xdata()) == pytest.approx([1.5, 3.0, 4.5, 6.0])  # slow's test error
    assert list(err.lines[5].get_xdata()) == pytest.approx([0.5, 1.0, 1.5, 2.0])  # fast's
    plt.close(fig)
    with pytest.raises(CnnlabError, match="unknown x axis 'step'"):
        plot_curves([("a", a)], x="step")
    _write_run(tmp_path / "run1", a)
    result = CliRunner().invoke(cli, ["viz", "curves", str(tmp_path / "run1"), "--x", "time"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run1" / "curves-time.png").stat().st_size > 5000


def test_a_target_accuracy_is_drawn_and_each_runs_first_epoch_reaching_it_is_printed(tmp_path):
    from cnnlab.viz.curves import best_test_accuracy, first_reaching

    # test errors 13, 6.5, 4.33, 3.25%: 95% is first reached at epoch 3, 97% at epoch 4
    a = [{**row, "elapsed_s": 90.0 * row["epoch"]} for row in _history(1.0)]
    row, which = first_reaching(a, 0.95)
    assert (row["epoch"], which) == (3, "weights")
    assert first_reaching(a, 0.99) is None and best_test_accuracy(a) == pytest.approx(1 - 0.0325)
    # the EMA weights count too, and 1 - 0.1241 counts as 87.59% despite the float rounding
    b = [{"epoch": 1, "test_top1_err": 0.2, "ema_test_top1_err": 0.1241, "elapsed_s": 10.0}]
    assert first_reaching(b, 0.8759)[1] == "EMA weights"
    with pytest.raises(CnnlabError, match="target accuracy 87.0 is not a fraction"):
        first_reaching(a, 87.0)
    fig = plot_curves([("a", a)], x="time", targets=[0.95])
    err = fig.axes[1]
    star = next(line for line in err.lines if line.get_marker() == "*")
    assert list(star.get_xdata()) == pytest.approx([4.5]) and list(star.get_ydata()) == pytest.approx([100 * 0.13 / 3])
    assert any(list(line.get_ydata()) == pytest.approx([5.0, 5.0]) for line in err.lines)  # the target line
    plt.close(fig)

    _write_run(tmp_path / "fast", a)
    _write_run(tmp_path / "never", [{**r, "test_top1_err": 0.2} for r in a])
    runner = CliRunner()
    result = runner.invoke(cli, ["viz", "curves", str(tmp_path / "fast"), str(tmp_path / "never"), "--x", "time",
                                 "--target", "95%", "--target", "0.9", "--out", str(tmp_path / "t.png")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["fast", "95%", "first", "at", "epoch", "3,", "270", "s", "from", "the", "start", "(weights)"]
    assert "never  95% not reached (best 80.00%, 4 epochs)" in lines[1]
    assert lines[2].startswith("fast   90% first at epoch 2, 180 s") and "90% not reached" in lines[3]
    assert (tmp_path / "t.png").stat().st_size > 5000
    for bad in ("fast", "0", "120%"):
        result = runner.invoke(cli, ["viz", "curves", str(tmp_path / "fast"), "--target", bad])
        assert result.exit_code == 2 and "--target" in result.output and repr(bad) in result.output
