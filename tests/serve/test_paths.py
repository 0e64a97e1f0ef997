"""Only the run folders the server was given are reachable; no request path reaches the disk."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.serve.inference import find_runs, unique_ids

from .client import get, predict_sample, request

LENET = "lenet5-mnist"

TRAVERSALS = [
    "/../../../../etc/passwd",
    "/api/runs/../../etc/passwd",
    "/api/runs/..%2f..%2f..%2fetc%2fpasswd",
    "/api/runs/%2e%2e/%2e%2e/etc/passwd",
    "/api/runs/%2e%2e%2f%2e%2e%2fetc%2fpasswd/filters.png",
    "/api/runs/%252e%252e%252fetc%252fpasswd",
    "/api/runs/..%c0%af..%c0%afetc%c0%afpasswd",
    "/api/runs/%2Fetc%2Fpasswd",
    "/api/runs//etc/passwd",
    "/api/runs/%2Fetc/filters.png",
    "/api/runs/..\\..\\etc\\passwd",
    "/api/runs/lenet5-mnist/../../../etc/passwd",
    "/api/runs/lenet5-mnist/inputs/..%2f..%2fconfig.json/input.png",
    "/api/runs/lenet5-mnist/config.json",
    "/api/runs/lenet5-mnist/last.safetensors",
    "/api/runs/lenet5-mnist%2fconfig.json",
    "/api/runs/lenet5-mnist%00/filters.png",
    "/static/../app.py",
    "/static/%2e%2e/app.py",
    "/static/..%2fapp.py",
    "/static/..%2f..%2f..%2fetc%2fpasswd",
    "/static/app.js/../../../etc/passwd",
    "/static/index.html",  # served at / only: static/ holds exactly app.js and style.css
    "/static/inference.py",
    "/static/%2e%2e%2finference.py",
    "/etc/passwd",
    "//etc/passwd",
    "/~/.ssh/id_rsa",
    "/api/runs/" + "a" * 5000,
]


def _secret_free(body: bytes) -> bool:
    """No /etc/passwd, Python source, safetensors header or config.json content in the answer."""
    return all(s not in body for s in (b"root:", b"import ", b"__metadata__", b'"optimizer"'))


@pytest.fixture(scope="module")
def server(lenet_run):
    from cnnlab.serve import create_app

    from .conftest import LiveServer

    s = LiveServer(create_app([lenet_run]))
    yield s
    s.close()


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_is_404(server, path):
    reply = get(server.port, path)
    assert reply.status in (400, 404), (path, reply)
    assert _secret_free(reply.body)


def test_absolute_form_and_raw_targets(server):
    for target in ("http://127.0.0.1/etc/passwd", "/api/runs/../../../etc/passwd", "/static/../../../../etc/passwd"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as s:
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        assert answer.split(b"\r\n", 1)[0] in (b"HTTP/1.1 404 Not Found", b"HTTP/1.1 400 Bad Request"), answer[:100]
        assert b"root:" not in answer


def test_a_folder_beside_a_served_run_is_not_reachable(live_app, lenet_run, tmp_path):
    other = tmp_path / "secret-run"
    shutil.copytree(lenet_run, other)
    served = live_app([lenet_run])
    assert get(served.port, "/api/runs/secret-run").status == 404
    assert predict_sample(served.port, "secret-run", 0).status == 404
    assert [r["id"] for r in get(served.port, "/api/runs").json()["runs"]] == [LENET]


def test_links_out_of_the_runs_folder_are_not_served(lenet_run, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    outside = tmp_path / "outside"
    shutil.copytree(lenet_run, outside)
    shutil.copytree(lenet_run, runs / "real")
    os.symlink(outside, runs / "escape")  # a link planted in runs/ pointing elsewhere
    os.symlink(runs / "real", runs / "alias")  # a link that stays inside runs/
    (runs / "not-a-run").mkdir()
    (runs / "file.txt").write_text("x")
    found, warnings = find_runs([], runs)
    assert [p.name for p in found] == ["real", "real"]  # alias resolves to real, inside runs/
    assert len(warnings) == 1 and "escape" in warnings[0] and "links outside" in warnings[0]
    assert unique_ids([Path("a/real"), Path("b/real"), Path("c/r e@l")]) == ["real", "real-2", "r_e_l"]


def test_named_runs_must_be_run_folders(tmp_path):
    with pytest.raises(CnnlabError, match="not a run folder"):
        find_runs([str(tmp_path)], "runs")
    assert find_runs([], tmp_path / "missing") == ([], [])


def test_host_header_must_be_loopback(server):
    assert get(server.port, "/api/health", headers={"Host": "127.0.0.1"}).status == 200
    assert get(server.port, "/api/health", headers={"Host": "localhost:1234"}).status == 200
    evil = get(server.port, "/api/health", headers={"Host": "attacker.example"})
    assert evil.status == 400  # a DNS-rebinding page cannot talk to a local server


def test_methods_other_than_those_routed_are_refused(server):
    assert request(server.port, "DELETE", "/api/runs").status == 405
    assert request(server.port, "PUT", f"/api/runs/{LENET}/predict", b"x").status == 405
    assert request(server.port, "GET", f"/api/runs/{LENET}/predict").status == 405
