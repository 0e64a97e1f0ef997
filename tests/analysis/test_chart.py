"""The accuracy-vs-compute chart's data and figure."""

import pytest

from cnnlab.analysis.chart import ChartPoint, accuracy_vs_compute_points
from cnnlab.analysis.summarize import profile
from cnnlab.models import get_model_info
from cnnlab.viz.charts import accuracy_vs_compute


def test_points_use_reported_accuracy_and_counted_compute():
    points = accuracy_vs_compute_points(["vgg16", "lenet5", "alexnet"])
    assert [p.name for p in points] == ["vgg16", "alexnet"]  # LeNet-5 reports on MNIST
    vgg = points[0]
    assert vgg.top1 == get_model_info("vgg16").reported.top1
    assert (vgg.params, vgg.macs) == profile("vgg16", (3, 224, 224))
    assert [p.name for p in accuracy_vs_compute_points(["lenet5"], dataset="MNIST")] == ["lenet5"]


def test_figure_is_labelled():
    points = [ChartPoint("a", "fam1", 70.0, 1_000_000_000, 60_000_000, (3, 224, 224), "paper"),
              ChartPoint("b", "fam2", 76.0, 4_000_000_000, 25_000_000, (3, 224, 224), "paper")]
    fig = accuracy_vs_compute(points)
    ax = fig.axes[0]
    assert "GMACs" in ax.get_xlabel() and "top-1" in ax.get_ylabel() and ax.get_xscale() == "log"
    assert {t.get_text() for t in ax.texts} == {"a", "b"}
    legend_titles = {child.get_title().get_text() for child in ax.get_children() if hasattr(child, "get_title")
                     and hasattr(child, "legend_handles")}
    assert {"bubble area", "family"} <= legend_titles
    with pytest.raises(ValueError, match="no models"):
        accuracy_vs_compute([])
