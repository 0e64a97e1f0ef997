"""Checkpoints written so that a crash never loses a user's data.

Weights go to safetensors (``last.safetensors``, ``best.safetensors``); optimizer, schedule,
RNG and history go to ``state.pt``, which holds only tensors and plain containers so that
``torch.load(weights_only=True)`` reads it. Every file is written to a temporary name in the
same folder, flushed to disk (fsync), then renamed over the old one: a reader sees either the
old file or the new one, never half of one.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save as safetensors_bytes
from torch import nn

from cnnlab.errors import CheckpointError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    # Make the rename itself durable.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


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
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise CheckpointError(
            f"{path} does not fit model {getattr(model, 'model_name', type(model).__name__)}: {what} "
            f"({len(missing)} missing, {len(unexpected)} unexpected keys)"
        )
    for key, value in tensors.items():
        if value.shape != own[key].shape:
            raise CheckpointError(
                f"{path} does not fit model {getattr(model, 'model_name', type(model).__name__)}: "
                f"{key} has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}"
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
