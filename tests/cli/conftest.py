"""A trained run folder shared by the command-line tests, and a way to run a command."""

from __future__ import annotations

import pytest

import cnnlab
from cnnlab.cli import main
from cnnlab.training.config import TrainConfig


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``cnnlab ARGS``."""
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, data_root):
    """LeNet-5 after one epoch on 1,000 MNIST images (enough to read most digits right)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    cnnlab.train(
        TrainConfig(model="lenet5", data="mnist", epochs=1, batch_size=50, train_subset=1000, val_size=500,
                    optimizer="adam", lr=0.003, model_options={"activation": "relu", "pool": "max"},
                    out=str(out), data_root=str(data_root), device="cpu"),
        quiet=True,
    )
    return out
