"""Run folders: the one writer and reader of ``runs/<name>/``.

A run folder holds ``config.json`` (the whole TrainConfig), ``data.json`` (what later
commands need to feed the model as in training: classes, image size, mean/std, padding),
``metrics.csv`` (one row per epoch), the checkpoints (``cnnlab.training.checkpoint``: one
committed transaction per epoch) and ``train.log``. ``curves.png`` is drawn from
``metrics.csv`` by the caller (the CLI): training never plots.

Lifecycle (:class:`RunFolder`): the folder is created only when training is about to start
(after the data is loaded and the model checked), and locked while a process trains in it:
an advisory ``fcntl.flock`` on ``.lock``, which holds the owner's pid and host and which the
kernel releases when the owner dies, so a second process on the same folder is refused with
one line naming the holder. A run is complete from its first committed checkpoint on; a
failure before that (an error, Ctrl-C, a NaN loss) removes what the process created. A folder
left by a process killed before its first checkpoint holds no run: a fresh start with the
same ``--out`` takes it over, and ``--resume`` restarts it from epoch 0, each saying so.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import shutil
import socket
import warnings
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from torch import nn

from cnnlab.data import ImageDataset
from cnnlab.data.files import atomic_write_text, safe_name
from cnnlab.errors import CheckpointError, CnnlabError, CnnlabWarning
from cnnlab.models import create_model
from cnnlab.training.checkpoint import (
    CHECKPOINTS,
    FILES,
    TrainingState,
    committed,
    discard_newer,
    has_checkpoint,
    load_checkpoint,
    load_weights,
    remove_unfinished,
    weights_file,
)
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


class RunBusyError(CnnlabError):
    """Another live process holds the run folder's lock."""


LOCK = ".lock"


class RunLock:
    """An advisory ``fcntl.flock`` on ``<run>/.lock``, with the holder's pid and host in the
    file. The kernel releases it when the holder dies (even by SIGKILL); a clean release
    removes the file first, and an acquirer checks it locked the file that is still there."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise RunBusyError(
                    f"run folder {self.path.parent} is in use by {holder}; wait for it to finish, or choose another --out"
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed the file as we opened it: lock the new one
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()} since {stamp}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 200).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "another process (starting up)"


def check_not_busy(run_dir: Path) -> None:
    """Fail now, before the data is loaded, when a live process holds the folder's lock."""
    if (Path(run_dir) / LOCK).exists():
        with RunLock(run_dir):
            pass


def check_writable(run_dir: Path) -> None:
    """The folder, or the nearest folder above it that exists, must be a writable folder."""
    probe = Path(run_dir)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise CnnlabError(f"cannot write to output folder {run_dir}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CnnlabError(f"cannot write to output folder {run_dir}: {probe} is not writable")


def open_run(config: TrainConfig, resume: str | os.PathLike | None) -> tuple[Path, TrainConfig]:
    """The run folder and the config to train with: a new folder (``config.out``, else
    :func:`default_run_dir`) that must not hold a run yet, or, with ``resume``, that run's
    folder and saved config. Nothing is created yet (see :class:`RunFolder`); the checks here
    fail fast, before the data is loaded. The returned config names its folder in ``out``;
    the caller's config is not changed."""
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
    if resume is None and has_checkpoint(run_dir):
        raise CnnlabError(f"{run_dir} already holds a run; pass --resume {run_dir} to continue it, or choose another --out")
    check_writable(run_dir)
    check_not_busy(run_dir)
    return run_dir, config


# What cnnlab writes into a run folder (removed again when a run fails before its first
# checkpoint): its files, the EMA's weights (training.extras), and folders.
RUN_FILES = ("config.json", "data.json", "metrics.csv", "train.log", "curves.png", "ema.safetensors", *FILES)
RUN_FOLDERS = (CHECKPOINTS, "tensorboard")


class RunFolder:
    """The run folder a training process owns: :meth:`claim` it when training is about to
    start, :meth:`release` it at the end (``with RunFolder(...):`` does both).

    Claiming creates the folder (and missing parents), takes its lock, removes what a dead
    process left half-written, and for a new run checks again (under the lock) that it holds
    no run and writes ``config.json`` and ``data.json``. Releasing after a failure while the
    folder holds no committed checkpoint removes what cnnlab wrote there, and the folders the
    claim created; then the lock is released."""

    def __init__(self, path: Path, config: TrainConfig, info: dict, *, resume: bool) -> None:
        self.path, self.config, self.info, self.resume = Path(path), config, info, resume
        self.lock = RunLock(self.path)
        self._created: list[Path] = []

    def claim(self) -> None:
        missing = []
        probe = self.path
        while not probe.exists() and probe != probe.parent:
            missing.append(probe)
            probe = probe.parent
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CnnlabError(f"cannot write to output folder {self.path}: {e.strerror}") from None
        self._created = missing  # deepest first
        try:
            self.lock.acquire()
        except BaseException:
            self._remove_created()
            raise
        try:
            remove_unfinished(self.path)
            if not self.resume:
                self._start_new()
        except BaseException:
            self.release(failed=True)
            raise

    def _start_new(self) -> None:
        if has_checkpoint(self.path):
            raise CnnlabError(
                f"{self.path} already holds a run; pass --resume {self.path} to continue it, or choose another --out"
            )
        if (self.path / "config.json").exists():
            warnings.warn(
                f"{self.path} held a run that never completed an epoch (its process is gone); starting it again",
                CnnlabWarning,
            )
            self._remove_run_files()
        try:
            self.config.save(self.path / "config.json")
            atomic_write_text(self.path / "data.json", json.dumps(self.info, indent=2) + "\n")
        except OSError as e:
            raise CnnlabError(f"cannot write to output folder {self.path}: {e.strerror}") from None

    def release(self, *, failed: bool) -> None:
        try:
            if failed and not has_checkpoint(self.path):
                self._remove_run_files()
        finally:
            self.lock.release()
            if failed:
                self._remove_created()

    def kept(self) -> str:
        """What a failed run leaves, in words (after :meth:`release`)."""
        epochs = saved_epochs(self.path)
        if epochs:
            return f"the checkpoint of epoch {epochs} in {self.path} is kept"
        return f"no epoch had completed, so nothing is kept in {self.path}"

    def __enter__(self) -> "RunFolder":
        self.claim()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release(failed=exc_type is not None)

    def _remove_run_files(self) -> None:
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)
        for name in RUN_FOLDERS:
            shutil.rmtree(self.path / name, ignore_errors=True)
        remove_unfinished(self.path)

    def _remove_created(self) -> None:
        for folder in self._created:  # deepest first; only if empty (a user's file stays)
            try:
                folder.rmdir()
            except OSError:
                break


