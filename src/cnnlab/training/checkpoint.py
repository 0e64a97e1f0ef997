"""Checkpoints written so that a crash never loses a user's data.

Weights go to safetensors (``last.safetensors``, ``best.safetensors``); optimizer, schedule,
RNG and history go to ``state.pt``, which holds only tensors and plain containers so that
``torch.load(weights_only=True)`` reads it. Every file is written atomically
(``cnnlab.data.files``): a reader sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save as safetensors_bytes
from torch import nn

from cnnlab.data.files import atomic_write_bytes
from cnnlab.errors import CheckpointError
from cnnlab.models import model_label


def save_weights(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata=metadata))


def load_weights(model: nn.Module, path: Path) -> None:
    """Load safetensors weights into ``model``; a file from another model fails clearly."""
    try:
        tensors = load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint: {e}") from None
    own = model.state_dict()
    name = model_label(model)
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise CheckpointError(
            f"{path} does not fit model {name}: {what} ({len(missing)} missing, {len(unexpected)} unexpected keys)"
        )
    for key, value in tensors.items():
        if value.shape != own[key].shape:
            raise CheckpointError(
                f"{path} does not fit model {name}: {key} has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}"
            )
    model.load_state_dict(tensors, strict=True)


def save_state(state: dict[str, Any], path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_state(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no training state at {path}") from None
    except Exception as e:  # unpickling errors come in many types
        raise CheckpointError(f"{path} is not a readable training state: {e}") from None


@dataclass
class TrainingState:
    """Everything besides the weights that a resumed run needs to continue exactly."""

    epoch: int = 0  # completed epochs
    history: list[dict] = field(default_factory=list)  # one metrics row per completed epoch
    best_val: float = float("-inf")  # best validation (else training) accuracy so far
    optimizer: dict = field(default_factory=dict)  # optimizer.state_dict()
    plateau: dict = field(default_factory=dict)  # Plateau.state_dict()
    rng: dict = field(default_factory=dict)  # cnnlab.training.device.rng_state()


def save_checkpoint(run_dir: Path, model: nn.Module, state: TrainingState, *, model_name: str, is_best: bool) -> None:
    """``last`` weights (and ``best`` when ``is_best``), then ``state.pt``."""
    meta = {"model": model_name, "epoch": str(state.epoch)}
    save_weights(model, run_dir / "last.safetensors", meta)
    if is_best:
        save_weights(model, run_dir / "best.safetensors", meta)
    save_state(
        {
            "epoch": state.epoch,
            "optimizer": state.optimizer,
            "plateau": state.plateau,
            "rng": state.rng,
            "history": state.history,
            "best_val": state.best_val,
        },
        run_dir / "state.pt",
    )


def load_checkpoint(run_dir: Path, model: nn.Module) -> TrainingState:
    """Load ``last`` weights into ``model`` and return the state saved with them."""
    if not (run_dir / "last.safetensors").is_file():
        raise CheckpointError(f"{run_dir} has no completed epoch to resume from (no last.safetensors)")
    load_weights(model, run_dir / "last.safetensors")
    saved = load_state(run_dir / "state.pt")
    return TrainingState(
        epoch=int(saved["epoch"]),
        history=list(saved["history"]),
        best_val=float(saved["best_val"]),
        optimizer=saved["optimizer"],
        plateau=saved["plateau"],
        rng=saved["rng"],
    )
