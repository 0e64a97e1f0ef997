"""What the reliability suite shares: a tiny deterministic training setup, a way to run
``cnnlab ...`` as a separate process (and kill it at a chosen moment), and file hashes.

``run_cnnlab(args)`` forks this process and calls the console script's entry point,
``cnnlab.cli.main(args)``, in the child, with the child's own stdout and stderr (file
descriptors 1 and 2 go to files) and its own exit status. It is the real command line in a
real process (an exit code, a SIGKILL, a lock held by a pid are all real); forking saves the
seconds each fresh interpreter spends importing torch, so the suite can afford hundreds of
processes. tests/reliability/test_bad_inputs.py shows that the installed ``cnnlab``
executable answers the same.

The tiny setup: LeNet-5 on 512 MNIST training images (64 of them held out for validation)
and 256 test images, 3 epochs of 7 steps (test error after the last only), Adam, one thread: a run takes about a second and is
bitwise reproducible on the CPU.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pytest
import torch

from cnnlab.data import DatasetSpec, get_dataset_spec, load_dataset, register_dataset
from cnnlab.training.config import TrainConfig

TINY = "reliability-mnist"  # the registered tiny dataset


def _register_tiny(root: Path) -> None:
    try:
        get_dataset_spec(TINY)
        return
    except KeyError:
        pass
    mnist_train = load_dataset("mnist", "trainval", root)
    mnist_test = load_dataset("mnist", "test", root)

    def load(_root: Path, split: str, _download: bool):
        source = mnist_train if split == "train" else mnist_test
        n = 512 if split == "train" else 256
        return source.images[:n].clone(), source.labels[:n].clone(), f"first {n} of MNIST {split}"

    register_dataset(DatasetSpec(TINY, mnist_train.classes, load, val_size=64,
                                 description="512 MNIST training and 256 test images (tests/reliability)"))
    # Read the canonical splits once here, so that forked children find them in memory.
    load_dataset(TINY, "train", root)
    load_dataset(TINY, "test", root)


@pytest.fixture(scope="session")
def tiny(data_root, tmp_path_factory) -> str:
    """The name of the tiny dataset (registered in this process and its forked children).
    One run is trained here first, so that forked children find everything imported and
    initialised (they start in milliseconds instead of seconds)."""
    _register_tiny(data_root)
    from cnnlab.training.loop import fit
    from cnnlab.viz.curves import write_run_curves  # noqa: F401  (what `cnnlab train` imports)

    fit(tiny_config(tmp_path_factory.mktemp("warm-up") / "run", epochs=1), quiet=True)
    return TINY


def tiny_config(out: Path, **changes) -> TrainConfig:
    values = dict(model="lenet5", data=TINY, epochs=3, batch_size=64, eval_batch_size=256, optimizer="adam",
                  lr=0.003, seed=0, device="cpu", threads=1, out=str(out), eval_test_every_epoch=False,
                  model_options={"activation": "relu", "pool": "max"})
    values.update(changes)
    return TrainConfig(**values)


def tiny_args(out: Path) -> list[str]:
    """``cnnlab train`` arguments for the tiny setup (what :func:`tiny_config` sets)."""
    return ["train", "lenet5", "--data", TINY, "--epochs", "3", "--batch-size", "64", "--eval-batch-size", "256",
            "--optimizer", "adam", "--lr", "0.003", "--seed", "0", "--device", "cpu", "--threads", "1",
            "-o", "activation=relu", "-o", "pool=max", "--no-eval-test-every-epoch", "--out", str(out), "-q"]


# --- separate processes ---------------------------------------------------------------------


@dataclass
class Result:
    code: int  # exit status; -N when the process was killed by signal N
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


class Child:
    """A forked child running ``target()`` with its own stdout/stderr files; ``wait()``
    returns its Result (killing it after ``timeout`` seconds: no test can hang)."""

    def __init__(self, target: Callable[[], int], *, cwd: Path | None = None, env: dict | None = None) -> None:
        self._out, self._err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:  # the child
            code = 1
            try:
                os.dup2(self._out.fileno(), 1)
                os.dup2(self._err.fileno(), 2)
                sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
                sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
                torch.set_num_threads(1)
                # A fresh `cnnlab` process starts with Python's own Ctrl-C handling: whatever
                # the pytest worker's earlier tests left behind (a handler, a blocked SIGINT) is
                # not inherited.
                signal.signal(signal.SIGINT, signal.default_int_handler)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
                if cwd is not None:
                    os.chdir(cwd)
                os.environ.update(env or {})
                code = target()
            except BaseException:
                traceback.print_exc()
                code = 99
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)

    def wait(self, timeout: float = 300) -> Result:
        deadline = time.monotonic() + timeout
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                _, status = os.waitpid(self.pid, 0)
                break
            time.sleep(0.02)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        self._out.seek(0)
        self._err.seek(0)
        return Result(code, self._out.read().decode(errors="replace"), self._err.read().decode(errors="replace"))


def cli_target(args: Sequence[str], before: Callable[[], None] | None = None) -> Callable[[], int]:
    def target() -> int:
        from cnnlab.cli import main

        if before is not None:
            before()
        try:
            main(list(args))
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        return 0

    return target


def run_cnnlab(args: Sequence[str], *, before: Callable[[], None] | None = None, cwd: Path | None = None,
               env: dict | None = None, timeout: float = 300) -> Result:
    """``cnnlab ARGS`` in a separate process (see the module docstring); ``before`` runs in
    the child first (a fault hook, say)."""
    return Child(cli_target(args, before), cwd=cwd, env=env).wait(timeout)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


# --- files ------------------------------------------------------------------------------------


def file_hashes(*roots: Path) -> dict[str, str]:
    """SHA-256 of every file under ``roots`` (links followed), by path."""
    out = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file():
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out
