"""The per-step extras of modern recipes, as three small calls the training step makes:
mixup/cutmix targets (:meth:`StepExtras.mix`), gradient clipping (:meth:`StepExtras.clip`)
and the EMA of the weights (:meth:`StepExtras.after_step`), plus the EMA model's metrics
and its file (``ema.safetensors``: the averaged weights, loadable like ``best``, committed
inside each epoch's checkpoint with its counters, so a resume continues the average exactly).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cnnlab.data.augment_policies import MixupCutmix
from cnnlab.errors import CnnlabError
from cnnlab.training.checkpoint import checkpoint_file
from cnnlab.training.config import TrainConfig
from cnnlab.training.optim import WeightEMA, clip_gradients

EMA_FILE = "ema.safetensors"


class StepExtras:
    """What a config asks of each training step beyond forward, backward and step."""

    def __init__(self, config: TrainConfig, model: nn.Module, *, num_classes: int, generator: torch.Generator,
                 total_steps: int | None = None) -> None:
        self.mixer = MixupCutmix(num_classes, mixup_alpha=config.mixup_alpha, cutmix_alpha=config.cutmix_alpha)
        if self.mixer.enabled and config.loss != "ce":
            raise CnnlabError(f"mixup and cutmix need the cross-entropy loss (soft targets), not loss {config.loss!r}")
        if config.grad_clip is not None and config.grad_clip <= 0:
            raise CnnlabError(f"grad_clip must be > 0, got {config.grad_clip}")
        self.grad_clip = config.grad_clip
        self.generator = generator
        self.model = model  # the network itself (not its DDP wrapper): what the EMA follows
        if config.lookahead and config.ema_decay is None:
            raise CnnlabError("lookahead pulls the weights back to their EMA: set ema_decay too (airbench: 0.95 ** 5 with ema_every 5)")
        if config.lookahead and total_steps is None:
            raise CnnlabError("lookahead needs the run's total optimizer steps (its decay ramps with the progress)")
        self.ema = None if config.ema_decay is None else WeightEMA(
            model, decay=config.ema_decay, every=config.ema_every, lookahead_steps=total_steps if config.lookahead else None)

    @classmethod
    def needed(cls, config: TrainConfig) -> bool:
        return (config.mixup_alpha > 0 or config.cutmix_alpha > 0 or config.grad_clip is not None or config.ema_decay is not None
                or config.lookahead)

    def mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch and the targets the loss sees: soft targets under mixup/cutmix, else ``y``."""
        if not self.mixer.enabled:
            return x, y
        return self.mixer(x, y, self.generator)

    def clip(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        """Clip the accumulated gradients before the optimizer step (unscaled first under fp16)."""
        if self.grad_clip is None:
            return
        scaler.unscale_(optimizer)
        clip_gradients(self.model, self.grad_clip)

    def after_step(self) -> None:
        if self.ema is not None:
            self.ema.update(self.model)

    def weights(self, *, epoch: int) -> dict[str, tuple[nn.Module, dict[str, str]]]:
        """The extra weight files of epoch ``epoch``'s checkpoint: the EMA and its counters,
        committed in the same transaction as the weights and optimizer state."""
        if self.ema is None:
            return {}
        return {EMA_FILE: (self.ema.module, self.ema.metadata(epoch=epoch))}

    def load(self, run_dir: Path, *, epoch: int) -> str | None:
        """Restore the EMA committed with epoch ``epoch``'s checkpoint (a run folder from
        before manifests: its ``ema.safetensors``, when of the same epoch); a warning line
        when there is none."""
        if self.ema is None:
            return None
        path = checkpoint_file(Path(run_dir), epoch, EMA_FILE)
        if path is not None and self.ema.load(path, epoch=epoch):
            return None
        return f"no {EMA_FILE} of epoch {epoch} in {run_dir}; the weight average restarts from the current weights"


def ema_record(prefix: str, result) -> dict:
    """metrics.csv columns of the EMA model's evaluation (NaN when not evaluated)."""
    nan = float("nan")
    return {f"ema_{prefix}_top1_err": result.top1_err if result else nan, f"ema_{prefix}_top5_err": result.top5_err if result else nan}


def sync_ema(extras: "StepExtras | None", world) -> None:
    """After rank 0 restored the EMA on resume: send it to the other ranks (each rank then
    keeps its own identical copy, since DDP keeps the weights equal)."""
    if extras is None or extras.ema is None or world.backend is None:
        return
    import torch.distributed as dist

    for tensor in extras.ema.averaged.state_dict().values():
        dist.broadcast(tensor, src=0)
    steps = [extras.ema.steps]
    dist.broadcast_object_list(steps, src=0)
    extras.ema.steps = steps[0]


def ema_metrics(extras: "StepExtras | None", val, test, world, *, amp: bool) -> dict:
    """The EMA model's val and test errors for metrics.csv (``test`` None: not this epoch);
    nothing when the run keeps no EMA."""
    if extras is None or extras.ema is None:
        return {}
    from cnnlab.training.distributed import evaluate_sharded

    model = extras.ema.module
    return {
        **ema_record("val", evaluate_sharded(model, val, world, amp=amp) if val is not None else None),
        **ema_record("test", evaluate_sharded(model, test, world, amp=amp) if test is not None else None),
    }


def resume_extras(extras: "StepExtras | None", world, run_dir: Path, epoch: int) -> str | None:
    """On resume: rank 0 reads the EMA saved with ``epoch`` and every rank gets it; a
    warning line when there was none to read."""
    if extras is None or extras.ema is None:
        return None
    from cnnlab.training.distributed import from_writer

    warning = from_writer(world, lambda: extras.load(run_dir, epoch=epoch), what="loading the weight average")
    sync_ema(extras, world)
    return warning
