"""Feature maps of one image (``cnnlab viz activations``), and the confusion-matrix command."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cnnlab.cli import cli
from cnnlab.data import Batches
from cnnlab.data.datasets import ImageDataset
from cnnlab.errors import UnknownNameError
from cnnlab.models import create_model
from cnnlab.viz.activations import find_layer, layer_output, model_input, plot_activations


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data_root):
    """A LeNet-5 trained for one epoch on 300 MNIST images: a real run folder, in seconds."""
    import cnnlab

    out = tmp_path_factory.mktemp("activations") / "run"
    config = cnnlab.TrainConfig(model="lenet5", data="mnist", data_root=str(data_root), epochs=1, train_subset=300,
                                val_size=100, eval_test_every_epoch=False, out=str(out))
    return cnnlab.train(config, quiet=True)


def test_model_input_matches_the_training_batches():
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    data = ImageDataset("t", "test", images, torch.zeros(5, dtype=torch.int64), ("a",), (0.13,), (0.31,))
    expected = Batches(data, 5, pad=2).prepare(images)
    got = model_input(images, {"pad": 2, "mean": [0.13], "std": [0.31]})
    assert got.shape == (5, 1, 32, 32) and torch.allclose(got, expected)


def test_layer_output_is_the_layers_own_output():
    torch.manual_seed(0)
    model = create_model("lenet5")
    x = torch.randn(2, 1, 32, 32)
    maps = layer_output(model, find_layer(model, "features.c1"), x)
    assert torch.allclose(maps, model.features.c1(x))
    assert maps.shape == (2, 6, 28, 28)


def test_unknown_layer_names_close_matches():
    with pytest.raises(UnknownNameError, match="no layer 'features.c2' in lenet5; try .*features.c1"):
        find_layer(create_model("lenet5"), "features.c2")


def test_grid_shares_one_colour_scale_and_bar():
    image = torch.randint(0, 256, (1, 32, 32), dtype=torch.uint8)
    maps = torch.randn(16, 10, 10)
    fig = plot_activations(image, maps, layer="features.c3", title="lenet5")
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(drawn) == 1 + 16  # the input and every channel
    assert drawn[0].get_title() == "input (1x32x32)"
    norms = {(im.norm.vmin, im.norm.vmax) for ax in drawn[1:] for im in ax.images}
    assert len(norms) == 1  # one scale for all maps, symmetric since they have both signs
    (vmin, vmax), = norms
    assert vmin == -vmax == -float(maps.abs().max())
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "activation"]
    assert len(bars) == 1
    assert [ax.get_title() for ax in drawn[1:4]] == ["ch 0", "ch 1", "ch 2"]
    plt.close(fig)


def test_channel_choice_and_non_map_layers_are_checked():
    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    fig = plot_activations(image, torch.rand(8, 4, 4), layer="conv", channels=[1, 7])
    assert len([ax for ax in fig.axes if ax.images]) == 3
    plt.close(fig)
    with pytest.raises(ValueError, match=r"channels \[8\] out of range"):
        plot_activations(image, torch.rand(8, 4, 4), layer="conv", channels=[8])
    with pytest.raises(ValueError, match="convolution or pooling layer"):
        plot_activations(image, torch.rand(84), layer="classifier.f6")


def test_cli_with_a_dataset_image_and_an_image_file(tiny_run, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["viz", "activations", str(tiny_run.path), "test:3", "--layer", "features.s2"])
    assert result.exit_code == 0, result.output
    assert (tiny_run.path / "activations-features.s2-test_3.png").stat().st_size > 5000
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[4:24, 12:16] = 255  # a "1"
    Image.fromarray(digit).save(tmp_path / "one.png")
    out = tmp_path / "maps.png"
    result = runner.invoke(cli, ["viz", "activations", str(tiny_run.path), str(tmp_path / "one.png"), "-l", "features.c1",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 5000


def test_cli_confusion_writes_the_heat_map(tiny_run):
    result = CliRunner().invoke(cli, ["viz", "confusion", str(tiny_run.path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (tiny_run.path / "confusion-test.png").stat().st_size > 5000
