"""Self-attention for vision transformers: global (ViT, DeiT) and windowed (Swin).

- ``MultiHeadSelfAttention``: Vaswani et al. 2017, "Attention Is All You Need", Eq. 1 and
  Sec. 3.2.2 (https://arxiv.org/abs/1706.03762), as used by ViT (Dosovitskiy et al. 2021).
  Parameters are laid out like ``nn.MultiheadAttention`` (``in_proj_weight`` stacking W_q, W_k,
  W_v; ``in_proj_bias``; ``out_proj``), so torchvision ViT checkpoints load.
- ``WindowAttention``: Liu et al. 2021, "Swin Transformer" (https://arxiv.org/abs/2103.14030),
  Sec. 3.2: attention inside non-overlapping M x M windows, optionally after a cyclic shift by
  M // 2 with a mask that stops tokens from different image regions attending to each other,
  plus a learned relative position bias B (Eq. 4). Layout as torchvision's
  ``ShiftedWindowAttention`` (``qkv``, ``proj``, ``relative_position_bias_table``,
  ``relative_position_index``).

Both write the attention product out as ``q @ k^T`` and ``attn @ v`` so that operation
counters (``torch.utils.flop_counter``) see the two matmuls, which the papers' FLOPs include.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Added to the logits of masked pairs: exp(-100) is ~4e-44, zero in practice. The value of the
# reference implementation and torchvision, kept so outputs match theirs.
MASK_VALUE = -100.0


def _split_heads(x: Tensor, num_heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """(B, N, 3D) packed q|k|v -> three (B, heads, N, D / heads) tensors."""
    b, n, three_d = x.shape
    head_dim = three_d // 3 // num_heads
    q, k, v = x.reshape(b, n, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4)
    return q, k, v


class MultiHeadSelfAttention(nn.Module):
    """softmax(Q K^T / sqrt(d)) V over all tokens, in ``num_heads`` heads; (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, num_heads: int, *, attn_dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))  # rows: W_q, W_k, W_v
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(attn_dropout)
        # nn.MultiheadAttention's initialisation; models usually override it.
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = _split_heads(F.linear(x, self.in_proj_weight, self.in_proj_bias), self.num_heads)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # (B, heads, N, N)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(b, n, d)  # heads concatenated again
        return self.out_proj(x)


def relative_position_index(window_size: int) -> Tensor:
    """(M*M*M*M,) index into the (2M-1)^2 bias table for every (query, key) pair of a window.

    Token i at (y_i, x_i) and token j at (y_j, x_j) have offsets dy, dx in [-(M-1), M-1]; the
    table is a (2M-1) x (2M-1) grid of offsets, flattened row-major.
    """
    m = window_size
    ys, xs = torch.meshgrid(torch.arange(m), torch.arange(m), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()  # (M*M,) row-major token positions
    dy = ys[:, None] - ys[None, :] + (m - 1)  # shifted to [0, 2M-2]
    dx = xs[:, None] - xs[None, :] + (m - 1)
    return (dy * (2 * m - 1) + dx).flatten()


def window_partition(x: Tensor, m: int) -> Tensor:
    """(B, H, W, C) -> (B * H/M * W/M, M*M, C): the tokens of each M x M window in a row."""
    b, h, w, c = x.shape
    x = x.view(b, h // m, m, w // m, m, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, m * m, c)


def window_merge(windows: Tensor, m: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`window_partition`: (B * H/M * W/M, M*M, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // m, w // m, m, m, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def shifted_window_mask(
    h: int, w: int, m: int, shift: tuple[int, int], *, device: torch.device | None = None
) -> Tensor:
    """(windows, M*M, M*M) additive mask for attention after a cyclic shift by ``shift`` = (rows, cols).

    After rolling the map up-left by the shift, the last row and column of windows hold
    pixels from up to three image regions each (Fig. 4 of the paper). Tokens may only attend
    to tokens of their own region: label the regions and mask pairs whose labels differ.
    An axis shifted by 0 is one band.
    """

    def bands(s: int) -> tuple[slice, ...]:
        return (slice(0, -m), slice(-m, -s), slice(-s, None)) if s else (slice(None),)

    labels = torch.zeros(h, w, device=device)
    region = 0
    for rows in bands(shift[0]):
        for cols in bands(shift[1]):
            labels[rows, cols] = region
            region += 1
    labels = window_partition(labels.view(1, h, w, 1), m).squeeze(-1)  # (windows, M*M)
    differ = labels[:, None, :] != labels[:, :, None]
    return torch.zeros(differ.shape, device=device).masked_fill(differ, MASK_VALUE)


class WindowAttention(nn.Module):
    """(Shifted) window multi-head self-attention with relative position bias, (B, H, W, C) -> same.

    ``shift=0`` is the paper's W-MSA, ``shift=window_size // 2`` its SW-MSA. Maps that are not
    a multiple of the window are zero-padded at the bottom/right (as torchvision does; the
    padding is not masked), and when one window covers the whole (padded) map there is
    nothing to shift, so the shift is skipped.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        window_size: int = 7,
        shift: int = 0,
        attn_dropout: float = 0.0,
        proj_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if not 0 <= shift < window_size:
            raise ValueError(f"shift must be in [0, window_size={window_size}), got {shift}")
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift = shift
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(attn_dropout)
        self.proj_drop = nn.Dropout(proj_dropout)
        # B of Eq. 4: one learned bias per head for each of the (2M-1)^2 relative offsets.
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        # Persistent (in the state dict) because torchvision's checkpoints carry it.
        self.register_buffer("relative_position_index", relative_position_index(window_size))

    def relative_position_bias(self) -> Tensor:
        """(heads, M*M, M*M) bias added to every window's attention logits."""
        n = self.window_size**2
        bias = self.relative_position_bias_table[self.relative_position_index]  # (M^4, heads)
        return bias.view(n, n, -1).permute(2, 0, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        m = self.window_size
        x = F.pad(x, (0, 0, 0, (m - w % m) % m, 0, (m - h % m) % m))
        hp, wp = x.shape[1:3]
        # Shift along each axis only if there is more than one window along it (torchvision).
        shift_h = self.shift if hp > m else 0
        shift_w = self.shift if wp > m else 0
        shifted = shift_h > 0 or shift_w > 0
        if shifted:
            x = torch.roll(x, shifts=(-shift_h, -shift_w), dims=(1, 2))

        windows = window_partition(x, m)  # (B * windows, M*M, C)
        q, k, v = _split_heads(self.qkv(windows), self.num_heads)  # (B * windows, heads, M*M, C / heads)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # (B * windows, heads, M*M, M*M)
        attn = attn + self.relative_position_bias()
        if shifted:
            mask = shifted_window_mask(hp, wp, m, (shift_h, shift_w), device=x.device)  # (windows, M*M, M*M)
            attn = attn.view(b, mask.shape[0], self.num_heads, m * m, m * m) + mask[None, :, None].to(attn.dtype)
            attn = attn.view(-1, self.num_heads, m * m, m * m)
        attn = self.attn_drop(attn.softmax(dim=-1))
        windows = (attn @ v).transpose(1, 2).reshape(-1, m * m, c)
        windows = self.proj_drop(self.proj(windows))

        x = window_merge(windows, m, hp, wp)
        if shifted:
            x = torch.roll(x, shifts=(shift_h, shift_w), dims=(1, 2))
        return x[:, :h, :w, :]

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, window_size={self.window_size}, shift={self.shift}"

