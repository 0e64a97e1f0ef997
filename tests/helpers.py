"""Helpers shared by the model and layer tests: meta-device models, parameter and MAC counts.

MACs are counted by cnnlab's own counter, :func:`cnnlab.analysis.profile` (what ``cnnlab
summary`` runs), so a family test that checks a paper's compute figure checks the analysis code
users run as well; tests/analysis proves profile's MACs equal torch's FlopCounterMode FLOPs / 2
for every registered model.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.analysis import profile
from cnnlab.models import create_model


def meta_model(name: str, **options) -> nn.Module:
    """Registered model ``name`` built on the meta device (no memory, no initialisation cost), in eval mode.

    Without ``options`` the model is built once per test process and shared by every test that
    asks for it (building the big ones takes seconds): read it and run it, but do not change it.
    A test that registers hooks, loads weights or switches modes takes :func:`new_meta_model`.
    """
    if options:
        return new_meta_model(name, **options)
    return _shared_meta_model(name)


def new_meta_model(name: str, **options) -> nn.Module:
    """Like :func:`meta_model`, but always a model of its own that the test may change."""
    with torch.device("meta"):
        return create_model(name, **options).eval()


@functools.cache
def _shared_meta_model(name: str) -> nn.Module:
    return new_meta_model(name)


def n_params(module: nn.Module) -> int:
    """Number of parameter values, trainable or not (buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


def macs(model_or_name: nn.Module | str, size: int | Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass of one image of ``size``, as cnnlab counts them.

    ``model_or_name``: a module (run where its parameters are) or a registered name (the shared
    :func:`meta_model`). ``size``: (C, H, W), or H = W for a 3-channel image. The model's modes
    are restored afterwards.
    """
    model = meta_model(model_or_name) if isinstance(model_or_name, str) else model_or_name
    return profile(model, size)[1]


def gmacs(model_or_name: nn.Module | str, size: int | Sequence[int]) -> float:
    """:func:`macs` in billions: the unit of the papers' "FLOPs" (multiply-adds) columns."""
    return macs(model_or_name, size) / 1e9
