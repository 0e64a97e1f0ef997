"""A disk that fills up during a checkpoint: one line, and the previous checkpoint intact.

Where the machine allows it (root with mount permission) the run folder lives on a real
tmpfs shrunk, after two epochs, to a little less than the third checkpoint needs; elsewhere
that test skips and the same run gets an injected ENOSPC at a file operation of the third
commit (the second test always runs). After the failure, the run resumes on a larger disk
and finishes.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess

import pytest

from cnnlab.training.checkpoint import epoch_folder, latest_checkpoint, set_fault_hook
from cnnlab.training.loop import StopTraining, fit
from cnnlab.training.run import load_run

from .conftest import Child, run_cnnlab, tiny_config


def _mount(path, size: int, *, remount: bool = False) -> bool:
    options = f"remount,size={size}" if remount else f"size={size}"
    args = ["mount", "-o", options, str(path)] if remount else ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)]
    try:
        return subprocess.run(args, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture
def tmpfs(tmp_path):
    path = tmp_path / "disk"
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None or not _mount(path, 16 << 20):
        pytest.skip("cannot mount a tmpfs here (needs root and mount permission); test_injected_enospc covers it")
    yield path
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def _two_epochs(out) -> None:
    def stop_after_two(epoch, record):
        if epoch == 2:
            raise StopTraining

    def target() -> int:
        fit(tiny_config(out), callbacks=[stop_after_two], quiet=True)
        return 0

    result = Child(target).wait()
    assert result.code == 0, result.err
    assert latest_checkpoint(out).epoch == 2


def _check_the_failure(out, result) -> None:
    assert result.code == 1 and "Traceback" not in result.err
    assert result.err_lines == [
        f"error: could not write the checkpoint of epoch 3 in {out}: the disk is full; the checkpoint of epoch 2 is "
        f"intact; free space and continue with: cnnlab train --resume {out}"
    ], result.err
    assert latest_checkpoint(out).epoch == 2  # verified: manifest, hashes, epochs
    assert not epoch_folder(out, 3).exists() and not list(out.rglob(".*tmp*"))
    assert load_run(out, weights="last").model is not None


def test_a_full_tmpfs_during_a_checkpoint(tmpfs, tiny):
    out = tmpfs / "run"
    _two_epochs(out)
    used = shutil.disk_usage(tmpfs).used
    need = sum(p.stat().st_size for p in epoch_folder(out, 2).iterdir())  # about what epoch 3 writes
    assert _mount(tmpfs, used + need // 2, remount=True)
    print(f"disk full: a real tmpfs of {used + need // 2:,} bytes ({used:,} used, the third checkpoint needs ~{need:,})")
    _check_the_failure(out, run_cnnlab(["train", "--resume", str(out), "-q"]))
    assert _mount(tmpfs, 16 << 20, remount=True)
    resumed = run_cnnlab(["train", "--resume", str(out), "-q"])
    assert resumed.code == 0, resumed.err
    assert latest_checkpoint(out).epoch == 3


def test_injected_enospc_during_a_checkpoint(tmp_path, tiny):
    out = tmp_path / "run"
    _two_epochs(out)

    def full(label: str) -> None:
        if label == "epoch 3: write state.pt":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    print("disk full: ENOSPC injected at 'epoch 3: write state.pt'")
    _check_the_failure(out, run_cnnlab(["train", "--resume", str(out), "-q"], before=lambda: set_fault_hook(full)))
    resumed = run_cnnlab(["train", "--resume", str(out), "-q"])
    assert resumed.code == 0, resumed.err
    assert latest_checkpoint(out).epoch == 3
