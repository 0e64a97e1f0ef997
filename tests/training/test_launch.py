"""`cnnlab train --nproc N` and `python -m cnnlab`: torchrun's launcher started by the CLI, and
the one-line refusals before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.training.distributed import check_process_count, device_capacity


def cnnlab(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_python_m_cnnlab_is_the_command_line():
    result = cnnlab("train", "--help")
    assert result.returncode == 0 and "--nproc" in result.stdout and "--accum-steps" in result.stdout


def test_more_processes_than_cores_is_refused_in_one_line():
    cores = device_capacity(torch.device("cpu"))
    result = cnnlab("train", "lenet5", "--device", "cpu", "--nproc", str(cores + 1))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {cores + 1} processes per node asked for, but this node has {cores} cpu cores; use at most --nproc {cores}"
    ]


def test_more_processes_than_gpus_is_refused():
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        with pytest.raises(CnnlabError, match=f"{n + 1} processes per node asked for, but this node has {n} CUDA devices"):
            check_process_count(n + 1, torch.device("cuda"))
    check_process_count(1, torch.device("cpu"))  # one always fits


def test_nproc_inside_a_torchrun_worker_must_agree_with_it():
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}
    result = cnnlab("train", "lenet5", "--nproc", "4", env=env)
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    assert "--nproc 4 inside a torchrun worker of 2" in result.stderr


LAUNCH = (
    "import sys, torch\n"
    "from cnnlab.training.launch import launch, LaunchError\n"
    "try:\n"
    "    launch(sys.argv[1:], nproc=2, device=torch.device('cpu'))\n"
    "except LaunchError as e:\n"
    "    print(f'{e} [reported_by_rank0={e.reported_by_rank0}]', file=sys.stderr); sys.exit(1)\n"
)


def launch(worker_code: str) -> subprocess.CompletedProcess:
    # The workers are plain `python -c` here: the launcher itself is under test, not training.
    return subprocess.run([sys.executable, "-c", LAUNCH, "-c", worker_code], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_launcher_gives_each_worker_torchruns_environment():
    code = ("import os\n"
            "assert os.environ['WORLD_SIZE'] == '2' and os.environ['LOCAL_WORLD_SIZE'] == '2'\n"
            "assert os.environ['RANK'] in ('0', '1') and os.environ['MASTER_ADDR'] and os.environ['MASTER_PORT']\n"
            "assert os.environ['OMP_NUM_THREADS'] == str(max(1, len(os.sched_getaffinity(0)) // 2))\n")
    result = launch(code)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
def test_a_failed_worker_is_one_line_naming_its_rank_and_status():
    result = launch("import os, sys\nsys.exit(5 if os.environ['RANK'] == '1' else 0)")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "rank 1 of 2 exited with code 5 (its message, if any, is above); the other ranks were stopped [reported_by_rank0=False]"
    )
    # status 1 is cnnlab's "I printed my error": the CLI then adds nothing
    result = launch("import sys\nsys.exit(1)")
    assert result.stderr.strip().endswith("[reported_by_rank0=True]")
