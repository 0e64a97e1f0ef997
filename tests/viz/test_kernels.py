"""Hand-designed kernels on an image (``cnnlab viz kernels``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cnnlab.cli import cli
from cnnlab.viz.kernels import (
    BLUR_5X5,
    DEFAULT_KERNELS,
    EDGE_3X3,
    apply_kernel,
    chosen_kernels,
    load_gray,
    parse_kernel,
    plot_kernels,
)


def test_blur_keeps_a_constant_image_constant_inside():
    image = torch.full((12, 12), 0.7)
    out = apply_kernel(image, BLUR_5X5)
    assert out.shape == (12, 12)
    assert torch.allclose(out[2:-2, 2:-2], torch.full((8, 8), 0.7))  # 25 x 0.04 x 0.7
    assert out[0, 0] == pytest.approx(0.7 * 9 * 0.04)  # the corner sees 3x3 pixels and 16 zeros of padding


def test_edge_detector_is_zero_on_flat_regions_and_answers_a_step():
    assert torch.allclose(apply_kernel(torch.full((9, 9), 0.3), EDGE_3X3)[1:-1, 1:-1], torch.zeros(7, 7))
    step = torch.zeros(9, 9)
    step[:, 5:] = 1.0  # dark left, bright right
    out = apply_kernel(step, EDGE_3X3)[1:-1]  # rows clear of the padding
    assert torch.allclose(out[:, 4], torch.full((7,), -0.25))  # last dark column: one bright neighbour
    assert torch.allclose(out[:, 5], torch.full((7,), 0.25))  # first bright column: one dark neighbour
    assert torch.allclose(out[:, [1, 2, 3, 6, 7]], torch.zeros(7, 5))


def test_apply_kernel_is_cross_correlation_like_a_conv_layer():
    rng = np.random.default_rng(0)
    image, kernel = rng.random((6, 7)).astype(np.float32), rng.random((3, 3)).astype(np.float32)
    padded = np.pad(image, 1)
    expected = np.array([[(padded[i : i + 3, j : j + 3] * kernel).sum() for j in range(7)] for i in range(6)])
    assert np.allclose(apply_kernel(torch.from_numpy(image), torch.from_numpy(kernel)).numpy(), expected, atol=1e-6)
    assert apply_kernel(torch.rand(5, 6), torch.ones(2, 4)).shape == (5, 6)  # even sizes keep the size too


def test_parse_kernel_reads_rows_and_fractions_and_rejects_ragged_rows():
    assert parse_kernel("1,0,-1;2,0,-2;1,0,-1").tolist() == [[1, 0, -1], [2, 0, -2], [1, 0, -1]]
    assert parse_kernel("1/4 1/4; 1/4 1/4").tolist() == [[0.25, 0.25], [0.25, 0.25]]
    with pytest.raises(ValueError, match="rows of equal length"):
        parse_kernel("1,2;3")
    with pytest.raises(ValueError, match="bad kernel value 'x'"):
        parse_kernel("1,x")


def test_figure_shows_input_outputs_and_kernels_with_colour_bars():
    image = torch.rand(20, 30)
    kernels = [*DEFAULT_KERNELS, ("sobel", parse_kernel("1,0,-1;2,0,-2;1,0,-1"))]
    fig = plot_kernels(image, kernels, title="test")
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(drawn) == 1 + 2 * 3  # input, then an output and a kernel per kernel
    assert drawn[0].get_title() == "input (20x30 pixels, grayscale)"
    titles = [ax.get_title() for ax in drawn]
    assert any(t.startswith("blur 5x5 (all 0.04)\noutput") for t in titles)
    assert "kernel: 3x3, sum 0" in titles and "kernel: 5x5, sum 1" in titles
    assert len([ax for ax in fig.axes if ax.get_ylabel() == "response"]) == 3  # a colour bar per output
    plt.close(fig)


def test_load_gray_shrinks_big_images(tmp_path):
    Image.fromarray(np.full((600, 300, 3), 255, dtype=np.uint8)).save(tmp_path / "big.png")
    image = load_gray(tmp_path / "big.png")
    assert image.shape == (256, 128) and float(image.max()) == pytest.approx(1.0)


def test_cli_writes_the_png(tmp_path):
    Image.fromarray((np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8)).save(tmp_path / "img.png")
    out = tmp_path / "k.png"
    result = CliRunner().invoke(cli, ["viz", "kernels", str(tmp_path / "img.png"), "-k", "1,0,-1;2,0,-2;1,0,-1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 5000
    result = CliRunner().invoke(cli, ["viz", "kernels", str(tmp_path / "img.png"), "-k", "1,2;3"])
    assert result.exit_code != 0 and "rows of equal length" in result.output


def test_chosen_kernels_defaults_then_parsed_ones():
    labels = [label for label, _ in chosen_kernels(["1,0;0,1"])]
    assert labels == [label for label, _ in DEFAULT_KERNELS] + ["your kernel"]
    two = chosen_kernels(["1", "0,1;1,0"], defaults=False)
    assert [label for label, _ in two] == ["kernel 1", "kernel 2"]
    assert torch.equal(two[1][1], torch.tensor([[0.0, 1], [1, 0]]))
    with pytest.raises(ValueError, match="no kernels"):
        chosen_kernels([], defaults=False)


def test_load_gray_decodes_through_the_image_policy(tmp_path):
    from cnnlab.errors import DataError

    Image.new("RGB", (600, 300), (255, 0, 0)).save(tmp_path / "red.png")
    gray = load_gray(tmp_path / "red.png")
    assert gray.shape == (128, 256) and gray.mean().item() == pytest.approx(76 / 255, abs=0.01)  # ITU-R 601 luma of red
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot decode image"):
        load_gray(tmp_path / "bad.png")
