"""The first convolution layer's kernels as an image grid (``cnnlab viz filters``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch
from click.testing import CliRunner

from cnnlab.cli import cli
from cnnlab.viz.activations import first_conv
from cnnlab.viz.filters import plot_filters


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data_root):
    """A LeNet-5 trained for one epoch on 300 MNIST images: a real run folder, in seconds."""
    import cnnlab

    out = tmp_path_factory.mktemp("filters") / "run"
    config = cnnlab.TrainConfig(model="lenet5", data="mnist", data_root=str(data_root), epochs=1, train_subset=300,
                                val_size=100, eval_test_every_epoch=False, out=str(out))
    return cnnlab.train(config, quiet=True)


def _images(fig):
    return [ax.images[0] for ax in fig.axes if ax.images]


def test_grayscale_kernels_are_numbered_and_each_scaled_to_0_1():
    weight = torch.randn(6, 1, 5, 5)
    weight[2] *= 0.01  # a weak kernel stays visible after its own scaling
    fig = plot_filters(weight, layer="c1")
    images = _images(fig)
    assert len(images) == 6
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles == [f"#{i}" for i in range(6)]
    for image in images:
        data = image.get_array()
        assert data.shape == (5, 5) and image.get_cmap().name == "gray"
        assert float(data.min()) == pytest.approx(0.0) and float(data.max()) == pytest.approx(1.0)
    heading = fig._suptitle.get_text()
    assert "6 kernels of 5x5x1" in heading and "grayscale" in heading
    # the weight range the scaling hides is printed under each kernel
    lo, hi = float(weight[2].min()), float(weight[2].max())
    assert f"[{lo:.2f}, {hi:.2f}]" in [t.get_text() for t in fig.axes[2].texts]
    plt.close(fig)


def test_rgb_kernels_are_drawn_in_colour_and_capped():
    weight = torch.randn(20, 3, 3, 3)
    fig = plot_filters(weight, layer="conv1", max_kernels=16)
    images = _images(fig)
    assert len(images) == 16
    assert images[0].get_array().shape == (3, 3, 3)  # (kh, kw, RGB)
    assert "16 of 20 kernels of 3x3x3 (RGB)" in fig._suptitle.get_text()
    plt.close(fig)


def test_other_channel_counts_show_the_mean_and_bad_shapes_fail():
    fig = plot_filters(torch.randn(4, 16, 3, 3))
    assert "mean over 16 input channels" in fig._suptitle.get_text()
    plt.close(fig)
    with pytest.raises(ValueError, match="out, in, kh, kw"):
        plot_filters(torch.randn(4, 3, 3))


def test_first_conv_is_lenets_c1(tiny_run):
    name, conv = first_conv(tiny_run.model)
    assert name == "features.c1" and conv.weight.shape == (6, 1, 5, 5)


def test_cli_writes_the_png_into_the_run_folder(tiny_run):
    result = CliRunner().invoke(cli, ["viz", "filters", str(tiny_run.path)])
    assert result.exit_code == 0, result.output
    png = tiny_run.path / "filters.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
