"""Run folders and live servers for the serve tests.

Runs are trained through the public training API: LeNet-5 for one epoch on 1,000 MNIST
images, and ResNet-20 for one epoch on a tiny image-folder dataset made here (three colour
classes of 32x32 images). Workers of one pytest-xdist session share them: the first to
arrive trains under a file lock, the others wait and reuse.

Servers are real uvicorn servers on 127.0.0.1 and a free port: ``live_app`` in a thread of
the test process (for limits set by the test), ``cli_server`` as a separate ``cnnlab serve``
process (for memory and crash checks).
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnlab
from cnnlab.serve import Limits, create_app
from cnnlab.serve.app import bind, make_server
from cnnlab.training.config import TrainConfig


@contextmanager
def _shared(tmp_path_factory, name: str):
    """A folder shared by the xdist workers of this session, created once under a lock."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder = root / f"serve-{name}"
    with open(root / f"serve-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield folder
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def lenet_run(tmp_path_factory, data_root) -> Path:
    """LeNet-5 after one epoch on 1,000 MNIST images (reads most test digits right)."""
    with _shared(tmp_path_factory, "lenet") as folder:
        out = folder / "lenet5-mnist"
        if not (out / "last.safetensors").is_file():
            cnnlab.train(
                TrainConfig(model="lenet5", data="mnist", epochs=1, batch_size=50, train_subset=1000, val_size=500,
                            optimizer="adam", lr=0.003, out=str(out), data_root=str(data_root), device="cpu"),
                quiet=True,
            )
        return out


def make_colour_folder(root: Path, *, per_class: tuple[int, int] = (12, 4), size: int = 32, seed: int = 0) -> Path:
    """root/{train,test}/{blue,green,red}/*.png: noise with one channel raised."""
    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "test"), per_class):
        for c, name in enumerate(("red", "green", "blue")):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = rng.integers(0, 80, (size, size, 3)).astype(np.uint8)
                a[..., c] += 150
                Image.fromarray(a).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def rgb_run(tmp_path_factory) -> Path:
    """ResNet-20 after one epoch on a 36-image colour-folder dataset (3 classes, 32x32 RGB)."""
    with _shared(tmp_path_factory, "rgb") as folder:
        out = folder / "resnet20-colours"
        if not (out / "last.safetensors").is_file():
            data = make_colour_folder(folder / "colours")
            cnnlab.train(
                TrainConfig(model="resnet20", data=f"folder:{data}", epochs=1, batch_size=8, val_size=6,
                            out=str(out), device="cpu"),
                quiet=True,
            )
        return out


class LiveServer:
    """A uvicorn server for ``app`` in a thread, on 127.0.0.1 and a free port."""

    def __init__(self, app) -> None:
        sock = bind("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        self.app = app
        self.server = make_server(app)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            self.thread.join(0.05)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)


@pytest.fixture
def live_app():
    """Start servers with chosen run folders and limits: ``live_app([path], limits=Limits(...))``."""
    servers: list[LiveServer] = []

    def start(paths, *, limits: Limits = Limits(), allowed_hosts=None) -> LiveServer:
        server = LiveServer(create_app([Path(p) for p in paths], limits=limits, allowed_hosts=allowed_hosts))
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.close()


class CliServer:
    """``cnnlab serve ARGS --port 0`` as a child process; ``port`` and ``pid`` once it listens."""

    def __init__(self, args: list[str], *, env: dict | None = None) -> None:
        cmd = [sys.executable, "-c", "from cnnlab.cli import main; main()", "serve", *args, "--port", "0"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        self.port = None
        for line in self.proc.stdout:
            self.lines.append(line)
            m = re.search(r"serving \d+ run\(s\) at http://127\.0\.0\.1:(\d+)/", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            err = self.proc.stderr.read()
            raise RuntimeError(f"cnnlab serve did not start: {''.join(self.lines)}{err}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def close(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def cli_server(lenet_run, rgb_run):
    """``cnnlab serve`` on the LeNet-5 and ResNet-20 runs, one process per test module."""
    server = CliServer([str(lenet_run), str(rgb_run)], env={"OMP_NUM_THREADS": "1"})
    yield server
    server.close()
