"""Each experiment's --quick mode end to end (real data, real training: about a minute each
on a CPU). Quick modes are too small to decide the claims, so these check the outputs; the
permuted-pixels effect is large enough to hold even there."""

from __future__ import annotations

import json

import pytest

from cnnlab.experiments import Settings, run_experiment

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "name, figures",
    [
        ("permuted-pixels", ["samples", "test_error"]),
        ("degradation", ["error_curves"]),
        ("digit-augmentation", ["samples", "test_error"]),
        ("weight-decay", ["train_vs_test", "curves"]),
        ("ensemble", ["ensemble"]),
    ],
)
def test_quick_mode_writes_its_results(name, figures, tmp_path, data_root):
    folder = run_experiment(name, Settings(quick=True, data_root=str(data_root)), out=tmp_path, command="test")
    record = json.loads((folder / "metrics.json").read_text())
    assert record["mode"] == "quick" and record["verdicts"]
    assert all(isinstance(v["held"], bool) for v in record["verdicts"])
    report = (folder / "report.md").read_text()
    for stem in figures:
        assert (folder / f"{stem}.png").stat().st_size > 5000
        assert f"({stem}.png)" in report
    if name == "permuted-pixels":
        assert record["verdicts"][1]["held"], record["verdicts"][1]  # the CNN loses accuracy
