"""Run folders: the one writer and reader of ``runs/<name>/``.

A run folder holds ``config.json`` (the whole TrainConfig), ``data.json`` (what later
commands need to feed the model as in training: classes, image size, mean/std, padding),
``metrics.csv`` (one row per epoch), the checkpoints (``cnnlab.training.checkpoint``) and
``train.log``. ``curves.png`` is drawn from ``metrics.csv`` by the caller (the CLI): training
never plots.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from torch import nn

from cnnlab.data import ImageDataset
from cnnlab.data.files import atomic_write_text, safe_name
from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.models import create_model
from cnnlab.training.checkpoint import load_weights
from cnnlab.training.config import TrainConfig

WEIGHTS = ("best", "last")  # which weights of a run to load (--weights)


@dataclass
class Run:
    """A run folder and what is in it."""

    path: Path
    config: TrainConfig
    history: list[dict] = field(default_factory=list)
    data_info: dict = field(default_factory=dict)
    model: nn.Module | None = None

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}

    @property
    def test_accuracy(self) -> float:
        return 1.0 - self.final.get("test_top1_err", float("nan"))


def default_run_dir(config: TrainConfig) -> Path:
    """``runs/<model>-<data>-<time>``; a ``folder:/path`` dataset is named by its last folder."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    data = safe_name(Path(config.data).name if ":" in config.data else config.data)
    return Path("runs") / f"{config.model}-{data}-{stamp}"


def open_run(config: TrainConfig, resume: str | os.PathLike | None) -> tuple[Path, TrainConfig]:
    """The run folder and the config to train with: a new folder (``config.out``, else
    :func:`default_run_dir`) that must not hold a run yet, or, with ``resume``, that run's
    folder and saved config. The returned config names its folder in ``out``; the caller's
    config is not changed."""
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.json").is_file():
            raise CheckpointError(f"{run_dir} is not a run folder (no config.json); nothing to resume")
        config = TrainConfig.load(run_dir / "config.json")
    else:
        run_dir = Path(config.out) if config.out else default_run_dir(config)
        config = replace(config, out=str(run_dir))
    if run_dir.exists() and not run_dir.is_dir():
        raise CnnlabError(f"output path {run_dir} exists and is not a folder")
    if resume is None and (run_dir / "config.json").exists():
        raise CnnlabError(f"{run_dir} already holds a run; pass --resume {run_dir} to continue it, or choose another --out")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise CnnlabError(f"cannot write to output folder {run_dir}: {e.strerror}") from None
    return run_dir, config


def data_info(dataset: ImageDataset, pad: int) -> dict:
    """What later commands (eval, predict, viz) need to feed the model like in training."""
    return {
        "name": dataset.name,
        "classes": list(dataset.classes),
        "image_size": list(dataset.image_size),
        "mean": list(dataset.mean),
        "std": list(dataset.std),
        "pad": pad,
    }


def start_run(run_dir: Path, config: TrainConfig, info: dict) -> None:
    """Write a new run's ``config.json`` and ``data.json``."""
    config.save(run_dir / "config.json")
    atomic_write_text(run_dir / "data.json", json.dumps(info, indent=2) + "\n")


def write_metrics(run_dir: Path, history: list[dict]) -> None:
    """``metrics.csv``: one row per epoch, floats to 6 significant digits."""
    if not history:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0].keys()), lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(run_dir / "metrics.csv", buffer.getvalue())


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
    """Load a run folder with its model in eval mode (``weights``: "best" or "last"; a run
    without ``best`` weights falls back to ``last``)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path} is not a run folder: no config.json (train one with `cnnlab train`)")
    if weights not in WEIGHTS:
        raise CnnlabError(f"unknown weights {weights!r}; expected one of {', '.join(WEIGHTS)}")
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
