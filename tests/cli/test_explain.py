"""`cnnlab viz gradcam|saliency|occlusion|integrated-gradients|maximize|hog`: each writes a PNG,
and the numbers it prints are the library's."""

from __future__ import annotations

import re

import pytest
import torch
from PIL import Image

from cnnlab.analysis.attribution import class_probabilities
from cnnlab.analysis.feature_vis import Regularisers, channel_activation, maximize
from cnnlab.training.run import load_run
from cnnlab.viz.activations import input_image, model_input
from tests.cli.conftest import run_cli


def library_probabilities(run_dir, image: str) -> torch.Tensor:
    loaded = load_run(run_dir)
    picked = input_image(image, data="mnist", data_root=loaded.config.data_root, data_info=loaded.data_info)
    return class_probabilities(loaded.model, model_input(picked.pixels[None], loaded.data_info))


def printed_top(out: str) -> list[tuple[str, float]]:
    return [(m[1], float(m[2])) for m in re.finditer(r"^\s+\d+\. (\S+)\s+([0-9.]+)$", out, re.MULTILINE)]


@pytest.mark.parametrize("method, extra", [
    ("gradcam", []),
    ("saliency", []),
    ("occlusion", ["--window", "6", "--stride", "3"]),
    ("integrated-gradients", ["--steps", "8"]),
])
def test_attribution_commands_write_a_png_and_print_the_librarys_top_classes(run_dir, tmp_path, capsys, method, extra):
    out = tmp_path / f"{method}.png"
    code, stdout, err = run_cli(["viz", method, str(run_dir), "test:1", "--out", str(out), *extra], capsys)
    assert code == 0, err
    assert out.is_file() and Image.open(out).size[0] > 800
    probs = library_probabilities(run_dir, "test:1")
    values, indices = probs.topk(5)
    assert printed_top(stdout) == [(str(i), pytest.approx(round(float(v), 4), abs=1e-4)) for v, i in zip(values, indices.tolist())]
    top = int(indices[0])
    assert f"explained: {top} (p = {float(probs[top]):.4f})" in stdout


def test_class_option_takes_a_name_or_index_and_defaults_are_stated(run_dir, tmp_path, capsys):
    code, stdout, err = run_cli(["viz", "gradcam", str(run_dir), "test:1", "--class", "3", "--out", str(tmp_path / "a.png")], capsys)
    assert code == 0, err
    assert "explained: 3 (p = " in stdout and "Grad-CAM (layer features.s4)" in stdout
    code, stdout, err = run_cli(["viz", "occlusion", str(run_dir), "test:1", "--out", str(tmp_path / "b.png")], capsys)
    assert code == 0 and "occlusion (4x4 square of the mean colour, stride 2)" in stdout  # 32 // 7 = 4, half of it


def test_attribution_errors_are_one_line(run_dir, tmp_path, capsys):
    code, _, err = run_cli(["viz", "saliency", str(run_dir), "test:1", "--class", "eleven"], capsys)
    assert code != 0 and "is neither a class name nor an index 0..9" in err
    code, _, err = run_cli(["viz", "gradcam", str(run_dir), "test:1", "--layer", "features.c33"], capsys)
    assert code != 0 and "no layer 'features.c33'" in err and "Traceback" not in err
    code, _, err = run_cli(["viz", "occlusion", str(run_dir), "test:1", "--window", "4", "--stride", "5"], capsys)
    assert code != 0 and "stride 5 must be between 1 and the window 4" in err


def test_maximize_writes_a_png_and_prints_the_activations_it_reached(run_dir, tmp_path, capsys):
    out = tmp_path / "max.png"
    code, stdout, err = run_cli(["viz", "maximize", str(run_dir), "--layer", "features.c3", "--channel", "0,2",
                                 "--steps", "6", "--limit", "200", "--out", str(out)], capsys)
    assert code == 0, err
    assert out.is_file()
    printed = {int(m[1]): float(m[2]) for m in re.finditer(r"channel (\d+): ([0-9.-]+)", stdout)}
    assert set(printed) == {0, 2}
    loaded = load_run(run_dir)
    info = loaded.data_info
    images = maximize(loaded.model, "features.c3", [0, 2], image_size=info["image_size"], mean=info["mean"], std=info["std"],
                      pad=info["pad"], steps=6, regularisers=Regularisers(), seed=0)
    reached = channel_activation(loaded.model, "features.c3", model_input((images * 255).round().byte(), info), [0, 2])
    assert [printed[0], printed[2]] == pytest.approx(reached.tolist(), abs=1e-3)
    assert "best dataset image" in stdout  # the top patches were found and drawn beside


def test_hog_command_prints_the_feature_length_and_writes_a_png(data_root, tmp_path, capsys):
    out = tmp_path / "hog.png"
    code, stdout, err = run_cli(["viz", "hog", "test:0", "--data", "mnist", "--data-root", str(data_root), "--cell", "4",
                                 "--out", str(out)], capsys)
    assert code == 0, err
    assert "28x28, 9 orientations, 4x4-pixel cells, 2x2-cell blocks, L2-Hys: 1,296 features" in stdout and out.is_file()
    photo = tmp_path / "photo.png"
    Image.fromarray((torch.rand(50, 80, 3) * 255).byte().numpy()).save(photo)
    code, stdout, err = run_cli(["viz", "hog", str(photo), "--size", "64", "--out", str(tmp_path / "p.png")], capsys)
    assert code == 0, err
    assert "64x64" in stdout and f"{7 * 7 * 4 * 9:,} features" in stdout
    code, _, err = run_cli(["viz", "hog", "test:0"], capsys)
    assert code != 0 and "give --data" in err
