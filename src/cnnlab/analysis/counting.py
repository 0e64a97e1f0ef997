"""Counting a forward pass: multiply-accumulates, other operations, activations, receptive fields.

A :class:`Tracer` is a ``TorchDispatchMode``: every ATen operation of the forward pass passes
through it after PyTorch has lowered modules and functionals to ATen (``nn.Linear`` arrives as
``addmm``, ``einsum`` as ``bmm``, attention as ``bmm`` or a fused attention kernel). Forward
pre/post hooks on every module keep a stack of the modules currently running, so each
operation is charged to the innermost one.

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
  is listed in ``uncounted`` so no gap goes unnoticed.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary

from cnnlab.analysis.receptive_field import Field, grow, widest

__all__ = ["ModuleStats", "Tracer", "count_ops", "inference"]

aten = torch.ops.aten

# --- multiply-accumulates -------------------------------------------------------------------
_CONVS = {
    aten.convolution,
    aten._convolution,
    aten.convolution_overrideable,
    aten.cudnn_convolution,
    aten._slow_conv2d_forward,
}
_MATMULS = {aten.mm, aten.addmm, aten.bmm, aten.baddbmm}
_FUSED_ATTENTION = {
    aten._scaled_dot_product_flash_attention_for_cpu,
    aten._scaled_dot_product_efficient_attention,
    aten._scaled_dot_product_flash_attention,
    aten._scaled_dot_product_cudnn_attention,
    aten._scaled_dot_product_fused_attention_overrideable,
}

# --- other operations -----------------------------------------------------------------------
_BATCH_NORMS = {
    aten._native_batch_norm_legit_no_training,
    aten._native_batch_norm_legit,
    aten._native_batch_norm_legit_functional,
    aten.native_batch_norm,
}
_STAT_NORMS = {aten.native_layer_norm, aten.native_group_norm}
_WINDOW_POOLS = {
    aten.max_pool1d,
    aten.max_pool2d,
    aten.max_pool2d_with_indices,
    aten.max_pool3d_with_indices,
    aten.avg_pool1d,
    aten.avg_pool2d,
    aten.avg_pool3d,
}
_ADAPTIVE_POOLS = {
    aten._adaptive_avg_pool2d,
    aten._adaptive_avg_pool3d,
    aten.adaptive_max_pool2d,
    aten.adaptive_max_pool3d,
    aten.adaptive_avg_pool1d,
}
_REDUCTIONS = {
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
_ELEMENTWISE = {aten._prelu_kernel, aten.prelu, aten.rrelu_with_noise, aten.glu}
_SOFTMAXES = {aten._softmax, aten._safe_softmax, aten._log_softmax}
_INTERPOLATIONS = {
    aten.upsample_bilinear2d,
    aten.upsample_linear1d,
    aten.upsample_trilinear3d,
    aten._upsample_bilinear2d_aa,
}
_NEAREST = {
    aten.upsample_nearest1d,
    aten.upsample_nearest2d,
    aten.upsample_nearest3d,
    aten._upsample_nearest_exact1d,
    aten._upsample_nearest_exact2d,
    aten._upsample_nearest_exact3d,
}
# Pointwise by PyTorch's tags, but they move data rather than compute.
_COPIES = {aten.clone, aten._to_copy, aten.copy, aten.copy_, aten.fill, aten.fill_, aten.zero_, aten.lift_fresh_copy}
_FREE = {
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
} | _COPIES


def _arg(func: Any, args: Sequence[Any], kwargs: dict[str, Any], name: str) -> Any:
    """An op's argument by its schema name, whether given by position, keyword or default."""
    for i, a in enumerate(func._schema.arguments):
        if a.name == name:
            if i < len(args):
                return args[i]
            if name in kwargs:
                return kwargs[name]
            return a.default_value if a.has_default_value() else None
    return None


def _tensors(value: Any) -> list[Tensor]:
    """The tensors in an op's arguments or results (tensors, lists and tuples of them, dicts)."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _first_tensor(value: Any) -> Tensor | None:
    found = _tensors(value)
    return found[0] if found else None


def _storage(t: Tensor) -> int:
    return t.untyped_storage()._cdata


def _attention_macs(q: Tensor, k: Tensor, v: Tensor) -> tuple[int, int]:
    """MACs of softmax(QK^T)V (QK^T plus AV) and the softmax's element count."""
    heads = math.prod(q.shape[:-2])
    sq, d, sk, dv = q.shape[-2], q.shape[-1], k.shape[-2], v.shape[-1]
    return heads * sq * sk * (d + dv), heads * sq * sk


