"""`cnnlab experiment`: the listing is the registry, and a run prints the verdicts it wrote."""

from __future__ import annotations

import json

from cnnlab.experiments import EXPERIMENTS, list_experiments
from tests.cli.conftest import run_cli


def test_listing_is_the_registry_in_order(capsys):
    code, out, err = run_cli(["experiment"], capsys)
    assert code == 0, err
    listed = [line.split()[0] for line in out.splitlines()[1:] if line and not line.startswith(" ")]
    assert listed == list_experiments() == sorted(EXPERIMENTS)
    for name in listed:  # each claim starts on its experiment's line
        (line,) = [ln for ln in out.splitlines() if ln.startswith(name + " ")]
        assert line[len(name):].strip() in " ".join(EXPERIMENTS[name].claim.split())


def test_a_run_prints_the_verdicts_of_its_metrics_file(tmp_path, capsys):
    code, out, err = run_cli(["experiment", "receptive-field", "--quick", "--out", str(tmp_path), "--threads", "1"], capsys)
    assert code == 0, err
    folder = tmp_path / "receptive-field"
    record = json.loads((folder / "metrics.json").read_text())
    expected = [f"{'HELD' if v['held'] else 'DID NOT HOLD'}: {v['claim']} ({v['measured']})" for v in record["verdicts"]]
    lines = out.splitlines()
    assert lines[-1] == f"wrote {folder}/report.md"
    assert lines[-1 - len(expected):-1] == expected
    assert record["verdicts"][0]["held"] is True and record["mode"] == "quick"
