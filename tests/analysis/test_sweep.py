"""Every registered model summarises on the meta device, and our MACs equal FlopCounterMode's
FLOPs / 2. The default run covers one model per family; ``-m slow`` covers them all."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.analysis import summary
from cnnlab.analysis.summarize import build_model
from cnnlab.models import get_model_info, list_models


def _one_per_family() -> list[str]:
    chosen: dict[str, str] = {}
    for name in list_models():  # sorted; prefer the shortest name, usually the smallest model
        family = get_model_info(name).family
        if family not in chosen or len(name) < len(chosen[family]):
            chosen[family] = name
    return sorted(chosen.values())


def _check(name: str) -> None:
    info = get_model_info(name)
    size = info.test_input_size or info.input_size
    model = build_model(name)
    with FlopCounterMode(display=False) as fc:
        s = summary(model, size)
    assert s.macs * 2 == fc.get_total_flops(), name
    assert s.total_params == sum(p.numel() for p in model.parameters())
    assert sum(r.macs for r in s.rows) == s.macs
    assert sum(r.activations for r in s.rows) == s.activations
    assert s.uncounted == {}, f"{name}: ops without a counting rule {s.uncounted}"
    assert s.rows and all(r.output_shape is not None for r in s.rows)
    assert str(s)  # renders
    assert next(model.parameters()).device == torch.device("meta")


@pytest.mark.parametrize("name", _one_per_family())
def test_one_model_per_family(name):
    _check(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_every_registered_model(name):
    _check(name)
