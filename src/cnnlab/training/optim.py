"""Optimizer and loss factories: names from ``TrainConfig`` to torch objects; parameter
groups without weight decay on normalisation layers and biases, gradient clipping, and an
exponential moving average of the weights.

No decay on norms and biases: Goyal et al. 2017 (Sec. 5.1, "weight decay on gamma/beta"
hurts) and torchvision's reference "v2" recipe (``--norm-weight-decay 0``). EMA of weights:
Polyak & Juditsky 1992; torchvision's v2 recipe averages every 32 steps with
``torch.optim.swa_utils.AveragedModel``, buffers included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from cnnlab.errors import CnnlabError, UnknownNameError

OPTIMIZERS = ("sgd", "adam", "adamw")
LOSSES = ("ce", "mse")
# Fine-tuning: "backbone" trains the classifier alone (a linear probe); "none" trains everything.
FREEZE = ("none", "backbone")

# GoogLeNet (Szegedy et al. 2015, Sec. 5): "the losses of the auxiliary classifiers were
# weighted by 0.3" and added to the main loss in training.
AUX_WEIGHT = 0.3

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, labels) -> scalar


def make_optimizer(
    params: Iterable[nn.Parameter],
    *,
    name: str,
    lr: float,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """SGD (with ``momentum``), Adam or AdamW (``momentum`` is beta1, beta2 0.999).
    ``params``: parameters, or groups from :func:`parameter_groups` (each with its own
    weight decay)."""
    params = list(params)
    if params and isinstance(params[0], dict):
        params = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in params]
        params = [g for g in params if g["params"]]
    else:
        params = [p for p in params if p.requires_grad]
    fused = _can_fuse(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                               fused=fused)
    betas = (momentum, 0.999)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=fused)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=fused)
    raise UnknownNameError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")


# Devices with fused (one kernel per step) SGD, Adam and AdamW in torch 2.13.
FUSED_DEVICES = frozenset({"cpu", "cuda"})


def _can_fuse(params: list) -> bool | None:
    """torch's fused optimizer step where every parameter is a float tensor on a device that has
    it, else None (torch's own choice, foreach). Measured on 2 AMD EPYC cores (AVX2), 2 threads:
    an Adam step of LeNet-5 0.27 ms fused against 0.76 ms foreach, an SGD step of ResNet-50 19 ms
    against 33 ms (`python benchmarks/bench_optim.py`)."""
    tensors = [p for g in params for p in g["params"]] if params and isinstance(params[0], dict) else params
    ok = bool(tensors) and all(p.device.type in FUSED_DEVICES and p.is_floating_point() for p in tensors)
    return True if ok else None


def is_norm(module: nn.Module) -> bool:
    """Batch, group, layer and instance norms, torch's or ours (a class name ending in
    "Norm" or "Norm2d", such as a channels-first LayerNorm2d)."""
    norms = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
    name = type(module).__name__
    return isinstance(module, norms) or name.endswith(("Norm", "Norm2d"))


def parameter_groups(
    model: nn.Module,
    *,
    weight_decay: float,
    norm_bias_decay: bool = True,
    head: frozenset[str] | set[str] = frozenset(),
    backbone_lr_scale: float = 1.0,
    norm_lr_scale: float = 1.0,
) -> list[dict]:
    """Optimizer groups: with ``norm_bias_decay`` false, normalisation layers' parameters
    and every bias get no weight decay (a second group), the rest ``weight_decay``.

    ``norm_lr_scale`` other than 1 puts normalisation layers' parameters in groups of their
    own at that multiple of the learning rate and 1/that of the weight decay, so that the
    decay per step (lr x weight decay) is the others' (airbench, Jordan 2024: BatchNorm biases
    at 64x the rate, "bias_scaler").

    Fine-tuning: with ``backbone_lr_scale`` other than 1, each of those groups splits in two,
    the classifier's parameters (``head``: their names, ``cnnlab.models.weights.head_keys``)
    and the backbone's, whose group has ``lr_scale`` = ``backbone_lr_scale``: the loop sets
    each group's learning rate to the schedule's times its ``lr_scale`` (default 1)."""
    decay, no_decay, norms, seen = [], [], [], set()
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen:  # shared parameters: once
                continue
            seen.add(id(p))
            full = f"{module_name}.{name}" if module_name else name
            exempt = not norm_bias_decay and (is_norm(module) or name == "bias")
            if norm_lr_scale != 1.0 and is_norm(module):
                norms.append((full, p))
            else:
                (no_decay if exempt else decay).append((full, p))
    # (named parameters, weight decay, lr scale)
    groups = [(decay, weight_decay, 1.0)] + ([(no_decay, 0.0, 1.0)] if not norm_bias_decay else [])
    if norms:
        groups.append((norms, 0.0 if not norm_bias_decay else weight_decay / norm_lr_scale, norm_lr_scale))
    if backbone_lr_scale == 1.0:
        return [{"params": [p for _, p in named], "weight_decay": wd, **({"lr_scale": scale} if scale != 1.0 else {})}
                for named, wd, scale in groups]
    out = []
    for named, wd, scale in groups:
        out.append({"params": [p for n, p in named if n in head], "weight_decay": wd, "lr_scale": scale})
        out.append({"params": [p for n, p in named if n not in head], "weight_decay": wd, "lr_scale": scale * backbone_lr_scale})
    return out


def freeze_backbone(model: nn.Module, head: frozenset[str] | set[str]) -> int:
    """Stop gradients to every parameter but the classifier's (``head``: parameter names), for
    a linear probe; returns how many parameters stay trainable. :func:`keep_frozen_in_eval`
    then keeps the frozen part in eval mode."""
    trainable = 0
    for name, p in model.named_parameters():
        p.requires_grad_(name in head)
        trainable += p.numel() if name in head else 0
    if not trainable:
        raise CnnlabError("freeze=backbone left no parameter to train: the model's classifier was not found")
    return trainable


def keep_frozen_in_eval(model: nn.Module) -> None:
    """Put every module whose parameters are all frozen back in eval mode (call after
    ``model.train()``): its BatchNorm layers then normalise with the pretrained running
    statistics and do not update them, and its dropout and stochastic depth are off, so a
    linear probe trains on exactly the features the pretrained network computes. Modules
    without parameters of their own subtree (the pooling, the head's dropout) keep train mode."""
    for module in model.modules():
        if not module.training:
            continue
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            module.eval()


def clip_gradients(model: nn.Module, max_norm: float | None) -> float | None:
    """Scale the gradients so that their global L2 norm is at most ``max_norm`` (None: leave
    them); returns the norm before clipping. Under fp16 loss scaling, unscale first."""
    if max_norm is None:
        return None
    return float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))


