"""Device, precision and RNG policy."""

from __future__ import annotations

import contextlib

import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.training.device import DEVICES, autocast, resolve_device, rng_state, seed_everything, set_rng_state


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(CnnlabError, match="unknown device 'tpu'; expected one of auto, cpu, cuda, mps"):
        resolve_device("tpu")
    assert DEVICES == ("auto", "cpu", "cuda", "mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_missing_cuda_device_is_a_clear_error():
    with pytest.raises(CnnlabError, match="no CUDA device is available"):
        resolve_device("cuda")


def test_autocast_is_bf16_only_when_asked():
    cpu = torch.device("cpu")
    assert isinstance(autocast(cpu, False), contextlib.nullcontext)
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast(cpu, True):
        assert (a @ b).dtype == torch.bfloat16
    with autocast(cpu, False):
        assert (a @ b).dtype == torch.float32


def test_rng_state_roundtrip_repeats_the_draws():
    generator = seed_everything(3)
    state = rng_state(generator)
    first = (torch.rand(3), torch.rand(3, generator=generator))
    set_rng_state(state, generator)
    again = (torch.rand(3), torch.rand(3, generator=generator))
    assert all(torch.equal(x, y) for x, y in zip(first, again))
