"""`cnnlab viz ...` writes the figures the library draws for the same inputs, where it says.

Each test draws the figure through the library functions and compares the PNG bytes with
the command's file: the command adds no logic of its own beyond choosing inputs and paths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.data import load_dataset, random_subset
from cnnlab.data.toy import make_toy
from cnnlab.training.evaluate import evaluate
from cnnlab.training.run import load_run
from cnnlab.training.toy import fit_toy_classifier
from cnnlab.viz.curves import plot_curves, run_histories, save_figure
from tests.cli.conftest import run_cli


def _same_png(written: Path, fig, tmp_path: Path) -> bool:
    expected = save_figure(fig, tmp_path / "expected.png")
    return written.read_bytes() == expected.read_bytes()


def _written(out: str) -> Path:
    (line,) = [ln for ln in out.splitlines() if ln.startswith("wrote ")]
    return Path(line.removeprefix("wrote "))


@pytest.mark.slow  # two 3-D surfaces and two decision-region figures: ~20 s on a busy CPU
def test_neuron_and_boundary(tmp_path, capsys):
    from cnnlab.viz.neuron import describe_hidden, plot_decision_regions, plot_neuron

    code, out, err = run_cli(["viz", "neuron", "--w1", "2", "--w2", "-1", "-b", "0.5", "--out", str(tmp_path / "n.png")], capsys)
    assert code == 0, err
    assert _written(out) == tmp_path / "n.png"
    assert _same_png(tmp_path / "n.png", plot_neuron(2.0, -1.0, bias=0.5, extent=5.0), tmp_path)

    code, out, err = run_cli(["viz", "boundary", "--dataset", "circles", "--hidden", "0,6x6", "--points", "80",
                              "--steps", "30", "--seed", "2", "--out", str(tmp_path / "b.png")], capsys)
    assert code == 0, err
    x, y = make_toy("circles", 80, noise=0.15, seed=2)
    fitted = [(describe_hidden(h), fit_toy_classifier(x, y, h, steps=30, seed=2)) for h in [(), (6, 6)]]
    fig = plot_decision_regions(fitted, x, y, title="circles: 80 points; decision regions after 30 Adam steps")
    assert _same_png(tmp_path / "b.png", fig, tmp_path)


def test_kernels_default_path_and_figure(tmp_path, capsys, monkeypatch):
    from cnnlab.viz.kernels import chosen_kernels, load_gray, plot_kernels

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 50), dtype=np.uint8)).save(tmp_path / "my photo.png")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["viz", "kernels", "my photo.png", "-k", "1,0,-1;2,0,-2;1,0,-1"], capsys)
    assert code == 0, err
    assert _written(out) == Path("my_photo-kernels.png")
    fig = plot_kernels(load_gray("my photo.png"), chosen_kernels(["1,0,-1;2,0,-2;1,0,-1"]),
                       title="Hand-designed kernels on my photo.png")
    assert _same_png(Path("my_photo-kernels.png"), fig, tmp_path)
    code, _, err = run_cli(["viz", "kernels", "my photo.png", "--no-defaults"], capsys)
    assert code != 0 and "no kernels" in err


def test_filters_curves_and_confusion_of_a_run(run_dir, tmp_path, capsys):
    from cnnlab.viz.activations import first_conv
    from cnnlab.viz.confusion import plot_confusion
    from cnnlab.viz.filters import plot_filters

    loaded = load_run(run_dir)
    code, out, err = run_cli(["viz", "filters", str(run_dir), "--out", str(tmp_path / "f.png")], capsys)
    assert code == 0, err
    name, conv = first_conv(loaded.model)
    fig = plot_filters(conv.weight, layer=name, max_kernels=96, title=f"lenet5 on mnist ({run_dir.name})")
    assert _same_png(tmp_path / "f.png", fig, tmp_path)

    code, out, err = run_cli(["viz", "curves", str(run_dir), "--out", str(tmp_path / "c.png")], capsys)
    assert code == 0, err
    assert _same_png(tmp_path / "c.png", plot_curves(run_histories([run_dir]), title=run_dir.name), tmp_path)

    code, out, err = run_cli(["viz", "confusion", str(run_dir), "--split", "val", "--device", "cpu",
                              "--out", str(tmp_path / "m.png")], capsys)
    assert code == 0, err
    result = evaluate(loaded, split="val", device="cpu")
    assert int(result.confusion.sum()) == 500  # the run's validation hold-out
    fig = plot_confusion(result.confusion, loaded.data_info["classes"], title=f"{run_dir.name}, val split")
    assert _same_png(tmp_path / "m.png", fig, tmp_path)


def test_activations_of_a_dataset_image_and_a_file(run_dir, tmp_path, capsys, data_root):
    from cnnlab.viz.activations import feature_maps, input_image, padded_image, plot_activations

    loaded = load_run(run_dir)
    info = loaded.data_info
    code, out, err = run_cli(["viz", "activations", str(run_dir), "test:3", "--layer", "features.s2", "-c", "0,2"], capsys)
    assert code == 0, err
    assert _written(out) == run_dir / "activations-features.s2-test_3.png"
    picked = input_image("test:3", data="mnist", data_root=str(data_root), data_info=info)
    test = load_dataset("mnist", "test", data_root)
    assert picked.description == f"test image 3 (class {int(test.labels[3])})"
    maps = feature_maps(loaded.model, "features.s2", picked.pixels, info)
    fig = plot_activations(padded_image(picked.pixels, info["pad"]), maps, layer="features.s2", channels=[0, 2],
                           title=f"lenet5 on mnist: {picked.description}")
    assert _same_png(_written(out), fig, tmp_path)

    code, _, err = run_cli(["viz", "activations", str(run_dir), "test:10000", "--layer", "features.s2"], capsys)
    assert code != 0 and "the test split of mnist has 10,000 images" in err


def test_patches_search_a_seeded_sample(run_dir, tmp_path, capsys, data_root):
    from cnnlab.viz.patches import plot_top_patches, top_patches

    loaded = load_run(run_dir)
    code, out, err = run_cli(["viz", "patches", str(run_dir), "--layer", "features.c3", "-c", "1,4", "--limit", "300",
                              "--top", "4"], capsys)
    assert code == 0, err
    assert _written(out) == run_dir / "patches-features.c3.png"
    sample = random_subset(load_dataset("mnist", "test", data_root), 300, seed=0)
    field, patches = top_patches(loaded.model, "features.c3", sample.images, sample.labels, loaded.data_info,
                                 channels=[1, 4], k=4)
    assert field.describe() == "14" and [len(p) for p in patches.values()] == [4, 4]
    fig = plot_top_patches(patches, field, layer="features.c3", classes=loaded.data_info["classes"],
                           title="lenet5 on mnist, 300 test images")
    assert _same_png(_written(out), fig, tmp_path)
    assert "larger than" not in out  # a 14-pixel field fits the 32x32 padded input


@pytest.mark.parametrize("args, message", [(["--hidden", "0,a"], "0,8,32x32"), (["--hidden", ","], "at least one")])
def test_boundary_rejects_bad_layouts(args, message, capsys):
    code, _, err = run_cli(["viz", "boundary", *args], capsys)
    assert code != 0 and message in err
