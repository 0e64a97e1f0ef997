"""hog-vs-cnn: the verdict rules on numbers whose answer is known, and the quick mode end to end
(real data: MNIST, cifar10-jpeg and Imagenette; about 2 minutes of CPU)."""

from __future__ import annotations

import json
import math
import re

import pytest

from cnnlab.experiments import (
    Settings,
    get_experiment,
    list_experiments,
    run_experiment,
)
from cnnlab.experiments.hog_vs_cnn import METHODS, TASKS, _verdicts, standard_error


def fake(accuracies: dict[str, tuple[float, float, float, float]], n: int = 10000):
    results = {label: {m: {"accuracy": a} for m, a in zip(METHODS, accs)} for label, accs in accuracies.items()}
    return results, {label: {"test": n} for label in accuracies}


def test_registered_with_its_claim():
    assert "hog-vs-cnn" in list_experiments()
    assert "HoG" in get_experiment("hog-vs-cnn").claim


def test_standard_error_of_a_difference():
    assert standard_error(0.5, 0.5, 100) == pytest.approx(math.sqrt(0.5 / 100))


def test_verdicts_follow_their_rules():
    labels = [t.label for t in TASKS]
    results, sizes = fake({labels[0]: (0.92, 0.97, 0.98, 0.99), labels[1]: (0.40, 0.50, 0.55, 0.70),
                           labels[2]: (0.35, 0.45, 0.50, 0.60)})
    verdicts, margins = _verdicts(results, sizes)
    assert [v.held for v in verdicts] == [True, True, True]
    assert margins[labels[1]] == pytest.approx(0.15) and margins[labels[0]] == pytest.approx(0.01)
    # HoG no better than pixels on one dataset (within 2 SE at n = 10,000: about 1.4 pp at 50%)
    results, sizes = fake({labels[0]: (0.92, 0.97, 0.98, 0.99), labels[1]: (0.50, 0.505, 0.55, 0.70),
                           labels[2]: (0.35, 0.45, 0.50, 0.60)})
    assert [v.held for v in _verdicts(results, sizes)[0]] == [False, True, True]
    # the CNN loses to HoG + RBF on the photographs: no win there, and no positive margin
    results, sizes = fake({labels[0]: (0.92, 0.97, 0.98, 0.99), labels[1]: (0.40, 0.50, 0.55, 0.70),
                           labels[2]: (0.35, 0.45, 0.60, 0.55)})
    assert [v.held for v in _verdicts(results, sizes)[0]] == [True, False, False]


@pytest.mark.slow
def test_quick_mode_writes_a_report_with_numbers(tmp_path, data_root):
    if not (data_root / "cifar10-jpeg").is_dir() or not (data_root / "imagenette").is_dir():
        pytest.skip("needs cifar10-jpeg and imagenette in the data root")
    folder = run_experiment("hog-vs-cnn", Settings(quick=True, data_root=str(data_root)), out=tmp_path, command="test")
    record = json.loads((folder / "metrics.json").read_text())
    report = (folder / "report.md").read_text()
    assert record["mode"] == "quick" and len(record["verdicts"]) == 3
    results, sizes = record["metrics"]["results"], record["metrics"]["sizes"]
    assert list(results) == [t.label for t in TASKS]
    for task in TASKS:
        for method in METHODS:
            r = results[task.label][method]
            assert 0.0 <= r["accuracy"] <= 1.0 and r["train_cpu_s"] > 0
            assert f"| {task.label} | {method} | {100 * r['accuracy']:.2f}% |" in report
    mnist = results[TASKS[0].label]
    assert mnist["pixels + linear SVM"]["dimension"] == 784
    assert mnist["HoG + linear SVM"]["dimension"] == 1296 == sizes[TASKS[0].label]["hog_dimension"]
    assert mnist["CNN"]["dimension"] == 84 and results[TASKS[1].label]["CNN"]["dimension"] == 64
    assert mnist["HoG + linear SVM"]["accuracy"] > 0.85  # HoG reads 2,000 digits well even in quick mode
    assert sizes[TASKS[2].label]["image"] == [3, 32, 32]
    # each verdict is its rule applied to the reported numbers
    verdicts, _ = _verdicts(results, sizes)
    assert [v["held"] for v in record["verdicts"]] == [v.held for v in verdicts]
    for name in ("accuracy", "hog-mnist", "hog-cifar10-jpeg", "hog-imagenette"):
        assert (folder / f"{name}.png").is_file() and f"![{name}]({name}.png)" in report
    assert re.search(r"Total CPU time of the measured steps: [0-9.]+ minutes", report)
