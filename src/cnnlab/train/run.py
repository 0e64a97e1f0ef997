"""Reading a run folder back: config, history, data description and the trained model."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from cnnlab.errors import CheckpointError
from cnnlab.models import create_model
from cnnlab.train.checkpoint import load_weights
from cnnlab.train.config import TrainConfig
from cnnlab.train.loop import Run


def read_history(path: Path) -> list[dict]:
    """``metrics.csv`` as a list of rows with numbers parsed."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            parsed = {}
            for k, v in row.items():
                try:
                    parsed[k] = int(v)
                except ValueError:
                    try:
                        parsed[k] = float(v)
                    except ValueError:
                        parsed[k] = v
            rows.append(parsed)
    return rows


def load_run(path: str | os.PathLike, *, weights: str = "best") -> Run:
    """Load a run folder with its model in eval mode (``weights``: "best" or "last")."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path} is not a run folder: no config.json (train one with `cnnlab train`)")
    if weights not in ("best", "last"):
        raise ValueError(f"weights must be 'best' or 'last', got {weights!r}")
    config = TrainConfig.load(path / "config.json")
    try:
        info = json.loads((path / "data.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}/data.json is missing or corrupt: {e}") from None
    history = read_history(path / "metrics.csv") if (path / "metrics.csv").is_file() else []
    model = create_model(
        config.model, num_classes=len(info["classes"]), in_chans=info["image_size"][0], **config.model_options
    )
    file = path / f"{weights}.safetensors"
    if not file.is_file() and weights == "best":
        file = path / "last.safetensors"
    load_weights(model, file)
    model.eval()
    return Run(path, config, history, info, model)
