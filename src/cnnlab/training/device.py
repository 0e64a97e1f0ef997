"""Device and precision policy: which device a run uses, when autocast is on, the RNG state.

``DEVICES`` is the one list of device names; the CLI's ``--device`` choices come from it.
"""

from __future__ import annotations

import contextlib

import torch

from cnnlab.errors import CnnlabError

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA, else Apple's MPS, else the CPU; a named device that is absent fails clearly."""
    if name not in DEVICES:
        raise CnnlabError(f"unknown device {name!r}; expected one of {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CnnlabError("--device cuda was asked for, but no CUDA device is available; use --device auto or cpu")
    if name == "mps" and not _mps_available():
        raise CnnlabError("--device mps was asked for, but no MPS device is available; use --device auto or cpu")
    return torch.device(name)


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled`` (the ``amp`` setting); a no-op otherwise.

    bf16 rather than fp16: same exponent range as fp32, so no loss scaling is needed."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def seed_everything(seed: int, *, deterministic: bool = False, threads: int | None = None) -> torch.Generator:
    """Seed torch's global RNG (initialisation, dropout) and return the data generator
    (shuffling, augmentation), both from ``seed``; optionally deterministic kernels and a
    thread count."""
    if threads is not None:
        torch.set_num_threads(threads)
    if deterministic:
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def rng_state(generator: torch.Generator) -> dict:
    """Every RNG a training step draws from: torch's global one, the data generator, CUDA's."""
    state = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    """Restore what :func:`rng_state` saved (a resumed run then draws the same numbers)."""
    torch.set_rng_state(state["torch"])
    generator.set_state(state["data"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
