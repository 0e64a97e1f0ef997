"""Each experiment's --quick mode end to end (real data, real training: about a minute each
on a CPU). Quick modes are too small to decide most claims, so these check what a reader
relies on: the numbers in metrics.json are the ones the report shows, the derived numbers
(means, gaps, noise bands) follow from the measured ones, every verdict is its stated rule
applied to those numbers, and the measurements sit in the range a seeded quick run gives.
The permuted-pixels effect is large enough to hold even in quick mode."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest

from cnnlab.experiments import Settings, digit_augmentation, permuted_pixels, run_experiment, weight_decay

pytestmark = pytest.mark.slow

FIGURES = {
    "permuted-pixels": ["samples", "test_error"],
    "degradation": ["error_curves"],
    "digit-augmentation": ["samples", "test_error"],
    "weight-decay": ["train_vs_test", "curves"],
    "ensemble": ["ensemble"],
}
_RUNS: dict[str, tuple[dict, str]] = {}


@pytest.fixture
def quick(tmp_path_factory, data_root):
    """(metrics.json, report.md) of one quick run; each experiment runs once per session."""

    def get(name: str) -> tuple[dict, str]:
        if name not in _RUNS:
            out = tmp_path_factory.mktemp(name)
            folder = run_experiment(name, Settings(quick=True, data_root=str(data_root)), out=out, command="test")
            _check_files(name, folder)
            _RUNS[name] = json.loads((folder / "metrics.json").read_text()), (folder / "report.md").read_text()
        return _RUNS[name]

    return get


def _check_files(name: str, folder: Path) -> None:
    record = json.loads((folder / "metrics.json").read_text())
    report = (folder / "report.md").read_text()
    assert record["mode"] == "quick" and record["command"] == "test" and record["verdicts"]
    assert record["all_held"] == all(v["held"] for v in record["verdicts"])
    for v in record["verdicts"]:  # every verdict, as measured, in the report
        assert f"- **{'HELD' if v['held'] else 'DID NOT HOLD'}**: {v['claim']}" in report
        assert f"  - measured: {v['measured']}" in report and f"  - rule: {v['rule']}" in report
    for stem in FIGURES[name]:
        assert (folder / f"{stem}.png").stat().st_size > 5000
        assert f"({stem}.png)" in report


def _row(report: str, first_cell: str) -> list[float]:
    """The numbers in the cells after the first of the report's table row that starts with ``first_cell``."""
    (line,) = [ln for ln in report.splitlines() if ln.startswith(f"| {first_cell} |")]
    cells = [c.strip() for c in line.strip("|").split("|")][1:]
    return [float(x) for cell in cells for x in re.findall(r"[-+]?\d+\.\d+|[-+]?\d+", cell)]


def _same(x: float) -> pytest.approx:
    """A number recomputed from others in metrics.json, which keeps 6 decimals."""
    return pytest.approx(x, abs=1.5e-6)


def _pct(x: float) -> pytest.approx:
    """A fraction as the report prints it: a percentage to 2 decimals."""
    return pytest.approx(100 * x, abs=0.0051)


def test_permuted_pixels(quick):
    record, report = quick("permuted-pixels")
    m = record["metrics"]
    assert (m["train_subset"], m["epochs"], m["seeds"]) == (2000, 3, [0])
    mlp, cnn = permuted_pixels.MODELS
    for label in (mlp, cnn):
        errors, derived = m["test_error"][label], m[label]
        assert derived["original_mean"] == _same(statistics.fmean(errors["original"]))
        assert derived["permuted_mean"] == _same(statistics.fmean(errors["permuted"]))
        assert derived["delta"] == _same(derived["permuted_mean"] - derived["original_mean"])
        assert derived["noise"] == permuted_pixels.NOISE_FLOOR  # one seed: no spread, the floor
        original, permuted, delta, noise = _row(report, label)
        assert (original, permuted, delta, noise) == (
            _pct(derived["original_mean"]), _pct(derived["permuted_mean"]), _pct(derived["delta"]), _pct(derived["noise"]))
    held = [v["held"] for v in record["verdicts"]]
    assert held[0] == (abs(m[mlp]["delta"]) <= m[mlp]["noise"])
    assert held[1] == (m[cnn]["delta"] > m[cnn]["noise"]) and held[1]  # the CNN loses accuracy
    # Seeded quick runs on 2,000 digits for 3 epochs (measured: MLP 10.2%, LeNet-5 14.4% -> 38.2%):
    # both learn, and the shuffled pixels leave the CNN far above chance (90%) but far behind.
    assert 0.02 < m[mlp]["original_mean"] < 0.25 and 0.02 < m[cnn]["original_mean"] < 0.3
    assert m[cnn]["permuted_mean"] < 0.6 and m[cnn]["delta"] > 0.05


