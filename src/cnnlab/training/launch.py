"""``cnnlab train --nproc N``: start N training processes on this node through torchrun's own
machinery (``torch.distributed.launcher.elastic_launch``, what the ``torchrun`` command calls),
each running ``python -m cnnlab <the same arguments>``; torch.distributed and DDP do the rest
(``cnnlab.training.distributed``). Several nodes: run ``torchrun`` itself on each
(docs/distributed.md); this is the one-node shortcut, with no launcher of our own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import uuid
from typing import Iterator, Sequence

import torch

from cnnlab.errors import CnnlabError
from cnnlab.training.distributed import check_process_count, device_capacity

# Seconds between the launcher's looks at its workers: short, so that when one rank dies the
# others are stopped at once (they also stop by themselves: see distributed.RankLostError).
MONITOR_INTERVAL_S = 0.5


class LaunchError(CnnlabError):
    """A worker process failed; the launcher stopped the others."""


@contextlib.contextmanager
def _quiet_torchelastic() -> Iterator[None]:
    # torchelastic logs every step of its agent and a page-long report when a worker fails;
    # the workers' own messages and our one line say what happened.
    logger = logging.getLogger("torch.distributed.elastic")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _worker_threads(nproc: int) -> Iterator[None]:
    """OMP_NUM_THREADS for the workers: the cores shared out (as torchrun sets it to 1), unless
    the user set it; each worker's torch reads it at start."""
    if "OMP_NUM_THREADS" in os.environ:
        yield
        return
    os.environ["OMP_NUM_THREADS"] = str(max(1, device_capacity(torch.device("cpu")) // nproc))
    try:
        yield
    finally:
        os.environ.pop("OMP_NUM_THREADS", None)


def launch(args: Sequence[str], *, nproc: int, device: torch.device) -> None:
    """Run ``python <args>`` in ``nproc`` processes on this node under torchrun's elastic agent
    (c10d rendezvous on a free local port, no restarts), each with torchrun's environment
    (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, ...). Returns when all succeed; raises
    :class:`LaunchError` with one line when one fails (the agent has stopped the others)."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise CnnlabError(f"--nproc must be >= 1, got {nproc}")
    check_process_count(nproc, device)
    with tempfile.TemporaryDirectory(prefix="cnnlab-torchelastic-") as logs:
        config = LaunchConfig(
            min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=uuid.uuid4().hex, rdzv_backend="c10d",
            rdzv_endpoint="127.0.0.1:0", max_restarts=0, monitor_interval=MONITOR_INTERVAL_S, start_method="spawn",
            logs_specs=DefaultLogsSpecs(log_dir=logs),
        )
        try:
            with _quiet_torchelastic(), _worker_threads(nproc):
                elastic_launch(config, entrypoint=sys.executable)(*args)
        except ChildFailedError as e:
            rank, failure = root_cause(e.failures)
            how = f"was killed by {failure.signal_name()}" if failure.exitcode < 0 else f"exited with code {failure.exitcode}"
            error = LaunchError(f"rank {rank} of {nproc} {how} (its message, if any, is above); the other ranks were stopped")
            # Exit status 1 is cnnlab's after printing its one-line error: that line says it all.
            error.reported_by_rank0 = failure.exitcode == 1
            raise error from None


def root_cause(failures: dict) -> tuple[int, object]:
    """The failed rank to name, from torchrun's ``{rank: ProcessFailure}``: the earliest
    that did not end with cnnlab's own error status (1), which is also what the ranks that
    lose a peer end with; the earliest of all when every rank did. The earliest alone is not
    enough: a rank that notices a dead peer can end before the agent has seen the dead one
    end (workers exit without the interpreter's shutdown, see distributed.exit_worker)."""
    order = sorted(failures.items(), key=lambda item: (item[1].timestamp, item[0]))
    return next(((r, f) for r, f in order if f.exitcode != 1), order[0])


def worker_args(argv: Sequence[str]) -> list[str]:
    """The command line a worker runs: ``-m cnnlab`` and the launcher's own arguments (a
    worker ignores --nproc: it knows it is one from torchrun's environment)."""
    return ["-m", "cnnlab", *argv]
