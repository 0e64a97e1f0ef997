"""The sigmoid neuron's surface and the perceptron-vs-MLP decision regions (``cnnlab viz neuron|boundary``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cnnlab.cli import cli
from cnnlab.data.toy import TOY_DATASETS, make_toy
from cnnlab.errors import UnknownNameError
from cnnlab.training.toy import fit_toy_classifier
from cnnlab.viz.neuron import describe_hidden, plot_decision_regions, plot_neuron, sigmoid_neuron


def test_sigmoid_neuron_matches_torch():
    z1, z2 = np.meshgrid(np.linspace(-3, 3, 7), np.linspace(-2, 2, 5))
    expected = torch.sigmoid(torch.from_numpy(0.5 * z1 - 2.0 * z2 + 1.0)).numpy()
    assert np.allclose(sigmoid_neuron(z1, z2, 0.5, -2.0, 1.0), expected)
    assert sigmoid_neuron(np.array(0.0), np.array(0.0), 3.0, 4.0) == pytest.approx(0.5)


def test_neuron_figure_has_a_surface_a_contour_map_and_a_colour_bar():
    fig = plot_neuron(1.0, -2.0, bias=0.5)
    surface, contour, bar = fig.axes
    assert surface.name == "3d" and surface.get_zlabel() == "output $x$"
    assert contour.get_xlabel() == "$z_1$" and contour.get_ylabel() == "$z_2$"
    assert bar.get_ylabel() == "output $x$"
    assert "$w_1$ = 1, $w_2$ = -2, b = 0.5" in fig._suptitle.get_text()
    plt.close(fig)


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_toy_sets_are_seeded_balanced_and_2d(name):
    x, y = make_toy(name, 200, seed=3)
    assert x.shape == (200, 2) and x.dtype == torch.float32 and set(y.tolist()) == {0, 1}
    assert abs(int(y.sum()) - 100) <= 30
    assert torch.equal(make_toy(name, 200, seed=3)[0], x)


def test_unknown_toy_set():
    with pytest.raises(UnknownNameError, match="expected one of xor, moons"):
        make_toy("spirals")


def test_decision_region_panels():
    x, y = make_toy("moons", 100)
    models = [(describe_hidden(h), fit_toy_classifier(x, y, h, steps=50)) for h in [(), (4, 4)]]
    fig = plot_decision_regions(models, x, y, title="moons", resolution=50)
    assert len(fig.axes) == 2
    assert fig.axes[0].get_title().startswith("perceptron (no hidden layer)\ntraining accuracy")
    assert fig.axes[1].get_title().startswith("MLP, hidden 4 + 4 tanh units")
    assert fig.axes[0].get_xlabel() == "$z_1$" and fig.axes[0].get_legend() is not None
    plt.close(fig)


def test_cli_neuron_and_boundary_write_pngs(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["viz", "neuron", "--w1", "2", "--w2", "-1", "--out", str(tmp_path / "n.png")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["viz", "boundary", "--dataset", "circles", "--hidden", "0,6x6", "--points", "80",
                                 "--steps", "30", "--out", str(tmp_path / "b.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "n.png").stat().st_size > 5000 and (tmp_path / "b.png").stat().st_size > 5000
    result = runner.invoke(cli, ["viz", "boundary", "--hidden", "0,a"])
    assert result.exit_code != 0 and "0,8,32x32" in result.output
