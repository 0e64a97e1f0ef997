"""`cnnlab serve`: what it says when started wrong, and the loopback warning."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from cnnlab.cli.serve import is_loopback

from .conftest import run_cli

CMD = [sys.executable, "-c", "from cnnlab.cli import main; main()", "serve"]


def test_no_runs_says_how_to_train_the_demo(tmp_path, capsys):
    code, out, err = run_cli(["serve", "--runs-dir", str(tmp_path)], capsys)
    assert code == 1
    assert err.strip() == f"error: no run folders under {tmp_path}/; train the demo model first: `make demo` " \
                          "(or `cnnlab train lenet5 --data mnist`)"


def test_a_folder_that_is_not_a_run_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(["serve", str(tmp_path)], capsys)
    assert code == 1 and "is not a run folder (no config.json)" in err and len(err.strip().splitlines()) == 1


def test_a_port_in_use_is_one_line(run_dir, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, _, err = run_cli(["serve", str(run_dir), "--port", str(port)], capsys)
    assert code == 1 and f"cannot listen on 127.0.0.1:{port}" in err and len(err.strip().splitlines()) == 1


def test_loopback_names():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.2", "example.org"))


@pytest.mark.parametrize("host", ["0.0.0.0"])
def test_listening_beyond_loopback_warns(run_dir, host):
    proc = subprocess.Popen([*CMD, str(run_dir), "--host", host, "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("serving "):
                assert "http://127.0.0.1:" in line
                break
        else:
            pytest.fail(f"serve did not start: {proc.stderr.read()}")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert f"warning: listening on {host}: anyone who can reach this machine" in err
