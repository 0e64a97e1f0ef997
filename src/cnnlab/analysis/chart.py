"""Data for the accuracy-vs-compute chart (Canziani, Paszke, Culurciello 2016, "An Analysis of
Deep Neural Network Models for Practical Applications", Fig. 2, https://arxiv.org/abs/1605.07678):
one point per model, the accuracy its paper reports against the MACs and parameters we count.
:func:`cnnlab.viz.charts.accuracy_vs_compute` draws it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from cnnlab.analysis.summarize import profile
from cnnlab.models import get_model_info, list_models

__all__ = ["ChartPoint", "accuracy_vs_compute_points"]


@dataclass(frozen=True)
class ChartPoint:
    name: str
    family: str  # the model's family module ("resnet"): one colour per family
    top1: float  # reported top-1 accuracy, %
    macs: int  # counted for one image at the paper's input size
    params: int
    input_size: tuple[int, ...]
    source: str  # where the accuracy comes from


def accuracy_vs_compute_points(names: Sequence[str] | None = None, *, dataset: str = "ImageNet") -> list[ChartPoint]:
    """Every registered model (or ``names``) whose paper reports a top-1 accuracy on ``dataset``.

    MACs and parameters are counted on the meta device at the model's canonical input size.
    """
    points = []
    for name in names if names is not None else list_models():
        info = get_model_info(name)
        reported = info.reported
        if reported is None or reported.top1 is None or reported.dataset != dataset:
            continue
        params, macs = profile(name, info.input_size)
        points.append(ChartPoint(name, info.family, reported.top1, macs, params, info.input_size, reported.source))
    return points