class WeightEMA:
    """An exponential moving average of a model's weights and buffers, updated every
    ``every`` optimizer steps: ``avg = decay * avg + (1 - decay) * weights``
    (``AveragedModel`` with an EMA rule; BatchNorm statistics averaged alike).

    ``lookahead_steps`` (the run's total optimizer steps) makes it a lookahead (Zhang et al.
    2019, "Lookahead Optimizer: k steps forward, 1 step back", arXiv:1907.08610): after each
    update the model's weights are set to the average, the "slow weights". As in airbench
    (Jordan 2024, arXiv:2404.00498) the decay then ramps up with the cube of the progress,
    ``decay x (step / lookahead_steps) ** 3``: the fast weights move freely early in training
    and are pulled back hard at the end."""

    def __init__(self, model: nn.Module, *, decay: float, every: int = 1, lookahead_steps: int | None = None) -> None:
        if not 0 < decay < 1:
            raise CnnlabError(f"ema_decay must be in (0, 1), got {decay}")
        if every < 1:
            raise CnnlabError(f"ema_every must be >= 1, got {every}")
        if lookahead_steps is not None and lookahead_steps < 1:
            raise CnnlabError(f"lookahead needs the run's total steps (>= 1), got {lookahead_steps}")
        self.decay, self.every, self.steps, self.lookahead_steps = decay, every, 0, lookahead_steps

        def average(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged) -> None:
            # torch's EMA rule (a foreach lerp) at this update's decay; counters (BatchNorm's
            # num_batches_tracked) are taken as they are, not mixed and truncated
            if averaged[0].is_floating_point():
                torch._foreach_lerp_(averaged, current, 1 - self.current_decay())
            else:
                torch._foreach_copy_(averaged, current)

        self.averaged = AveragedModel(model, multi_avg_fn=average, use_buffers=True)
        # the lookahead's copy-back pairs, collected once per model (in update_parameters' order)
        self._slow = [*self.averaged.module.parameters(), *self.averaged.module.buffers()]
        self._fast_of: nn.Module | None = None
        self._fast: list[torch.Tensor] = []

    def current_decay(self) -> float:
        """The decay of the update at ``self.steps`` (constant unless a lookahead)."""
        if self.lookahead_steps is None:
            return self.decay
        return self.decay * min(1.0, self.steps / self.lookahead_steps) ** 3

    @property
    def module(self) -> nn.Module:
        """The averaged model (the same class as the one trained)."""
        return self.averaged.module

    def update(self, model: nn.Module) -> None:
        """Call after every optimizer step."""
        self.steps += 1
        if self.steps % self.every == 0:
            self.averaged.update_parameters(model)
            if self.lookahead_steps is not None:
                if self._fast_of is not model:
                    self._fast_of, self._fast = model, [*model.parameters(), *model.buffers()]
                with torch.no_grad():  # the fast weights start again from the slow ones
                    torch._foreach_copy_(self._fast, self._slow)

    def metadata(self, *, epoch: int) -> dict[str, str]:
        """The counters a resume needs, for the weight file's metadata (see :meth:`load`)."""
        return {"epoch": str(epoch), "steps": str(self.steps), "n_averaged": str(int(self.averaged.n_averaged))}

    def save(self, path: Path, *, epoch: int) -> None:
        """The averaged weights as a plain safetensors file of the model (``cnnlab eval`` and
        ``predict`` can load it like ``best``), the counters in its metadata. A training run
        commits the same file inside its checkpoint instead (``StepExtras.weights``)."""
        from cnnlab.training.checkpoint import save_weights

        save_weights(self.module, path, self.metadata(epoch=epoch))

    def load(self, path: Path, *, epoch: int) -> bool:
        """Restore what :meth:`save` wrote at ``epoch``; False (averaging restarts) when the
        file is missing or from another epoch (a crash between the checkpoint and it)."""
        from safetensors import safe_open

        from cnnlab.training.checkpoint import load_weights

        if not path.is_file():
            return False
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("epoch") != str(epoch):
            return False
        load_weights(self.module, path)
        self.steps = int(meta["steps"])
        self.averaged.n_averaged.fill_(int(meta["n_averaged"]))
        return True


def make_loss(name: str, *, num_classes: int, label_smoothing: float = 0.0) -> LossFn:
    """"ce": softmax cross-entropy (optionally label-smoothed); "mse": squared error between
    the softmax output and the one-hot target, summed over classes and averaged over the
    batch (the lectures' sum-of-squares error)."""
    if name == "ce":
        return lambda logits, y: F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    if name == "mse":

        def mse(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            target = F.one_hot(y, num_classes).to(logits.dtype)
            return ((F.softmax(logits, dim=1) - target) ** 2).sum(1).mean()

        return mse
    raise UnknownNameError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")


def loss_with_aux(loss_fn: LossFn, logits: torch.Tensor, aux: tuple[torch.Tensor, ...], y: torch.Tensor) -> torch.Tensor:
    """The main loss plus ``AUX_WEIGHT`` times each auxiliary head's loss."""
    loss = loss_fn(logits, y)
    for a in aux:
        loss = loss + AUX_WEIGHT * loss_fn(a, y)
    return loss