@dataclass
class ModuleStats:
    """What one module did in the forward pass, counting only the ops its own code ran."""

    macs: Counter = field(default_factory=Counter)  # by kind: conv, linear, matmul
    other_ops: Counter = field(default_factory=Counter)  # by kind: pointwise, norm, pool, ...
    activations: int = 0  # values of fresh (not view, not in-place) tensors it produced
    calls: int = 0
    output_shape: tuple[int, ...] | None = None  # of its last call, batch included
    field: Field | None = None  # receptive field of its output, last call
    order: int = -1  # when its first call finished (a clock shared with `first_op`)
    first_op: int = -1  # when its own code first ran an op (containers: residual adds, attention)

    def add(self, other: ModuleStats) -> None:
        self.macs.update(other.macs)
        self.other_ops.update(other.other_ops)
        self.activations += other.activations


class Tracer(TorchDispatchMode):
    """Counts one forward pass, per module (with ``model``) or in total (``model=None``).

    ``image`` is the input's spatial size; with it every activation computed from the tensor
    passed to :meth:`start` carries a :class:`Field`.
    """

    def __init__(self, model: nn.Module | None = None, *, image: Sequence[int] | None = None, batch: int = 1):
        super().__init__()
        self.model = model
        self.image = tuple(image) if image is not None else None
        self.batch = batch
        self.stats: dict[str, ModuleStats] = {}
        self.total = ModuleStats()
        self.uncounted: Counter = Counter()
        self.used_params: set[int] = set()  # ids of parameters some op read
        self.fields: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self._stack: list[str] = [""]
        self._leaves: set[str] = set()
        self._inputs: dict[str, set[int]] = {}
        self._clock = 0
        self._handles: list[Any] = []

    # --- module attribution ------------------------------------------------------------------
    def __enter__(self) -> Tracer:
        if self.model is not None:
            for name, module in self.model.named_modules():
                self.stats[name] = ModuleStats()
                if not any(True for _ in module.children()):
                    self._leaves.add(name)
                self._handles.append(module.register_forward_pre_hook(self._pre_hook(name)))
                self._handles.append(module.register_forward_hook(self._post_hook(name), always_call=True))
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        super().__exit__(*exc)

    def _pre_hook(self, name: str):
        def hook(module: nn.Module, args: Any) -> None:
            self._stack.append(name)
            if name in self._leaves:
                self._inputs[name] = {_storage(t) for t in _tensors(args)}

        return hook

    def _post_hook(self, name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self._stack.pop()
            stats = self.stats[name]
            stats.calls += 1
            if stats.order < 0:
                stats.order = self._tick()
            out = _first_tensor(output)
            if out is None:
                return
            stats.output_shape = tuple(out.shape)
            stats.field = self.fields.get(out)
            if name in self._leaves and _storage(out) not in self._inputs.pop(name, set()):
                stats.activations += out.numel()  # a layer's fresh output (not in-place, not a view)

        return hook

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def _charge(self) -> ModuleStats:
        return self.stats.get(self._stack[-1], self.total) if self.model is not None else self.total

    # --- the ops --------------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        stats = self._charge()
        tensors = _tensors(args) + _tensors(kwargs)
        for t in tensors:
            if isinstance(t, nn.Parameter):
                self.used_params.add(id(t))
        in_fields = [self.fields[t] for t in tensors if t in self.fields]

        if stats.first_op < 0:
            stats.first_op = self._tick()
        kind, macs = self._macs(packet, args, kwargs, out, in_fields)
        if macs:
            stats.macs[kind] += macs
        other_kind, ops = self._other_ops(func, packet, args, kwargs, out)
        if ops:
            stats.other_ops[other_kind] += ops

        first = _first_tensor(out)
        if first is not None and self.model is not None and self._stack[-1] not in self._leaves:
            # Ops a container runs in its own forward (x + identity, torch.cat, attention
            # scores): their fresh results are activations too. Leaf layers count their output.
            if _storage(first) not in {_storage(t) for t in tensors}:
                stats.activations += first.numel()

        if self.image is not None:
            if in_fields:
                new = self._propagate(packet, func, args, kwargs, out, in_fields)
                for t in _tensors(out):
                    self.fields[t] = new
        return out

    def start(self, x: Tensor) -> None:
        """Mark ``x`` as the image whose pixels the receptive fields are measured in."""
        if self.image is not None:
            self.fields[x] = Field.of_input(self.image)

    def _macs(self, packet, args, kwargs, out, in_fields) -> tuple[str, int]:
        if packet in _CONVS:
            x, w = args[0], args[1]
            transposed = bool(args[6]) if packet in (aten.convolution, aten._convolution) else False
            # Each output value (each input value, transposed) takes one MAC per weight of its filter.
            return "conv", (x.numel() if transposed else _first_tensor(out).numel()) * math.prod(w.shape[1:])
        if packet in _MATMULS:
            a, b = (args[0], args[1]) if packet in (aten.mm, aten.bmm) else (args[1], args[2])
            m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
            batch = a.shape[0] if a.dim() == 3 else 1
            kind = "matmul" if (a in self.fields and b in self.fields) else "linear"
            return kind, batch * m * k * n
        if packet in _FUSED_ATTENTION:
            return "matmul", _attention_macs(args[0], args[1], args[2])[0]
        return "", 0

    def _other_ops(self, func, packet, args, kwargs, out) -> tuple[str, int]:
        first = _first_tensor(out)
        if packet in _MATMULS or packet in _CONVS or func.is_view or packet in _FREE or first is None:
            return "", 0
        if packet in _FUSED_ATTENTION:
            return "softmax", 3 * _attention_macs(args[0], args[1], args[2])[1]
        if torch.Tag.pointwise in func.tags or packet in _ELEMENTWISE:
            return "pointwise", first.numel()
        if packet in _BATCH_NORMS:
            return "norm", 4 * args[0].numel()
        if packet in _STAT_NORMS:
            return "norm", 7 * args[0].numel()
        if packet in _WINDOW_POOLS:
            return "pool", first.numel() * math.prod(_arg(func, args, kwargs, "kernel_size"))
        if packet in _ADAPTIVE_POOLS or packet in _REDUCTIONS:
            return "reduce", args[0].numel()
        if packet in _SOFTMAXES:
            return "softmax", 3 * first.numel()
        if packet in _INTERPOLATIONS:
            return "interpolate", first.numel() * 2 ** (first.dim() - 2)
        if packet in _NEAREST:
            return "", 0
        self.uncounted[str(packet)] += 1
        return "", 0

    # --- receptive fields -----------------------------------------------------------------------
    def _propagate(self, packet, func, args, kwargs, out, in_fields: list[Field]) -> Field:
        base = widest(in_fields)
        first = _first_tensor(out)
        n = len(self.image)
        out_grid = tuple(first.shape[-n:]) if first is not None and first.dim() >= n + 1 else base.grid

        if packet in _CONVS:
            x, w = args[0], args[1]
            k = tuple(w.shape[2:])
            if packet in (aten.convolution, aten._convolution) and args[6]:
                # A transposed convolution spreads each unit over k outputs `stride` apart:
                # the jump shrinks by the stride and the field grows by (k - 1) new jumps.
                stride = _arg(func, args, kwargs, "stride")
                jump = tuple(j / s for j, s in zip(base.jump, _tail(stride, n)))
                thin = Field(base.size, jump, base.start, base.grid, base.is_global)
                return grow(thin, k, grid=out_grid)
            return grow(
                base,
                k,
                stride=_arg(func, args, kwargs, "stride"),
                padding=_arg(func, args, kwargs, "padding"),
                dilation=_arg(func, args, kwargs, "dilation"),
                grid=out_grid,
            )
        if (packet in _WINDOW_POOLS or packet is aten.constant_pad_nd) and not self._spatial(args[0], base):
            return base  # a window over other axes (LRN's pool across channels) leaves the field alone
        if packet in _WINDOW_POOLS:
            kernel = _arg(func, args, kwargs, "kernel_size")
            stride = _arg(func, args, kwargs, "stride") or kernel  # PyTorch: stride defaults to the kernel
            dilation = _arg(func, args, kwargs, "dilation") or 1
            return grow(base, kernel, stride=stride, padding=_arg(func, args, kwargs, "padding"), dilation=dilation, grid=out_grid)
        if packet in _ADAPTIVE_POOLS:
            size_in = tuple(args[0].shape[-n:])
            if all(o == 1 for o in out_grid) and math.prod(size_in) > 1:
                return base.made_global(self.image)
            # Approximation: an adaptive pool as a fixed window of ceil(in/out), stride in // out.
            kernel = tuple(-(-i // o) for i, o in zip(size_in, out_grid))
            stride = tuple(max(i // o, 1) for i, o in zip(size_in, out_grid))
            return grow(base, kernel, stride=stride, grid=out_grid)
        if packet in _FUSED_ATTENTION:
            return base.made_global(self.image)
        if packet in _MATMULS:
            a, b = (args[0], args[1]) if packet in (aten.mm, aten.bmm) else (args[1], args[2])
            if a in self.fields and b in self.fields:
                return base.made_global(self.image)  # attention: every token sees every token
            # A weight applied per position (1x1 conv, a transformer's MLP) keeps the field; one
            # applied to a flattened map (a classifier on features) sees every position.
            rows = (a.numel() // a.shape[-1]) if a in self.fields else (b.numel() // b.shape[-2])
            if rows // max(self.batch, 1) < base.positions:
                return base.made_global(self.image)
            return base
        if packet in _REDUCTIONS:
            return self._reduced(func, args, kwargs, base)
        if packet in _INTERPOLATIONS or packet in _NEAREST:
            size_in = tuple(args[0].shape[-n:])
            jump = tuple(j * i / o for j, i, o in zip(base.jump, size_in, out_grid))
            return Field(base.size, jump, base.start, out_grid, base.is_global)
        if packet is aten.constant_pad_nd:
            pad = list(_arg(func, args, kwargs, "pad"))
            before = [pad[2 * i] if 2 * i < len(pad) else 0 for i in range(n)][::-1]  # pad lists the last axis first
            start = tuple(s - p * j for s, p, j in zip(base.start, before, base.jump))
            return Field(base.size, base.jump, start, out_grid, base.is_global)
        return base

    def _spatial(self, x: Tensor, base: Field) -> bool:
        """Whether ``x``'s last axes are the map the field describes (N, C, H, W layout)."""
        n = len(self.image)
        return x.dim() >= n + 1 and tuple(x.shape[-n:]) == base.grid

    def _reduced(self, func, args, kwargs, base: Field) -> Field:
        x = args[0]
        dims = _arg(func, args, kwargs, "dim")
        if dims is None or dims == []:
            return base.made_global(self.image)
        dims = {d % x.dim() for d in ([dims] if isinstance(dims, int) else dims)}
        n = len(self.image)
        if self._spatial(x, base) and dims & set(range(x.dim() - n, x.dim())):
            return base.made_global(self.image)  # global pooling over H, W
        if x.dim() == 3 and x.shape[1] >= base.positions and 1 in dims:
            return base.made_global(self.image)  # mean over a transformer's tokens
        return base


def _tail(value: Any, n: int) -> tuple[int, ...]:
    value = [value] if isinstance(value, int) else list(value)
    value = value * n if len(value) == 1 else value
    return tuple(value[-n:])


def count_ops(model: nn.Module, x: Tensor) -> Tracer:
    """Run ``model(x)`` once under a :class:`Tracer` without per-module bookkeeping."""
    with inference(model), Tracer() as tracer:
        model(x)
    return tracer


@contextlib.contextmanager
def inference(model: nn.Module) -> Iterator[None]:
    """Eval mode, no autograd, no fused multi-head-attention fast path (its single op would
    hide the projections and the attention products from the counts); all restored after."""
    modes = [(m, m.training) for m in model.modules()]
    grad = torch.is_grad_enabled()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    model.eval()
    torch.set_grad_enabled(False)
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
        torch.set_grad_enabled(grad)
        torch.backends.mha.set_fastpath_enabled(fastpath)