def saved_epochs(run_dir: Path) -> int:
    """Epochs of the newest committed checkpoint (0: none), from its manifest alone."""
    for folder in committed(run_dir):
        try:
            return int(json.loads((folder / "manifest.json").read_text())["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return 0


def interrupted_message(run_dir: Path) -> str:
    """The line for Ctrl-C: what is saved and how to continue, or that nothing is."""
    epochs = saved_epochs(run_dir)
    if epochs:
        return f"interrupted; {epochs} epoch(s) are saved in {run_dir}; continue with: cnnlab train --resume {run_dir}"
    return f"interrupted before the first epoch was saved; nothing is kept in {run_dir}"


def resume_state(run_dir: Path, model: nn.Module) -> TrainingState:
    """Load the newest good checkpoint into ``model`` and return its state (see
    :func:`~cnnlab.training.checkpoint.load_checkpoint`); a folder without a completed epoch
    restarts from epoch 0, saying so. Damaged checkpoints after the one used are removed and
    ``metrics.csv`` is rewritten from its history (a crash can leave it an epoch off)."""
    state = load_checkpoint(run_dir, model)
    if state is None:
        warnings.warn(f"{run_dir} has no completed epoch to resume from; starting it from epoch 0", CnnlabWarning)
        return TrainingState()
    discard_newer(run_dir, state.epoch)
    write_metrics(run_dir, state.history)
    return state


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


def read_data_info(path: Path) -> dict:
    """A run folder's ``data.json``, checked for the keys later commands read."""
    try:
        info = json.loads((Path(path) / "data.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}/data.json is missing or damaged: {e}") from None
    try:
        ok = len(info["classes"]) >= 1 and len(info["image_size"]) == 3 and len(info["mean"]) == len(info["std"])
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise CheckpointError(f"{path}/data.json is damaged: expected classes, image_size (C, H, W), mean and std")
    return info


def load_run(path: str | os.PathLike, *, weights: str = "best") -> Run:
    """Load a run folder with its model in eval mode (``weights``: "best" or "last"; a run
    without ``best`` weights falls back to ``last``)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path} is not a run folder: no config.json (train one with `cnnlab train`)")
    if weights not in WEIGHTS:
        raise CnnlabError(f"unknown weights {weights!r}; expected one of {', '.join(WEIGHTS)}")
    config = TrainConfig.load(path / "config.json")
    info = read_data_info(path)
    try:
        history = read_history(path / "metrics.csv") if (path / "metrics.csv").is_file() else []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise CheckpointError(f"{path}/metrics.csv is unreadable: {e}") from None
    file = weights_file(path, weights)
    model = create_model(
        config.model, num_classes=len(info["classes"]), in_chans=info["image_size"][0], **config.model_options
    )
    load_weights(model, file)
    model.eval()
    return Run(path, config, history, info, model)
