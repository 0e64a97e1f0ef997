import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.layers.attention import (
    MultiHeadSelfAttention,
    WindowAttention,
    relative_position_index,
    shifted_window_mask,
)


def test_mhsa_matches_torch_multihead_attention():
    # Same parameter names and layout as nn.MultiheadAttention: the state dicts are interchangeable.
    torch.manual_seed(0)
    ours = MultiHeadSelfAttention(32, 4)
    ref = nn.MultiheadAttention(32, 4, batch_first=True)
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 10, 32)
    expected, _ = ref(x, x, x, need_weights=False)
    torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-6)


def test_mhsa_matmuls_are_counted():
    n, d = 10, 32
    attn = MultiHeadSelfAttention(d, 4)
    with FlopCounterMode(display=False) as fc:
        attn(torch.randn(1, n, d))
    in_proj, out_proj = n * d * 3 * d, n * d * d
    qk_and_av = 2 * n * n * d  # all heads together: N x N x d/h per head, h heads, twice
    assert fc.get_total_flops() // 2 == in_proj + out_proj + qk_and_av


def test_mhsa_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadSelfAttention(30, 4)


def test_relative_position_index_against_pairwise_offsets():
    m = 3
    index = relative_position_index(m).view(m * m, m * m)
    for i in range(m * m):
        for j in range(m * m):
            dy, dx = i // m - j // m, i % m - j % m
            assert index[i, j] == (dy + m - 1) * (2 * m - 1) + (dx + m - 1)
    assert relative_position_index(7).shape == (7**4,)
    assert int(relative_position_index(7).max()) == 13 * 13 - 1


def _reference_window_attention(attn: WindowAttention, x: torch.Tensor) -> torch.Tensor:
    """Global attention over a map that is exactly one window, bias looked up pair by pair."""
    b, h, w, c = x.shape
    heads, m = attn.num_heads, attn.window_size
    tokens = x.reshape(b, h * w, c)
    q, k, v = attn.qkv(tokens).chunk(3, dim=-1)
    split = lambda t: t.view(b, h * w, heads, c // heads).transpose(1, 2)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    logits = q @ k.transpose(-2, -1) / (c // heads) ** 0.5
    bias = torch.empty(heads, h * w, h * w)
    for i in range(h * w):
        for j in range(h * w):
            dy, dx = i // w - j // w, i % w - j % w
            bias[:, i, j] = attn.relative_position_bias_table[(dy + m - 1) * (2 * m - 1) + dx + m - 1]
    out = (logits + bias).softmax(-1) @ v
    return attn.proj(out.transpose(1, 2).reshape(b, h * w, c)).view(b, h, w, c)


def test_window_attention_on_one_window_is_global_attention_with_bias():
    torch.manual_seed(0)
    attn = WindowAttention(16, 2, window_size=4)
    x = torch.randn(2, 4, 4, 16)
    torch.testing.assert_close(attn(x), _reference_window_attention(attn, x), rtol=1e-5, atol=1e-5)
    # One window covering the whole map leaves nothing to shift: SW-MSA equals W-MSA there.
    shifted = WindowAttention(16, 2, window_size=4, shift=2)
    shifted.load_state_dict(attn.state_dict())
    torch.testing.assert_close(shifted(x), attn(x))


def _changed_outputs(attn: WindowAttention, x: torch.Tensor, where: tuple[int, int]) -> torch.Tensor:
    """Boolean (H, W) map of the outputs that change when the token at `where` is perturbed."""
    y = attn(x)
    x2 = x.clone()
    x2[0, where[0], where[1]] += 5.0
    return (attn(x2) - y).abs().amax(dim=-1)[0] > 1e-5


def test_window_attention_only_mixes_tokens_of_one_window():
    torch.manual_seed(0)
    attn = WindowAttention(8, 2, window_size=7, shift=0)
    changed = _changed_outputs(attn, torch.randn(1, 14, 14, 8), (0, 0))
    expected = torch.zeros(14, 14, dtype=torch.bool)
    expected[:7, :7] = True
    assert torch.equal(changed, expected)


def test_shifted_window_mask_keeps_wrapped_regions_apart():
    # With shift 3, the top-left 3x3 corner is rolled into the bottom-right window, next to
    # pixels from the far side of the image; the mask confines it to its own region (Fig. 4).
    torch.manual_seed(0)
    attn = WindowAttention(8, 2, window_size=7, shift=3)
    x = torch.randn(1, 14, 14, 8)
    changed = _changed_outputs(attn, x, (0, 0))
    expected = torch.zeros(14, 14, dtype=torch.bool)
    expected[:3, :3] = True
    assert torch.equal(changed, expected)
    # A token in the middle: its shifted window is rows/cols 3..9, all one region.
    changed = _changed_outputs(attn, x, (5, 5))
    expected = torch.zeros(14, 14, dtype=torch.bool)
    expected[3:10, 3:10] = True
    assert torch.equal(changed, expected)


def test_shifted_window_mask_shape_and_values():
    mask = shifted_window_mask(14, 14, 7, (3, 3))
    assert mask.shape == (4, 49, 49)
    assert torch.all(mask[0] == 0)  # the top-left window holds one region only
    assert set(mask.unique().tolist()) == {-100.0, 0.0}
    assert torch.equal(mask, mask.transpose(1, 2))


def test_window_attention_pads_maps_that_are_not_window_multiples():
    attn = WindowAttention(8, 2, window_size=7, shift=3)
    x = torch.randn(2, 9, 12, 8)
    assert attn(x).shape == (2, 9, 12, 8)


def test_window_attention_matmuls_are_counted():
    c, m, windows = 8, 7, 4
    attn = WindowAttention(c, 2, window_size=m, shift=3)
    with FlopCounterMode(display=False) as fc:
        attn(torch.randn(1, 14, 14, c))
    n = m * m
    expected = windows * (n * c * 3 * c + n * c * c + 2 * n * n * c)
    assert fc.get_total_flops() // 2 == expected


def test_window_attention_state_dict_layout():
    sd = WindowAttention(96, 3, window_size=7).state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == {
        "relative_position_bias_table": (169, 3),
        "relative_position_index": (2401,),
        "qkv.weight": (288, 96),
        "qkv.bias": (288,),
        "proj.weight": (96, 96),
        "proj.bias": (96,),
    }


@pytest.mark.parametrize("kwargs", [dict(dim=30, num_heads=4), dict(dim=32, num_heads=4, shift=7)])
def test_window_attention_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        WindowAttention(**kwargs)
