"""Under load: 50 concurrent requests all answered correctly, slow clients block no one."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from cnnlab.serve import Limits
from cnnlab.training.evaluate import run_dataset
from cnnlab.training.predict import predict_file_probs
from cnnlab.training.run import load_run

from .client import get, png_bytes, post_image, predict_sample

LENET = "lenet5-mnist"
RGB = "resnet20-colours"


@pytest.mark.slow
def test_fifty_concurrent_requests_are_all_answered_correctly(cli_server, lenet_run, tmp_path):
    run = load_run(lenet_run)
    test = run_dataset(run, "test")
    indices = list(range(100, 150))
    paths = []
    for i in indices:
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(test.images[i, 0].numpy(), "L").save(paths[-1])
    expected = predict_file_probs(run, paths)
    port = cli_server.port
    predict_sample(port, LENET, 0)  # load the model and the test split once before the burst
    before = cli_server.rss_kb()

    def one(k: int):
        if k % 2:  # half as uploads, half as test-set samples
            return post_image(port, LENET, paths[k].read_bytes())
        return predict_sample(port, LENET, indices[k])

    with ThreadPoolExecutor(max_workers=50) as pool:
        replies = list(pool.map(one, range(50)))
    assert [r.status for r in replies] == [200] * 50
    for k, reply in enumerate(replies):
        result = reply.json()
        assert result["top"][0]["index"] == int(expected[k].argmax()), k
        assert np.allclose(result["probabilities"], expected[k].numpy(), atol=1e-5)
    keys = {r.json()["key"] for r in replies}
    assert len(keys) == 50
    # every answer's images can be fetched, concurrently too
    urls = [m["url"] for r in replies for m in r.json()["layers"][:2]]
    with ThreadPoolExecutor(max_workers=50) as pool:
        assert all(r.status == 200 for r in pool.map(lambda u: get(port, u), urls))
    health = get(port, "/api/health").json()
    assert health["peak_jobs"] <= health["limits"]["running"] + health["limits"]["waiting"]
    assert cli_server.rss_kb() - before < 500 * 1024  # bounded: inputs cache and thread stacks


@pytest.mark.slow
def test_fifty_concurrent_requests_on_two_runs(cli_server):
    port = cli_server.port
    colour = png_bytes(Image.new("RGB", (32, 32), (230, 20, 20)))

    def one(k: int):
        return predict_sample(port, LENET, k) if k % 2 else post_image(port, RGB, colour)

    with ThreadPoolExecutor(max_workers=50) as pool:
        replies = list(pool.map(one, range(50)))
    assert all(r.status == 200 for r in replies)
    rgb = [r.json() for k, r in enumerate(replies) if k % 2 == 0]
    assert len({tuple(r["probabilities"]) for r in rgb}) == 1  # the same image: the same answer each time


def test_slow_clients_do_not_block_others(live_app, lenet_run):
    server = live_app([lenet_run], limits=Limits(head_timeout_s=60, body_timeout_s=60))
    port = server.port
    slow = []
    try:
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", port), timeout=60)
            if i % 2:  # half stall in the middle of the request head ...
                s.sendall(b"POST /api/runs/lenet5-mnist/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            else:  # ... half in the middle of a 1 MB body
                s.sendall(b"POST /api/runs/lenet5-mnist/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Type: image/png\r\nContent-Length: 1000000\r\n\r\n\x89PNG")
            slow.append(s)
        # While all twenty hold their connections, others are served.
        assert get(port, "/api/health", timeout=60).status == 200
        for i in range(5):
            assert predict_sample(port, LENET, i, ).status == 200
    finally:
        for s in slow:
            s.close()


def test_a_stalled_request_head_is_closed(live_app, lenet_run):
    server = live_app([lenet_run], limits=Limits(head_timeout_s=0.5))
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as s:
        s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        assert s.recv(100) == b""  # closed by the server, not left open
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as s:
        s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200")
        # a trickle of bytes after the answer does not keep the connection open
        try:
            while True:
                s.sendall(b"G")
                s.settimeout(0.2)
                try:
                    if s.recv(100) == b"":
                        break
                except socket.timeout:
                    pass
        except (BrokenPipeError, ConnectionResetError):
            pass


def test_a_full_queue_answers_503_and_recovers(live_app, lenet_run):
    server = live_app([lenet_run], limits=Limits(running=1, waiting=1))
    port = server.port
    with ThreadPoolExecutor(max_workers=30) as pool:
        replies = list(pool.map(lambda k: predict_sample(port, LENET, k), range(30)))
    statuses = {r.status for r in replies}
    assert statuses <= {200, 503}
    for r in replies:
        if r.status == 503:
            assert "server busy" in r.error and "\n" not in r.error
    assert get(port, "/api/health").json()["peak_jobs"] <= 2
    assert predict_sample(port, LENET, 0).status == 200
