"""What one ATen operation computes: its multiply-accumulates and its other arithmetic.

:class:`~cnnlab.analysis.tracer.Tracer` hands every ATen call of a forward pass to
:func:`macs` and :func:`other_ops` as an :class:`OpCall`, after PyTorch has lowered modules
and functionals to ATen (``nn.Linear`` arrives as ``addmm``, ``einsum`` as ``bmm``, attention
as ``bmm`` or a fused attention kernel). The op groups below are shared with the
receptive-field rules in :mod:`cnnlab.analysis.receptive_field`.

Counting rules (docs/analysis.md has the table):

* ``macs``: multiply-accumulates of convolutions (any groups, dilation, transposed), matrix
  products with a weight (``mm``, ``addmm``, ``bmm``, ``baddbmm``) and products of two
  activations (attention's QK^T and AV, fused attention kernels included); bias additions are
  not counted. This is the papers' "FLOPs" convention and equals
  ``torch.utils.flop_counter.FlopCounterMode``'s FLOPs / 2.
* ``other_ops``: everything else that computes: 1 per output element of a pointwise op
  (activations, residual additions, scaling), 4 per element of a batch norm (subtract the
  stored mean, divide by the stored std, scale, shift), 7 per element of a layer or group norm
  (the same plus computing mean and variance), one per window element of each pooling output,
  one per input element of a reduction or adaptive pooling, 3 per element of a softmax (exp,
  sum, divide), 2^n per output element of an n-D (bi)linear interpolation.
* Views, copies, concatenation, padding and indexing cost nothing; any other op that computes
  has no rule (:func:`other_ops` returns None) so no gap goes unnoticed.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

__all__ = ["OpCall", "macs", "matmul_operands", "other_ops", "tensors_in"]

aten = torch.ops.aten

# --- ops with multiply-accumulates -----------------------------------------------------------
CONVS = {
    aten.convolution,
    aten._convolution,
    aten.convolution_overrideable,
    aten.cudnn_convolution,
    aten._slow_conv2d_forward,
}
MATMULS = {aten.mm, aten.addmm, aten.bmm, aten.baddbmm}
FUSED_ATTENTION = {
    aten._scaled_dot_product_flash_attention_for_cpu,
    aten._scaled_dot_product_efficient_attention,
    aten._scaled_dot_product_flash_attention,
    aten._scaled_dot_product_cudnn_attention,
    aten._scaled_dot_product_fused_attention_overrideable,
}

# --- ops with other arithmetic ---------------------------------------------------------------
BATCH_NORMS = {
    aten._native_batch_norm_legit_no_training,
    aten._native_batch_norm_legit,
    aten._native_batch_norm_legit_functional,
    aten.native_batch_norm,
}
STAT_NORMS = {aten.native_layer_norm, aten.native_group_norm}
WINDOW_POOLS = {
    aten.max_pool1d,
    aten.max_pool2d,
    aten.max_pool2d_with_indices,
    aten.max_pool3d_with_indices,
    aten.avg_pool1d,
    aten.avg_pool2d,
    aten.avg_pool3d,
}
ADAPTIVE_POOLS = {
    aten._adaptive_avg_pool2d,
    aten._adaptive_avg_pool3d,
    aten.adaptive_max_pool2d,
    aten.adaptive_max_pool3d,
    aten.adaptive_avg_pool1d,
}
REDUCTIONS = {
    aten.mean,
    aten.sum,
    aten.amax,
    aten.amin,
    aten.max,
    aten.min,
    aten.var,
    aten.std,
    aten.var_mean,
    aten.logsumexp,
    aten.linalg_vector_norm,
    aten.norm,
    aten.prod,
}
# Elementwise, but without PyTorch's pointwise tag.
ELEMENTWISE = {aten._prelu_kernel, aten.prelu, aten.rrelu_with_noise, aten.glu}
SOFTMAXES = {aten._softmax, aten._safe_softmax, aten._log_softmax}
INTERPOLATIONS = {
    aten.upsample_bilinear2d,
    aten.upsample_linear1d,
    aten.upsample_trilinear3d,
    aten._upsample_bilinear2d_aa,
}
NEAREST = {
    aten.upsample_nearest1d,
    aten.upsample_nearest2d,
    aten.upsample_nearest3d,
    aten._upsample_nearest_exact1d,
    aten._upsample_nearest_exact2d,
    aten._upsample_nearest_exact3d,
}
# Pointwise by PyTorch's tags, but they move data rather than compute.
COPIES = {aten.clone, aten._to_copy, aten.copy, aten.copy_, aten.fill, aten.fill_, aten.zero_, aten.lift_fresh_copy}
FREE = {
    aten.cat,
    aten.stack,
    aten.constant_pad_nd,
    aten.reflection_pad2d,
    aten.replication_pad2d,
    aten.index,
    aten.index_select,
    aten.gather,
    aten.roll,
    aten._unsafe_view,
    aten.as_strided_,
    aten.repeat,
    aten.empty,
    aten.empty_like,
    aten.empty_strided,
    aten.zeros,
    aten.zeros_like,
    aten.ones,
    aten.ones_like,
    aten.full,
    aten.full_like,
    aten.new_zeros,
    aten.new_empty,
    aten.new_ones,
    aten.new_full,
    aten.arange,
    aten.linspace,
    aten.scalar_tensor,
    aten.pixel_shuffle,
    aten.pixel_unshuffle,
    aten.channel_shuffle,
    aten.native_channel_shuffle,
    aten._unsafe_index,
    aten.slice_scatter,
    aten.select_scatter,
    aten.index_put,
    aten.index_put_,
    aten.masked_fill,
    aten.masked_fill_,
    aten.bernoulli_,
    aten.native_dropout,
    aten.rand,
    aten.randn,
    aten.tril,
    aten.triu,
    aten.sort,
    aten.topk,
    aten.argmax,
} | COPIES


def tensors_in(value: Any) -> list[Tensor]:
    """The tensors in an op's arguments or results (tensors, lists and tuples of them, dicts)."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors_in(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors_in(v)]
    return []


