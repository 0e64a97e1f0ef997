"""Where datasets live: ``--data-root``, else ``$CNNLAB_DATA``, else ``~/.cache/cnnlab``."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "CNNLAB_DATA"
DEFAULT_ROOT = Path("~/.cache/cnnlab")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: the argument, else ``$CNNLAB_DATA`` (if set and non-empty), else the cache."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    return DEFAULT_ROOT.expanduser()
