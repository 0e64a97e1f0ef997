"""MAC and op counting on small inline models, with torch.utils.flop_counter as the oracle."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.analysis import profile, summary


def _checked(model: nn.Module, size: tuple[int, ...], device=None):
    """Summary of ``model`` with FlopCounterMode watching the same forward pass."""
    with FlopCounterMode(display=False) as fc:
        s = summary(model, size, device=device)
    assert fc.get_total_flops() == 2 * s.macs
    return s


class _Everything(nn.Module):
    def __init__(self):
        super().__init__()
        self.grouped = nn.Conv2d(8, 16, 3, padding=2, dilation=2, groups=4)
        self.bn = nn.BatchNorm2d(16)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.depthwise = nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=False)
        self.proj = nn.Linear(8, 12)

    def forward(self, x):
        x = F.relu(self.bn(self.grouped(x)))  # (B, 16, 10, 10)
        x = self.depthwise(self.up(x)) + 1.0  # (B, 8, 20, 20)
        t = self.proj(x.flatten(2).transpose(1, 2))  # (B, 400, 12) tokens
        scores = torch.einsum("bnd,bmd->bnm", t, t).softmax(-1)  # (B, 400, 400)
        return scores @ t  # (B, 400, 12)


def test_macs_equal_flop_counter_over_conv_kinds_linear_einsum_matmul():
    s = _checked(_Everything(), (8, 10, 10))
    grouped = 16 * 10 * 10 * (8 // 4) * 9
    transposed = 16 * 10 * 10 * 8 * 4  # every input value meets every weight of its filter
    depthwise = 8 * 20 * 20 * 25
    proj = 400 * 8 * 12
    scores, mix = 400 * 12 * 400, 400 * 400 * 12
    assert s.macs == grouped + transposed + depthwise + proj + scores + mix
    assert s.macs_by_kind == {"conv": grouped + transposed + depthwise, "linear": proj, "matmul": scores + mix}


def test_other_ops_follow_the_documented_rules():
    model = nn.Sequential(nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.LayerNorm([4, 3, 3]), nn.Softmax(-1))
    s = summary(model, (4, 6, 6))
    ops = [r.other_ops for r in s.rows]
    assert ops == [4 * 144, 144, 36 * 4, 7 * 36, 3 * 36]
    assert s.macs == 0


def test_attention_is_counted_on_cpu_fused_kernels_and_on_meta():
    class Attention(nn.Module):
        def forward(self, x):
            q = x.view(1, 2, 16, 8)  # (B, heads, tokens, dim)
            return F.scaled_dot_product_attention(q, q, q)

    cpu = summary(Attention(), (2, 16, 8))  # CPU: one fused op, which FlopCounterMode misses
    meta = _checked(Attention(), (2, 16, 8), device="meta")  # meta: decomposed into bmm
    assert cpu.macs == meta.macs == 2 * (2 * 16 * 16 * 8)


def test_multihead_attention_counts_projections_and_products():
    mha = nn.MultiheadAttention(32, 4, batch_first=True)

    class Self(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = mha

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0]

    s = _checked(Self().to("meta"), (10, 32))  # on the CPU, a fused kernel FlopCounterMode misses
    projections = 4 * 10 * 32 * 32  # q, k, v and output
    products = 2 * 10 * 10 * 32  # QK^T and AV over all heads
    assert s.macs == projections + products == summary(Self(), (10, 32)).macs
    # out_proj never runs as a module (its parent reads its weight): its parameters are used,
    # and they land in the parent's row.
    assert s.unused_params == 0
    assert sum(r.params for r in s.rows) == s.total_params


def test_rows_partition_the_totals():
    for model, size in [(_Everything(), (8, 10, 10)), (nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(64, 2)), (3, 6, 6))]:
        for depth in (None, 1):
            s = summary(model, size, depth=depth)
            assert sum(r.macs for r in s.rows) == s.macs
            assert sum(r.other_ops for r in s.rows) == s.other_ops
            assert sum(r.activations for r in s.rows) == s.activations
            assert sum(r.params for r in s.rows) == s.total_params


def test_in_place_and_view_outputs_are_not_new_activations():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.ReLU())
    rows = summary(model, (1, 5, 5)).rows
    assert [r.activations for r in rows] == [18, 0, 0, 18]


def test_profile_matches_summary_and_restores_the_model():
    model = _Everything().train()
    params, macs = profile(model, (8, 10, 10))
    assert model.training and torch.is_grad_enabled()
    s = summary(model, (8, 10, 10))
    assert (params, macs) == (s.total_params, s.macs)


def test_unknown_computing_ops_are_reported():
    class Odd(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, 1)

    assert "aten.cumsum" in summary(Odd(), (4, 4)).uncounted


@pytest.mark.parametrize("bad", ["3x", "axb", "0x4x4"])
def test_bad_input_size_names_the_value(bad):
    with pytest.raises(ValueError, match="input size"):
        summary(nn.Conv2d(3, 3, 1), bad)