@dataclass(frozen=True)
class OpCall:
    """One ATen call as the dispatcher saw it: the op overload, its arguments and its result."""

    func: Any  # torch._ops.OpOverload
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    out: Any = None

    @property
    def packet(self) -> Any:
        """The overload packet (``aten.convolution``), which the op groups above list."""
        return self.func._overloadpacket

    def arg(self, name: str) -> Any:
        """An argument by its schema name, whether given by position, keyword or default."""
        for i, a in enumerate(self.func._schema.arguments):
            if a.name == name:
                if i < len(self.args):
                    return self.args[i]
                if name in self.kwargs:
                    return self.kwargs[name]
                return a.default_value if a.has_default_value() else None
        return None

    @functools.cached_property
    def inputs(self) -> list[Tensor]:
        return tensors_in(self.args) + tensors_in(self.kwargs)

    @functools.cached_property
    def result(self) -> Tensor | None:
        """The first tensor of the result (the output of a single-output op)."""
        found = tensors_in(self.out)
        return found[0] if found else None

    @property
    def is_transposed_conv(self) -> bool:
        return self.packet in (aten.convolution, aten._convolution) and bool(self.args[6])


def matmul_operands(call: OpCall) -> tuple[Tensor, Tensor]:
    """The two matrices of ``mm``/``bmm`` (a, b) or ``addmm``/``baddbmm`` (bias, a, b)."""
    return (call.args[0], call.args[1]) if call.packet in (aten.mm, aten.bmm) else (call.args[1], call.args[2])


def attention_sizes(q: Tensor, k: Tensor, v: Tensor) -> tuple[int, int]:
    """MACs of softmax(QK^T)V (QK^T plus AV) and the softmax's element count."""
    heads = math.prod(q.shape[:-2])
    sq, d, sk, dv = q.shape[-2], q.shape[-1], k.shape[-2], v.shape[-1]
    return heads * sq * sk * (d + dv), heads * sq * sk


def macs(call: OpCall, *, is_activation: Callable[[Tensor], bool]) -> tuple[str, int]:
    """(kind, multiply-accumulates) of one call; kind is conv, linear or matmul, ("", 0) for none.

    ``is_activation(t)``: whether ``t`` was computed from the input image; a matrix product of
    two such tensors is "matmul" (attention), one with a weight is "linear".
    """
    packet = call.packet
    if packet in CONVS:
        x, w = call.args[0], call.args[1]
        # Each output value (each input value, transposed) takes one MAC per weight of its filter.
        values = x.numel() if call.is_transposed_conv else call.result.numel()
        return "conv", values * math.prod(w.shape[1:])
    if packet in MATMULS:
        a, b = matmul_operands(call)
        m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
        batch = a.shape[0] if a.dim() == 3 else 1
        return ("matmul" if is_activation(a) and is_activation(b) else "linear"), batch * m * k * n
    if packet in FUSED_ATTENTION:
        return "matmul", attention_sizes(*call.args[:3])[0]
    return "", 0


def other_ops(call: OpCall) -> tuple[str, int] | None:
    """(kind, operations) of one call other than its MACs; ("", 0) for ops that cost nothing.

    None for an op that computes but has no counting rule (the tracer lists it as uncounted).
    """
    packet, first = call.packet, call.result
    if packet in MATMULS or packet in CONVS or call.func.is_view or packet in FREE or first is None:
        return "", 0
    if packet in FUSED_ATTENTION:
        return "softmax", 3 * attention_sizes(*call.args[:3])[1]
    if torch.Tag.pointwise in call.func.tags or packet in ELEMENTWISE:
        return "pointwise", first.numel()
    if packet in BATCH_NORMS:
        return "norm", 4 * call.args[0].numel()
    if packet in STAT_NORMS:
        return "norm", 7 * call.args[0].numel()
    if packet in WINDOW_POOLS:
        return "pool", first.numel() * math.prod(call.arg("kernel_size"))
    if packet in ADAPTIVE_POOLS or packet in REDUCTIONS:
        return "reduce", call.args[0].numel()
    if packet in SOFTMAXES:
        return "softmax", 3 * first.numel()
    if packet in INTERPOLATIONS:
        return "interpolate", first.numel() * 2 ** (first.dim() - 2)
    if packet in NEAREST:
        return "", 0
    return None
