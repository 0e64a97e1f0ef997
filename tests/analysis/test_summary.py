"""The summary object: rows, totals, memory estimate, formats, folding by depth."""

import csv
import io
import json

import pytest
import torch
from torch import nn

from cnnlab.analysis import summary, video_compute
from cnnlab.errors import UnknownNameError


@pytest.fixture(scope="module")
def lenet():
    return summary("lenet5")


def test_lenet5_rows_and_totals(lenet):
    assert lenet.input_size == (1, 32, 32)
    assert lenet.total_params == lenet.trainable_params == 61_706
    convs = [r for r in lenet.rows if r.type == "Conv2d"]
    # C1: 28x28x6 outputs, 5x5x1 weights each; C3: 10x10x16, 5x5x6; C5: 1x1x120, 5x5x16.
    assert [r.macs for r in convs] == [28 * 28 * 6 * 25, 10 * 10 * 16 * 150, 120 * 400]
    assert [r.output_shape for r in convs] == [(6, 28, 28), (16, 10, 10), (120, 1, 1)]
    assert [r.field.size[0] for r in convs] == [5, 14, 32]
    assert lenet.macs == sum(r.macs for r in lenet.rows)
    assert lenet.flops == 2 * lenet.macs
    assert lenet.other_ops > 0 and set(lenet.other_ops_by_kind) == {"pointwise", "pool"}


def test_training_memory_estimate():
    s = summary("lenet5", batch_size=8, dtype=torch.float16, optimizer="adam")
    mem = s.training_memory
    values = s.input_values + s.activations
    assert mem.bytes_per_value == 2
    assert mem.weights == mem.gradients == 61_706 * 2
    assert mem.optimizer_state == 2 * 61_706 * 2  # Adam: two moments per weight
    assert mem.activations == 8 * values * 2
    assert mem.total == mem.weights + mem.gradients + mem.optimizer_state + mem.activations
    assert summary("lenet5", optimizer="sgd").training_memory.optimizer_state == 0
    assert s.forward_memory == values * 2


def test_frozen_parameters_are_not_trainable():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3))
    model[0].requires_grad_(False)
    s = summary(model, (3, 8, 8))
    assert s.total_params - s.trainable_params == 3 * 4 * 9 + 4
    assert s.training_memory.gradients == s.trainable_params * 4


def test_depth_folds_blocks_without_changing_totals():
    full = summary("resnet18", (3, 64, 64))
    folded = summary("resnet18", (3, 64, 64), depth=1)
    assert [r.name for r in folded.rows] == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4",
                                             "avgpool", "fc"]
    assert len(full.rows) > len(folded.rows)
    for attr in ("macs", "other_ops", "activations", "total_params"):
        assert getattr(full, attr) == getattr(folded, attr)
    assert sum(r.macs for r in folded.rows) == folded.macs
    layer4 = next(r for r in folded.rows if r.name == "layer4")
    assert layer4.output_shape == (512, 2, 2)


def test_containers_own_ops_get_their_own_row():
    full = summary("resnet18", (3, 64, 64))
    own = [r for r in full.rows if r.type.endswith("(own ops)")]
    assert own and all(r.macs == 0 and r.other_ops > 0 for r in own)  # the residual additions


def test_formats(lenet):
    d = lenet.to_dict()
    assert json.loads(json.dumps(d))["total_params"] == 61_706
    assert d["flops"] == 2 * d["macs"] and len(d["rows"]) == len(lenet.rows)
    md = lenet.to_markdown()
    assert md.count("\n| ") == len(lenet.rows) + 1 and "FLOPs = 2 x MACs" in md
    rows = list(csv.DictReader(io.StringIO(lenet.to_csv())))
    assert [int(r["macs"]) for r in rows] == [r.macs for r in lenet.rows]
    text = str(lenet)
    assert "61,706" in text and "features.c1" in text and "receptive field" in text


def test_video_in_dict_and_text():
    from cnnlab.analysis.format import render_text, summary_dict

    s = summary("lenet5")
    v = video_compute(s, "64x64@10")
    assert v.macs_per_second == s.macs_by_kind["conv"] * 4 * 10
    assert summary_dict(s, v)["video"]["macs_per_second"] == v.macs_per_second
    assert "64x64 @ 10 fps" in render_text(s, v)
    with pytest.raises(ValueError, match="WIDTHxHEIGHT@FPS"):
        video_compute(s, "1920x1080")


def test_errors_name_the_bad_value():
    with pytest.raises(UnknownNameError, match="lenet"):
        summary("lenet6")
    with pytest.raises(ValueError, match="optimizer"):
        summary("lenet5", optimizer="rmsprop")
    with pytest.raises(ValueError, match="depth"):
        summary("lenet5", depth=0)
    with pytest.raises(ValueError, match="3x32x32"):
        summary("lenet5", (3, 32, 32))  # LeNet wants one channel
    with pytest.raises(ValueError, match="input_size"):
        summary(nn.Conv2d(1, 1, 1))  # not built by the registry: no input size to fall back on


def test_model_passed_in_is_left_as_it_was():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Dropout(0.5)).train()
    summary(model, (1, 8, 8))
    assert model.training and torch.is_grad_enabled()
    assert not model[0]._forward_hooks and not model[0]._forward_pre_hooks
