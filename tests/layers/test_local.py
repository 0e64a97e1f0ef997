import pytest
import torch

from cnnlab.layers.local import LocallyConnected2d
from tests.helpers import n_params


def naive_local(layer: LocallyConnected2d, x: torch.Tensor) -> torch.Tensor:
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
    oh, ow = layer.output_size
    xp = torch.nn.functional.pad(x, (pw, pw, ph, ph))
    w = layer.weight.view(oh, ow, layer.out_chans, layer.in_chans, kh, kw)
    out = torch.zeros(x.shape[0], layer.out_chans, oh, ow)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw]  # (B, C, kh, kw)
            for o in range(layer.out_chans):
                out[:, o, i, j] = (patch * w[i, j, o]).sum((1, 2, 3)) + layer.bias[o, i, j]
    return out


@pytest.mark.parametrize(
    "in_c,out_c,size,k,stride,pad",
    [(3, 4, (6, 7), 3, 1, 0), (2, 5, (8, 8), 3, 2, 1), (1, 2, (5, 6), (2, 3), (1, 2), 0)],
)
def test_matches_naive_loop(in_c, out_c, size, k, stride, pad):
    torch.manual_seed(0)
    layer = LocallyConnected2d(in_c, out_c, size, k, stride=stride, padding=pad)
    x = torch.randn(2, in_c, *size)
    torch.testing.assert_close(layer(x), naive_local(layer, x))


def test_parameter_count_is_unshared():
    layer = LocallyConnected2d(3, 8, (10, 10), 3)  # output 8x8
    oh, ow = layer.output_size
    assert (oh, ow) == (8, 8)
    assert layer.weight.numel() == oh * ow * 8 * (3 * 3 * 3)
    assert layer.bias.numel() == 8 * oh * ow
    assert n_params(layer) == oh * ow * 8 * 27 + 8 * oh * ow
    no_bias = LocallyConnected2d(3, 8, (10, 10), 3, bias=False)
    assert n_params(no_bias) == oh * ow * 8 * 27
    # A convolution with the same geometry shares one bank: oh*ow times fewer weights.
    conv = torch.nn.Conv2d(3, 8, 3)
    assert layer.weight.numel() == conv.weight.numel() * oh * ow


def test_weights_differ_per_location():
    # With equal patches everywhere, a conv gives the same output at every location; this must not.
    layer = LocallyConnected2d(1, 1, (4, 4), 2, stride=2)
    y = layer(torch.ones(1, 1, 4, 4))
    assert y.flatten().unique().numel() == 4


def test_grad_and_errors():
    layer = LocallyConnected2d(2, 3, (5, 5), 3, padding=1)
    x = torch.randn(2, 2, 5, 5, requires_grad=True)
    layer(x).square().sum().backward()
    assert torch.isfinite(x.grad).all() and layer.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"expects input \(B, 2, 5, 5\)"):
        layer(torch.randn(1, 2, 6, 6))
    with pytest.raises(ValueError, match="does not fit"):
        LocallyConnected2d(1, 1, (2, 2), 3)


def test_macs_counted_and_meta():
    from torch.utils.flop_counter import FlopCounterMode

    layer = LocallyConnected2d(3, 8, (10, 10), 3)
    with FlopCounterMode(display=False) as fc:
        layer(torch.randn(2, 3, 10, 10))
    assert fc.get_total_flops() // 2 == 2 * (8 * 8) * 8 * (3 * 3 * 3)  # same MACs as the conv
    with torch.device("meta"):
        assert LocallyConnected2d(3, 8, (10, 10), 3)(torch.empty(2, 3, 10, 10)).shape == (2, 8, 8, 8)
