"""The confusion-matrix heat map."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch

from cnnlab.viz.confusion import plot_confusion
from cnnlab.viz.samples import plot_sample_grid, sample_indices


def test_heat_map_has_names_counts_and_a_colour_bar(tmp_path):
    confusion = torch.tensor([[50, 3, 0], [7, 40, 3], [0, 0, 12]])
    fig = plot_confusion(confusion, ["cat", "dog", "emu"], title="net")
    ax, bar = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "emu"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat (53)", "dog (50)", "emu (12)"]
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(["50", "3", "7", "40", "3", "12"])  # zero cells stay blank
    assert "accuracy 88.70% on 115 images" in ax.get_title()  # (50 + 40 + 12) / 115
    assert bar.get_ylabel() == "fraction of the true class"
    fig.savefig(tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 5000
    plt.close(fig)


def test_many_classes_drop_the_numbers_and_bad_shapes_fail():
    fig = plot_confusion(torch.eye(40, dtype=torch.int64) * 5, [f"c{i}" for i in range(40)])
    assert len(fig.axes[0].texts) == 0
    plt.close(fig)
    with pytest.raises(ValueError, match="does not match 2 class names"):
        plot_confusion(torch.zeros(3, 3), ["a", "b"])


def test_sample_grid_one_row_per_class():
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0])
    pick = sample_indices(labels, 3, 2, seed=0)
    assert labels[pick].tolist() == [0, 0, 1, 1, 2, 2]
    images = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8)
    fig = plot_sample_grid(images, labels, ["cat", "dog", "emu"], per_class=2, title="t")
    assert len(fig.axes) == 6 and fig.axes[0].get_ylabel() == "cat" and fig.axes[4].get_ylabel() == "emu"
    plt.close(fig)
