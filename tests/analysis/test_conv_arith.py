"""Convolution arithmetic: the lectures' worked examples, with PyTorch's own layers as the oracle."""

import pytest
import torch
from torch import nn

from cnnlab.analysis import conv_layer, conv_output_size, conv_params, pool2d, same_padding


def test_33x33x5_ten_3x3_filters_stride_2():
    layer = conv_layer((33, 33, 5), 10, 3, stride=2, padding=0)
    assert layer.output == (16, 16, 10)
    assert layer.params == 460
    text = "\n".join(layer.explain())
    assert "(33 - 3 + 2*0) / 2 + 1 = 16" in text and "= 460" in text


def test_32x32x3_ten_5x5_filters_pad_2_keeps_size():
    layer = conv_layer((32, 32, 3), 10, 5, stride=1, padding=2)
    assert layer.output == (32, 32, 10)
    assert layer.params == 760
    assert conv_layer((32, 32, 3), 10, 5, padding="same").output == (32, 32, 10)


def test_7x7_input_3x3_filter_gives_5x5():
    assert conv_output_size(7, 3) == 5
    assert conv_layer((7, 7, 1), 1, 3).output[:2] == (5, 5)


@pytest.mark.parametrize("f", [1, 3, 5, 7, 11])
def test_padding_f_minus_1_over_2_keeps_the_size(f):
    assert same_padding(f) == (f - 1) // 2
    assert conv_output_size(28, f, padding=same_padding(f)) == 28


def test_same_padding_rejects_even_kernels():
    with pytest.raises(ValueError, match="4x4"):
        same_padding(4)


def test_windows_that_do_not_tile_are_floored_and_explained():
    layer = conv_layer((7, 7, 1), 1, 3, stride=3)
    assert layer.output[:2] == (2, 2)
    assert any("not a whole number" in line for line in layer.explain())


@pytest.mark.parametrize(
    "n, f, s, p, d",
    [(33, 3, 2, 0, 1), (32, 5, 1, 2, 1), (227, 11, 4, 0, 1), (224, 7, 2, 3, 1), (17, 3, 1, 2, 2), (10, 4, 3, 1, 1)],
)
def test_output_size_matches_pytorch(n, f, s, p, d):
    conv = nn.Conv2d(1, 1, f, stride=s, padding=p, dilation=d)
    assert conv(torch.zeros(1, 1, n, n)).shape[-1] == conv_output_size(n, f, stride=s, padding=p, dilation=d)
    pool = nn.MaxPool2d(f, stride=s, padding=min(p, f // 2), ceil_mode=True)
    expected = pool(torch.zeros(1, 1, n, n)).shape[-1]
    # PyTorch drops a last ceil-mode window that would start inside the padding only.
    assert conv_output_size(n, f, stride=s, padding=min(p, f // 2), ceil_mode=True) in (expected, expected + 1)


@pytest.mark.parametrize("cin, cout, k, bias, groups", [(5, 10, 3, True, 1), (3, 96, 11, True, 1), (96, 256, 5, True, 2),
                                                         (64, 64, 3, False, 64), (48, 96, (1, 7), False, 3)])
def test_conv_params_match_pytorch(cin, cout, k, bias, groups):
    conv = nn.Conv2d(cin, cout, k, bias=bias, groups=groups)
    assert conv_params(cin, cout, k, bias=bias, groups=groups) == sum(p.numel() for p in conv.parameters())


def test_bad_groups_and_sizes_name_the_value():
    with pytest.raises(ValueError, match="groups=3"):
        conv_params(4, 8, 3, groups=3)
    with pytest.raises(ValueError, match="does not fit"):
        conv_output_size(3, 5)
    with pytest.raises(ValueError, match="stride"):
        conv_output_size(8, 3, stride=0)


def test_max_pool_of_the_lecture_matrix():
    x = [[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]]
    result = pool2d(x, 2, stride=2, mode="max")
    assert result.output == [[6, 8], [3, 4]]
    assert result.windows[0] == (0, 0, [1, 1, 5, 6], 6)
    expected = nn.functional.max_pool2d(torch.tensor(x, dtype=torch.float32)[None], 2)[0].tolist()
    assert result.output == expected
    assert "out[0][1] = max(2, 4, 7, 8) = 8" in "\n".join(result.explain())


def test_average_pool_matches_pytorch():
    x = torch.arange(36.0).reshape(6, 6) % 7
    result = pool2d(x.tolist(), 3, stride=2, mode="avg")
    expected = nn.functional.avg_pool2d(x[None], 3, stride=2)[0]
    assert torch.allclose(torch.tensor(result.output), expected)
