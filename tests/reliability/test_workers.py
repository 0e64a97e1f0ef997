"""Decoder worker processes die with their parent (kill -9 of `cnnlab` leaves none behind)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

WAIT = 60  # seconds to wait for a process to appear or go (never reached when it works)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        time.sleep(0.1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_decoder_workers_die_when_their_parent_is_killed():
    # The folder loader's own pool (the code path of every image-folder decode), with a task
    # that would hang for ten minutes.
    script = textwrap.dedent("""
        import time
        from cnnlab.data.folders import _map_chunks
        _map_chunks(time.sleep, [600, 600], [1, 1], 2, "decoding", True)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        _wait(lambda: len(_children(parent.pid)) >= 2, "the two decoder workers to start")
        workers = _children(parent.pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=WAIT)
        _wait(lambda: not any(_alive(w) for w in workers), f"workers {workers} to exit after their parent was killed")
    finally:
        if parent.poll() is None:
            parent.kill()
        for w in _children(parent.pid):
            os.kill(w, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_watchdog_covers_a_worker_whose_parent_is_another_process():
    # die_with_parent(pid) where pid is not this process's parent (a forkserver's child):
    # the watchdog thread ends the worker within about a second of that process's death.
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    script = f"from cnnlab.data.folders import die_with_parent; import time; die_with_parent({owner.pid}); time.sleep(600)"
    worker = subprocess.Popen([sys.executable, "-c", script])
    try:
        time.sleep(0.5)
        assert worker.poll() is None  # alive while its owner lives
        owner.kill()
        owner.wait(timeout=WAIT)
        assert worker.wait(timeout=WAIT) == 1
    finally:
        for p in (owner, worker):
            if p.poll() is None:
                p.kill()
