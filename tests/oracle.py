"""torchvision's own model code as a test oracle, without torchvision's compiled ops.

torchvision's wheel cannot be imported against this torch (its ``__init__`` loads compiled
operators built for another torch), but its model definitions are plain Python. So the wheel is
fetched once with ``pip download torchvision==ORACLE_VERSION --no-deps`` into a cache outside
the repository (``$CNNLAB_ORACLE_CACHE``, default ``~/.cache/cnnlab/oracle``), unpacked there,
and a bare package object named ``torchvision`` whose ``__path__`` is the unpacked folder is
put in ``sys.modules`` while ``torchvision.models`` is imported, so the package's own
``__init__`` never runs. The ``torchvision`` entries are taken out of ``sys.modules`` again
afterwards: other code in the same process (torch's ONNX exporter, say) then sees no
torchvision, as before.

The only skip is when no package registry is reachable at all; any other failure of the
download (a wrong version, a broken wheel) fails the test that asked for the oracle.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import re
import subprocess
import sys
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

ORACLE_VERSION = "0.28.0"

# pip's messages when it could not reach any index or link at all (as opposed to reaching one
# that lacks the file): then, and only then, the oracle tests skip.
_OFFLINE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution"
    r"|Network is unreachable|Name or service not known|ConnectTimeout|Connection refused"
)


def cache_dir() -> Path:
    return Path(os.environ.get("CNNLAB_ORACLE_CACHE", Path.home() / ".cache" / "cnnlab" / "oracle"))


def _wheel(cache: Path) -> Path:
    found = sorted(cache.glob(f"torchvision-{ORACLE_VERSION}-*.whl"))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", f"torchvision=={ORACLE_VERSION}", "--no-deps",
           "--disable-pip-version-check", "-q", "-d", str(cache)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    found = sorted(cache.glob(f"torchvision-{ORACLE_VERSION}-*.whl"))
    if done.returncode != 0 or not found:
        text = done.stderr + done.stdout
        if _OFFLINE.search(text):
            last = next((ln for ln in reversed(text.splitlines()) if ln.strip()), "")
            pytest.skip(f"torchvision oracle: no package registry reachable ({last.strip()})")
        pytest.fail(f"torchvision oracle: `{' '.join(cmd)}` failed:\n{text}")
    return found[0]


@functools.cache
def _unpacked() -> Path:
    cache = cache_dir()
    target = cache / f"torchvision-{ORACLE_VERSION}"
    if (target / "torchvision" / "models" / "__init__.py").is_file():
        return target / "torchvision"
    cache.mkdir(parents=True, exist_ok=True)
    # Test workers in parallel (pytest-xdist) take turns: one downloads and unpacks, the others
    # wait on the lock and find it done.
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "torchvision" / "models" / "__init__.py").is_file():
            wheel = _wheel(cache)
            partial = cache / f".unpacking-{os.getpid()}"
            with zipfile.ZipFile(wheel) as zf:
                # Python sources only: the compiled libraries are what we must not load.
                zf.extractall(partial, [n for n in zf.namelist() if n.startswith("torchvision/") and n.endswith(".py")])
            partial.rename(target)
    return target / "torchvision"


@functools.cache
def _modules() -> dict[str, types.ModuleType]:
    """torchvision.* modules, imported once through the bare package and then hidden again."""
    root = _unpacked()
    if "torchvision" in sys.modules:
        raise RuntimeError("a real torchvision is already imported; the oracle needs its own")
    bare = types.ModuleType("torchvision")
    bare.__path__ = [str(root)]
    sys.modules["torchvision"] = bare
    try:
        import torchvision.models  # noqa: F401  (fills sys.modules with torchvision.*)

        return {k: v for k, v in sys.modules.items() if k == "torchvision" or k.startswith("torchvision.")}
    finally:
        for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[k]


@contextlib.contextmanager
def _visible() -> Iterator[types.ModuleType]:
    # Builders may import lazily; show them the modules only while they run.
    mods = _modules()
    sys.modules.update(mods)
    try:
        yield mods["torchvision.models"]
    finally:
        for k in mods:
            sys.modules.pop(k, None)


def source(module: str) -> str:
    """The text of an unpacked torchvision source file, e.g. ``"models/resnet.py"``."""
    return (_unpacked() / module).read_text()


def build(name: str, *, seed: int = 0, **options) -> nn.Module:
    """torchvision's ``name`` with its own initialisation under ``seed``, in eval mode."""
    with _visible() as models:
        torch.manual_seed(seed)
        return models.get_model(name, **options).eval()


def weights_meta(name: str) -> list[dict]:
    """Facts from torchvision's Weights enum of model ``name``: one dict per weight file."""
    with _visible() as models:
        enum = models.get_model_weights(name)
        out = []
        for w in enum:
            t = w.transforms()
            out.append(
                {
                    "enum": f"{enum.__name__}.{w.name}",
                    "url": w.url,
                    "meta": dict(w.meta),
                    "resize": getattr(t, "resize_size", None),
                    "crop": getattr(t, "crop_size", None),
                    "mean": getattr(t, "mean", None),
                    "std": getattr(t, "std", None),
                    "interpolation": str(getattr(t, "interpolation", "")),
                    "default": w is enum.DEFAULT,
                }
            )
        return out


def randomise(model: nn.Module, *, seed: int = 0, size: tuple[int, int, int], batch: int = 4) -> nn.Module:
    """Make every parameter and statistic matter, then return ``model`` in eval mode.

    A fresh torchvision model hides mistakes: zero-initialised heads (ViT) give all-zero logits,
    BN with running mean 0 and variance 1 is nearly the identity, and unit LayerNorm scales
    cannot tell a swapped scale and shift apart. So (1) every parameter initialised to a constant
    (biases, norm scales, zero-init residual gammas, layer scales) gets seeded noise added, and
    (2) batch-norm running statistics are set from one training-mode pass over a seeded batch
    (cumulative averaging), as trained weights would have them, so eval-mode activations keep a
    unit scale through the depth.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() > 0 and bool((p == p.flatten()[0]).all()):
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
        bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if bns:
            momenta = [m.momentum for m in bns]
            for m in bns:
                m.reset_running_stats()
                m.momentum = None  # cumulative average: one batch sets the statistics
            model.train()
            model(torch.randn(batch, *size, generator=gen))
            for m, momentum in zip(bns, momenta):
                m.momentum = momentum
    return model.eval()