def test_degradation(quick):
    record, report = quick("degradation")
    m = record["metrics"]
    assert (m["train_subset"], m["epochs"], m["test_size"], m["width"]) == (500, 2, 1000, 8)
    train = {name: statistics.fmean(e["train"]) for name, e in m["errors"].items()}
    assert m["gap_56_minus_20"]["plain"] == _same(train["plain56"] - train["plain20"])
    assert m["gap_56_minus_20"]["resnet"] == _same(train["resnet56"] - train["resnet20"])
    assert m["plain56_minus_resnet56"] == _same(train["plain56"] - train["resnet56"])
    held = [v["held"] for v in record["verdicts"]]
    assert held == [m["gap_56_minus_20"]["plain"] > 0.01, m["gap_56_minus_20"]["resnet"] <= 0.01,
                    m["plain56_minus_resnet56"] > 0.01]
    for name, errors in m["errors"].items():
        curve = m["curves"][name]  # the per-epoch history the figure draws, ending at the final numbers
        assert [row["epoch"] for row in curve] == [1, 2]
        assert 1 - curve[-1]["train_acc"] == _same(errors["train"][0])
        assert curve[-1]["test_top1_err"] == _same(errors["test"][0])
        assert _row(report, f"{name} (width 8)") == [_pct(errors["train"][0]), _pct(errors["test"][0])]
        # 500 CIFAR images for 2 epochs: far from trained, but below chance (90%) on the training batches
        assert 0.3 < errors["train"][0] < 0.97 and 0.3 < errors["test"][0] < 0.97


def test_digit_augmentation(quick):
    record, report = quick("digit-augmentation")
    m = record["metrics"]
    assert (m["train_subset"], m["epochs"], m["seeds"]) == (2000, 8, [0])
    effects, base = m["effects"], statistics.fmean(m["test_error"]["none"])
    safe = [c for c, (_, keeps) in digit_augmentation.CONDITIONS.items() if keeps and c != "none"]
    unsafe = [c for c, (_, keeps) in digit_augmentation.CONDITIONS.items() if not keeps]
    for condition, e in effects.items():
        assert e["mean"] == _same(statistics.fmean(m["test_error"][condition]))
        assert e["delta_vs_none"] == _same(e["mean"] - base)
        assert e["noise"] == digit_augmentation.NOISE_FLOOR  # one seed
        word = "helps" if e["mean"] < base - e["noise"] else "hurts" if e["mean"] > base + e["noise"] else "no clear effect"
        assert e["effect"] == ("-" if condition == "none" else word)
        numbers = _row(report, condition)
        train_error, test_error = numbers[-3:-1] if condition != "none" else numbers[-2:]
        assert (train_error, test_error) == (_pct(m["train_error"][condition][0]), _pct(e["mean"]))
        assert 0.005 < e["mean"] < 0.25  # LeNet-5 on 2,000 digits for 8 epochs: a few percent
    held = [v["held"] for v in record["verdicts"]]
    assert held == [all(effects[c]["effect"] == "helps" for c in safe), all(effects[c]["effect"] == "hurts" for c in unsafe)]


def test_weight_decay(quick):
    record, report = quick("weight-decay")
    m = record["metrics"]
    assert (m["train_subset"], m["epochs"], m["checked_decay"]) == (1000, 15, weight_decay.CHECKED)
    for key, s in m["summary"].items():
        assert s["train"] == _same(statistics.fmean(m["train_error"][key]))
        assert s["test"] == _same(statistics.fmean(m["test_error"][key]))
        assert s["gap"] == _same(s["test"] - s["train"]) and s["gap_sd"] == 0
        train_error, test_error, gap, gap_sd = _row(report, key)
        assert (train_error, test_error, gap, gap_sd) == (_pct(s["train"]), _pct(s["test"]), _pct(s["gap"]), 0)
    base, strong = m["summary"]["0"], m["summary"][f"{weight_decay.CHECKED:g}"]
    noise = weight_decay.NOISE_FLOOR  # one seed: both noise bands are the floor
    held = [v["held"] for v in record["verdicts"]]
    assert held == [base["test"] > 2 * base["train"] + 0.01, base["gap"] - strong["gap"] > noise,
                    base["test"] - strong["test"] > noise]
    # 1,000 digits, 15 epochs without decay: training error near zero, test error a few percent
    assert base["train"] < 0.1 and 0.02 < base["test"] < 0.25


def test_ensemble(quick):
    record, report = quick("ensemble")
    m = record["metrics"]
    members, ensemble = m["member_test_error"], m["ensemble_test_error"]
    assert (m["train_subset"], m["epochs"], m["seeds"]) == (2000, 3, [0, 1, 2]) and len(members) == 3
    assert m["member_mean"] == _same(statistics.fmean(members)) and m["best_member"] == min(members)
    assert m["ensemble_by_k"][0] == members[0]  # an ensemble of one is its member
    assert m["ensemble_by_k"][-1] == pytest.approx(ensemble, abs=1e-4)  # all members: the evaluated ensemble
    held = [v["held"] for v in record["verdicts"]]
    assert held == [ensemble < m["member_mean"], ensemble < m["best_member"]]
    for seed, error in zip(m["seeds"], members):
        assert _row(report, f"seed {seed}") == [_pct(error)]
    assert _row(report, "member mean") == [_pct(m["member_mean"])]
    assert _row(report, "ensemble of the first 3") == [_pct(ensemble)]
    # LeNet-5 on 2,000 Fashion-MNIST images for 3 epochs: 15-30% test error
    assert all(0.08 < e < 0.4 for e in members + [ensemble])
