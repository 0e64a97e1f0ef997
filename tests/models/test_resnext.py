"""ResNeXt (Xie et al. 2017): sizes, compute, the cardinality study, torchvision compatibility."""

from __future__ import annotations

import pytest
import torch

from cnnlab.models import create_model, get_model_info
from cnnlab.models.resnext import TABLE_2, TABLE_3_TOP1_ERROR
from tests.helpers import gmacs, meta_model, n_params


@pytest.mark.parametrize(
    ("name", "params"),
    [("resnext50_32x4d", 25_028_904), ("resnext101_32x4d", 44_177_704), ("resnext101_32x8d", 88_791_336)],
)
def test_parameter_count_is_exact(name, params):
    assert n_params(meta_model(name)) == params


def test_resnext50_compute():
    macs = gmacs("resnext50_32x4d", 224)
    assert macs == pytest.approx(4.2, rel=0.03)  # Xie et al. 2017, Table 1
    assert macs == pytest.approx(4.24, rel=0.01)  # Hu et al. 2018, Table 2 (ResNeXt-50)
    # With the stride on the first 1x1 instead it would be 3.77: not what the paper counts.
    assert gmacs(meta_model("resnext50_32x4d", stride_in_3x3=False), 224) < 0.92 * macs


def test_resnext101_compute():
    assert gmacs("resnext101_32x4d", 224) == pytest.approx(7.99, rel=0.01)  # Hu et al. 2018, Table 2
    assert gmacs("resnext101_32x8d", 224) == pytest.approx(16.4, rel=0.03)  # torchvision: 16.41


def test_cardinality_study_of_table_2_preserves_complexity():
    params, macs = {}, {}
    for setting, (cardinality, width) in TABLE_2.items():
        model = meta_model("resnext50", cardinality=cardinality, width=width)
        # the 3x3 conv of conv2 is C*d wide: 64, 80, 96, 112, 128 (Table 2)
        assert model.layer1[0].conv2.out_channels == cardinality * width
        assert model.layer1[0].conv2.groups == cardinality
        params[setting], macs[setting] = n_params(model), gmacs(model, 224)
    # About 25 M parameters each, within 3% of each other (25.03 M .. 25.60 M).
    assert max(params.values()) / min(params.values()) < 1.03
    assert all(p == pytest.approx(25.3e6, rel=0.03) for p in params.values())
    # About 4.1-4.2 GMACs each (Table 3 says "~4.1 billion FLOPs"): within 3% of their mean.
    # The extremes, 1x64d (4.09) and 8x14d (4.27), are 4.4% apart.
    mean = sum(macs.values()) / len(macs)
    assert all(m == pytest.approx(mean, rel=0.03) for m in macs.values())
    assert 4.1 * 0.97 < mean < 4.2 * 1.03
    # 1x64d is ResNet-50 (in its stride-in-3x3 form).
    assert params["1x64d"] == n_params(meta_model("resnet50"))
    assert macs["1x64d"] == pytest.approx(gmacs(meta_model("resnet50", stride_in_3x3=True), 224), rel=1e-9)
    # The paper's point: accuracy improves with cardinality at constant complexity.
    errors = [TABLE_3_TOP1_ERROR[s] for s in TABLE_2]
    assert errors == sorted(errors, reverse=True)


def test_state_dict_matches_torchvision():
    state = meta_model("resnext50_32x4d").state_dict()
    assert len(state) == 320  # same layout as resnet50
    assert state["layer1.0.conv1.weight"].shape == (128, 64, 1, 1)
    assert state["layer1.0.conv2.weight"].shape == (128, 4, 3, 3)  # grouped: 128 / 32 inputs per filter
    assert state["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert state["layer4.2.conv2.weight"].shape == (1024, 32, 3, 3)
    assert state["fc.weight"].shape == (1000, 2048)
    state = meta_model("resnext101_32x8d").state_dict()
    assert len(state) == 626
    assert state["layer3.22.conv2.weight"].shape == (1024, 32, 3, 3)
    assert state["layer4.0.conv1.weight"].shape == (2048, 1024, 1, 1)


def test_options_and_metadata():
    model = meta_model("resnext50", cardinality=4, width=24, num_classes=10, in_chans=1)
    assert model.fc.out_features == 10 and model.conv1.in_channels == 1
    assert model.layer3[0].conv2.weight.shape == (384, 96, 3, 3)  # 4 x (24 * 4) at conv4
    with pytest.raises(ValueError, match="groups"):
        create_model("resnext50", cardinality=0)
    info = get_model_info("resnext50_32x4d")
    assert info.reported.top1 == pytest.approx(77.8) and info.family == "resnext"
    assert get_model_info("resnext101_32x4d").reported.top5 == pytest.approx(94.4)
    assert get_model_info("resnext101_32x8d").reported is None  # not in the paper


def test_small_forward_backward():
    torch.manual_seed(0)
    model = create_model("resnext50", cardinality=8, width=4, num_classes=5)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 5)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.slow
def test_full_size_forward():
    model = create_model("resnext50_32x4d").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
