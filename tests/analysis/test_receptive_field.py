"""Receptive fields: closed forms, the per-layer rule, and the fields tracked through whole models,
with gradients as the oracle (a unit's field is where its input gradient is non-zero)."""

import pytest
import torch
from torch import nn

from cnnlab.analysis import Field, LayerSpec, field_of_stack, grow, stacked_field, summary


def test_three_stacked_3x3_see_7x7_and_two_see_5x5():
    assert stacked_field(3, 3) == 7
    assert stacked_field(2, 3) == 5
    assert [f.size[0] for f in field_of_stack([LayerSpec(3)] * 3)] == [3, 5, 7]


@pytest.mark.parametrize("layers, n", [(1, 3), (4, 3), (3, 5), (2, 7), (6, 2)])
def test_closed_form_1_plus_L_times_n_minus_1(layers, n):
    assert field_of_stack([LayerSpec(n)] * layers)[-1].size[0] == stacked_field(layers, n) == 1 + layers * (n - 1)


def test_grow_rule_with_stride_padding_dilation():
    f = grow(Field.of_input((32, 32)), 3, stride=2, padding=1)  # r 3, jump 2, start 0
    assert (f.size, f.jump, f.start) == ((3, 3), (2, 2), (0, 0))
    f = grow(f, 3, dilation=2)  # r = 3 + (3-1)*2*2 = 11; start = 0 + (2 - 0) * 2 = 4
    assert (f.size, f.jump, f.start) == ((11, 11), (2, 2), (4, 4))


def test_layer_spec_parsing():
    assert LayerSpec.parse("3s2p1d2") == LayerSpec(3, 2, 1, 2)
    with pytest.raises(ValueError, match="3x"):
        LayerSpec.parse("3x")


def _gradient_field(model: nn.Module, size: int) -> tuple[int, int]:
    """Field of the centre unit of the output, measured: extent of non-zero input gradient
    (all weights positive so nothing cancels)."""
    for p in model.parameters():
        nn.init.constant_(p, 0.1)
    x = torch.ones(1, 1, size, size, requires_grad=True)
    y = model(x)
    h, w = y.shape[-2:]
    y[0, 0, h // 2, w // 2].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero().flatten()
    cols = x.grad[0, 0].abs().sum(0).nonzero().flatten()
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


@pytest.mark.parametrize(
    "layers",
    [
        [nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3), nn.Conv2d(2, 1, 3)],
        # Average, not max, pooling: max pooling's gradient reaches one pixel per window only.
        [nn.Conv2d(1, 2, 3, padding=1), nn.AvgPool2d(2), nn.Conv2d(2, 2, 3, padding=1), nn.AvgPool2d(3, 2),
         nn.Conv2d(2, 1, 3, dilation=2)],
        [nn.Conv2d(1, 2, (5, 3), stride=(1, 2)), nn.Conv2d(2, 1, 3, stride=2, padding=1)],
    ],
)
def test_tracked_field_matches_the_gradient_oracle(layers):
    model = nn.Sequential(*layers)
    size = 64
    measured = _gradient_field(model, size)
    s = summary(model, (1, size, size))
    tracked = s.rows[-1].field
    assert tuple(int(v) for v in tracked.size) == measured


def test_max_and_average_pooling_grow_the_field_alike():
    fields = [summary(nn.Sequential(nn.Conv2d(1, 1, 3), pool(3, 2)), (1, 20, 20)).rows[-1].field for pool in
              (nn.MaxPool2d, nn.AvgPool2d)]
    assert fields[0] == fields[1] and fields[0].size == (5, 5) and fields[0].jump == (2, 2)  # 3 + (3 - 1) * 1


class _TwoBranches(nn.Module):
    """A residual-style addition of a deep and a shallow branch, then a concatenation."""

    def __init__(self):
        super().__init__()
        self.deep = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1))
        self.shallow = nn.Conv2d(1, 1, 1)
        self.side = nn.Conv2d(1, 1, 5, padding=2)

    def forward(self, x):
        y = self.deep(x) + self.shallow(x)
        return torch.cat([y, self.side(x)], dim=1)


def test_addition_and_concatenation_take_the_largest_field():
    s = summary(_TwoBranches(), (1, 16, 16))
    by_name = {r.name: r for r in s.rows}
    assert by_name["deep.1"].field.size == (5, 5)
    assert by_name["shallow"].field.size == (1, 1)
    assert by_name["(model)"].field.size == (5, 5)  # max(5 after the add, 5 of the side branch)


def test_global_pooling_and_flattened_classifiers_see_everything():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    rows = summary(model, (3, 12, 12)).rows
    assert [r.field.is_global for r in rows] == [False, True, True, True]
    flat = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 10 * 10, 2))
    assert summary(flat, (3, 12, 12)).rows[-1].field.is_global


def test_per_position_linear_keeps_the_field_and_attention_makes_it_global():
    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(3, 16, 4, stride=4)
            self.mlp = nn.Linear(16, 16)
            self.attn = nn.MultiheadAttention(16, 2, batch_first=True)

        def forward(self, x):
            t = self.patch(x).flatten(2).transpose(1, 2)  # (B, 16 tokens, 16)
            t = self.mlp(t)
            return self.attn(t, t, t, need_weights=False)[0]

    rows = {r.name: r for r in summary(Tokens(), (3, 16, 16)).rows}
    assert rows["mlp"].field.size == (4, 4) and not rows["mlp"].field.is_global
    assert rows["attn"].field.is_global
