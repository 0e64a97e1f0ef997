"""One forward pass, watched op by op and charged to the module that ran each op.

A :class:`Tracer` is a ``TorchDispatchMode``: every ATen operation of the forward pass passes
through it. Forward pre/post hooks on every module keep a stack of the modules currently
running, so each operation is charged to the innermost one. Two sets of rules apply to each
op, each in its own module: :mod:`cnnlab.analysis.ops` says what it costs (MACs, other
operations), :mod:`cnnlab.analysis.receptive_field` what it does to the receptive field of
the tensors it reads. The tracer only keeps the books: per-module statistics, activation
values, and which tensor carries which field.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary

from cnnlab.analysis import ops
from cnnlab.analysis.ops import OpCall, tensors_in
from cnnlab.analysis.receptive_field import Field, field_after

__all__ = ["ModuleStats", "Tracer", "count_ops", "inference"]


def _storage(t: Tensor) -> int:
    return t.untyped_storage()._cdata


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
        self.uncounted: Counter = Counter()  # computing ops without a counting rule, by name
        self.used_params: set[int] = set()  # ids of parameters some op read
        self.fields: WeakIdKeyDictionary = WeakIdKeyDictionary()  # tensor -> Field
        self._stack: list[str] = [""]
        self._leaves: set[str] = set()
        self._inputs: dict[str, set[int]] = {}
        self._clock = 0
        self._handles: list[Any] = []

    def start(self, x: Tensor) -> None:
        """Mark ``x`` as the image whose pixels the receptive fields are measured in."""
        if self.image is not None:
            self.fields[x] = Field.of_input(self.image)

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
                self._inputs[name] = {_storage(t) for t in tensors_in(args)}

        return hook

    def _post_hook(self, name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self._stack.pop()
            stats = self.stats[name]
            stats.calls += 1
            if stats.order < 0:
                stats.order = self._tick()
            found = tensors_in(output)
            if not found:
                return
            out = found[0]
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

    def _is_activation(self, t: Tensor) -> bool:
        return t in self.fields

    # --- the ops --------------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        call = OpCall(func, args, kwargs, out)
        stats = self._charge()
        for t in call.inputs:
            if isinstance(t, nn.Parameter):
                self.used_params.add(id(t))
        in_fields = [self.fields[t] for t in call.inputs if t in self.fields]

        if stats.first_op < 0:
            stats.first_op = self._tick()
        kind, macs = ops.macs(call, is_activation=self._is_activation)
        if macs:
            stats.macs[kind] += macs
        counted = ops.other_ops(call)
        if counted is None:
            self.uncounted[str(call.packet)] += 1
        elif counted[1]:
            stats.other_ops[counted[0]] += counted[1]

        first = call.result
        if first is not None and self.model is not None and self._stack[-1] not in self._leaves:
            # Ops a container runs in its own forward (x + identity, torch.cat, attention
            # scores): their fresh results are activations too. Leaf layers count their output.
            if _storage(first) not in {_storage(t) for t in call.inputs}:
                stats.activations += first.numel()

        if self.image is not None and in_fields:
            new = field_after(call, in_fields, image=self.image, batch=self.batch, is_activation=self._is_activation)
            for t in tensors_in(out):
                self.fields[t] = new
        return out


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
