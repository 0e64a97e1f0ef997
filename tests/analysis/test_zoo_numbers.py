"""The lectures' numbers, reproduced from the registered models by the analysis code.

Every expected value is either quoted from the lecture/paper or computed here from the
architecture's table, never taken from the library's output.
"""

import math

import pytest

from cnnlab.analysis import profile, summary, video_compute

# VGG-16 configuration D (Simonyan & Zisserman 2015, Table 1): 3x3 convs, "M" = 2x2 max pool.
VGG_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def _vgg_table() -> list[tuple[str, tuple[int, int, int], int]]:
    """The CS231n table: (kind, output H x W x C, weights) for INPUT, each CONV/POOL, and FC."""
    rows = [("input", (224, 224, 3), 0)]
    size, chans = 224, 3
    for v in VGG_D:
        if v == "M":
            size //= 2
            rows.append(("pool", (size, size, chans), 0))
        else:
            rows.append(("conv", (size, size, v), 3 * 3 * chans * v))
            chans = v
    rows += [("fc", (1, 1, 4096), 7 * 7 * 512 * 4096), ("fc", (1, 1, 4096), 4096 * 4096), ("fc", (1, 1, 1000), 4096 * 1000)]
    return rows


@pytest.fixture(scope="module")
def vgg16():
    return summary("vgg16")


def test_vgg16_layer_table_matches_cs231n(vgg16):
    table = _vgg_table()
    rows = [r for r in vgg16.rows if r.type in ("Conv2d", "MaxPool2d", "Linear")]
    assert len(rows) == len(table) - 1
    for row, (kind, (h, w, c), weights) in zip(rows, table[1:]):
        assert math.prod(row.output_shape) == h * w * c
        assert row.activations == h * w * c
        bias = c if kind != "pool" else 0
        assert row.params == weights + bias
    conv1_1 = rows[0]
    assert conv1_1.activations == 224 * 224 * 64 and conv1_1.params - 64 == 1_728  # "3.2M", "1,728"
    fc6 = rows[-3]
    assert fc6.params - 4096 == 102_760_448
    assert vgg16.total_params == 138_357_544


def test_vgg16_memory_is_the_true_sum_of_the_listed_layers(vgg16):
    listed = sum(h * w * c for _, (h, w, c), _ in _vgg_table())  # INPUT + CONV + POOL + FC values
    assert listed == pytest.approx(15.2e6, rel=0.005)  # "about 15.2M", not the quoted 24M
    layers = [r for r in vgg16.rows if r.type in ("Conv2d", "MaxPool2d", "Linear")]
    assert vgg16.input_values + sum(r.activations for r in layers) == listed
    # The model also has an adaptive 7x7 average pool (identity at 224, a fresh copy).
    extra = sum(r.activations for r in vgg16.rows if r not in layers)
    assert vgg16.input_values + vgg16.activations == listed + extra
    assert extra == 7 * 7 * 512
    assert vgg16.forward_memory == (listed + extra) * 4
    assert vgg16.forward_memory / 2**20 == pytest.approx(58.2, abs=0.1)  # not "93 MB"


def test_vgg16_macs(vgg16):
    conv = sum(h * w * weights for kind, (h, w, _), weights in _vgg_table() if kind == "conv")
    fc = sum(weights for kind, _, weights in _vgg_table() if kind == "fc")
    assert vgg16.macs_by_kind["conv"] == conv
    assert vgg16.macs_by_kind["linear"] == fc == 123_633_664  # "about 123.6M"
    assert conv == pytest.approx(15.5e9, rel=0.015)  # "about 15.5G"
    assert vgg16.flops == 2 * vgg16.macs


def test_vgg16_receptive_fields(vgg16):
    convs = [r for r in vgg16.rows if r.type == "Conv2d"]
    assert convs[0].field.size == (3, 3) and convs[1].field.size == (5, 5)  # 1 + L(n - 1)
    pool5 = [r for r in vgg16.rows if r.type == "MaxPool2d"][-1]
    assert pool5.field.size == (212, 212) and pool5.field.jump == (32, 32)
    assert [r for r in vgg16.rows if r.type == "Linear"][0].field.is_global


def test_alexnet_as_in_the_paper():
    s = summary("alexnet")
    assert s.input_size == (3, 227, 227)
    convs = [r for r in s.rows if r.type == "Conv2d"]
    fcs = [r for r in s.rows if r.type == "Linear"]
    # Weights = parameters minus one bias per output channel.
    assert [r.params - r.output_shape[0] for r in convs] == [34_848, 307_200, 884_736, 663_552, 442_368]
    assert [r.params - r.output_shape[0] for r in fcs] == [37_748_736, 16_777_216, 4_096_000]
    neurons = [math.prod(r.output_shape) for r in convs + fcs]
    assert neurons == [290_400, 186_624, 64_896, 64_896, 43_264, 4_096, 4_096, 1_000]
    assert [r.activations for r in convs + fcs] == neurons


@pytest.mark.parametrize("name, gmacs", [("resnet18", 1.8), ("resnet34", 3.6), ("resnet50", 3.8),
                                         ("resnet101", 7.6), ("resnet152", 11.3)])
def test_resnet_gmacs_within_3_percent(name, gmacs):
    params, macs = profile(name, (3, 224, 224))
    assert macs / 1e9 == pytest.approx(gmacs, rel=0.03)


def test_real_time_video_compute_of_the_lectures():
    """AlexNet at Full-HD 30 fps "about 805 GFLOPS", VGG "about 19.3 TFLOPS" (within 2%):
    convolutional layers scaled by frame pixels / input pixels, 1 MAC counted as 1 FLOP."""
    alexnet = video_compute(summary("alexnet"), "1920x1080@30")
    assert alexnet.scale == pytest.approx(1920 * 1080 / 227**2)
    assert alexnet.macs_per_second == pytest.approx(805e9, rel=0.02)
    vgg = video_compute(summary("vgg16"), "1920x1080@30")
    assert vgg.macs_per_second == pytest.approx(19.3e12, rel=0.02)
    assert vgg.flops_per_second == 2 * vgg.macs_per_second
    # The other conventions miss one of the two figures by far more than 2%.
    assert alexnet.whole_network_macs_per_second / 805e9 > 1.05
    assert vgg.flops_per_second / 19.3e12 > 1.9
