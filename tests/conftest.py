"""Shared fixtures. Tests that need the real datasets skip when no data root has them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# The suite runs in two worker processes (pytest-xdist, `make test`), one per core: each
# worker gets one thread, since two processes of two threads each thrash two cores (small
# and grouped convolutions slow down by orders of magnitude). A plain `pytest` run uses both.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, os.cpu_count() or 1))


def _shared_data_root() -> Path | None:
    env = os.environ.get("CNNLAB_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "datasets")
    for path in candidates:
        if (path / "mnist").is_dir():
            return path
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The data root holding the real datasets (../shared/datasets on CI)."""
    root = _shared_data_root()
    if root is None:
        pytest.skip("no data root with MNIST: set CNNLAB_DATA")
    return root
