"""A torchrun worker for the distributed tests: the ``cnnlab`` command line itself, with one
fault injected at the start of an epoch when ``CNNLAB_TEST_FAULT`` says so:
``"<action>:<rank>:<epoch>"``, action ``kill`` (SIGKILL, as a crash or an OOM killer would),
``exit`` (exit status 3, no message) or ``hang`` (stop answering), epoch 1-based.

    torchrun --nproc-per-node 2 tests/training/dist_worker.py train lenet5 ...
"""

from __future__ import annotations

import os
import signal
import sys
import time

import cnnlab.training.loop as loop
from cnnlab.cli import main


def inject(spec: str) -> None:
    action, rank, at_epoch = spec.split(":")
    original = loop.train_one_epoch

    def faulty(*args, epoch: int, **kwargs):
        if os.environ.get("RANK") == rank and epoch + 1 == int(at_epoch):
            print(f"test fault: rank {rank} {action} at the start of epoch {at_epoch}", file=sys.stderr, flush=True)
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            elif action == "exit":
                os._exit(3)
            elif action == "hang":
                time.sleep(3600)
        return original(*args, epoch=epoch, **kwargs)

    loop.train_one_epoch = faulty  # fit looks the function up in the module at each epoch


if __name__ == "__main__":
    if os.environ.get("CNNLAB_TEST_FAULT"):
        inject(os.environ["CNNLAB_TEST_FAULT"])
    main(sys.argv[1:])
