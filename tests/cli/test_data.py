"""`cnnlab data` prints the numbers of cnnlab.data.stats."""

from __future__ import annotations

from PIL import Image

from cnnlab.data.stats import dataset_stats, kfold_sizes
from tests.cli.conftest import run_cli


def _table_rows(out: str, first_cells: list[str]) -> dict[str, list[str]]:
    """Table lines whose first cell is one of ``first_cells``, as their cells (box lines dropped)."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.replace("│", "|").replace("┃", "|").split("|") if c.strip()]
        if cells and cells[0] in first_cells:
            rows[cells[0]] = cells[1:]
    return rows


def test_data_prints_the_dataset_statistics_and_fold_sizes(data_root, tmp_path, capsys):
    grid = tmp_path / "grid.png"
    code, out, err = run_cli(["data", "mnist", "--data-root", str(data_root), "--val-size", "5000", "--seed", "3",
                              "--folds", "4", "--grid", str(grid), "--per-class", "2"], capsys)
    assert code == 0, err
    stats = dataset_stats("mnist", data_root, val_size=5000, seed=3)
    n = stats.sizes
    assert f"  mean         {stats.mean[0]:.4f}  (per channel, [0, 1], training split)" in out
    assert f"  std          {stats.std[0]:.4f}" in out
    assert (f"  splits       train {n['train']:,} / val {n['val']:,} (seed 3) / test {n['test']:,}"
            f"  (trainval {n['trainval']:,})") in out
    assert n == {"train": 55_000, "val": 5_000, "test": 10_000, "trainval": 60_000}
    assert 0.12 < stats.mean[0] < 0.14 and 0.30 < stats.std[0] < 0.32  # MNIST's well-known 0.1307 / 0.3081

    classes_part, folds_part = out.split("┃ fold ┃")
    per_class = _table_rows(classes_part, list(stats.classes))
    assert len(per_class) == 10
    for i, name in enumerate(stats.classes):
        assert per_class[name] == [f"{stats.class_counts[s][i]:,}" for s in ("train", "val", "test")]
    assert sum(stats.class_counts["test"]) == 10_000

    folds = _table_rows(folds_part, ["1", "2", "3", "4"])
    sizes = kfold_sizes(n["trainval"], 4, seed=3)
    assert [folds[str(i + 1)] for i in range(4)] == [[f"{a:,}", f"{b:,}"] for a, b in sizes]
    assert sizes == [(45_000, 15_000)] * 4

    assert f"sample grid: {grid}" in out
    with Image.open(grid) as img:
        assert img.width > 100 and img.height > 100


def test_data_without_grid_writes_nothing(data_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["data", "fashion-mnist", "--data-root", str(data_root), "--no-grid"], capsys)
    assert code == 0, err
    assert "sample grid" not in out and list(tmp_path.iterdir()) == []
    assert "classes      10: T-shirt/top" in out
