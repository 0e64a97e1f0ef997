"""Latency of `cnnlab serve`: p50/p95 of POST /api/runs/{run}/predict at 1 and 20 clients.

    python benchmarks/bench_serve.py [--requests 200] [--workers 2] [--keep DIR]

Against a real server: `cnnlab serve` in its own process on 127.0.0.1, default limits (two
inference jobs at once, the rest queued). Each request is a test-set sample (``sample=N``),
so the time is the server's: the forward pass with every layer's output recorded, the
top-5 and the JSON with the image URLs (the PNGs are made when fetched, not here).

Run folders (the weights do not change the compute): LeNet-5 trained one epoch on 1,000 MNIST
images (1x32x32 input after padding), and ResNet-20 trained one epoch on a 36-image synthetic
colour folder of 32x32 RGB images (CIFAR-10's input size; real CIFAR-10 would spend minutes in
evaluation before the benchmark starts and change nothing measured).
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

import cnnlab
from cnnlab.training.config import TrainConfig


def make_runs(root: Path) -> dict[str, Path]:
    runs = {"lenet5": root / "lenet5-mnist", "resnet20": root / "resnet20-colours"}
    if not (runs["lenet5"] / "last.safetensors").is_file():
        cnnlab.train(TrainConfig(model="lenet5", data="mnist", epochs=1, batch_size=50, train_subset=1000, val_size=500,
                                 optimizer="adam", lr=0.003, out=str(runs["lenet5"]), device="cpu"), quiet=True)
    if not (runs["resnet20"] / "last.safetensors").is_file():
        rng = np.random.default_rng(0)
        data = root / "colours"
        for split, n in (("train", 12), ("test", 4)):
            for c, name in enumerate(("red", "green", "blue")):
                (data / split / name).mkdir(parents=True, exist_ok=True)
                for i in range(n):
                    a = rng.integers(0, 80, (32, 32, 3)).astype(np.uint8)
                    a[..., c] += 150
                    Image.fromarray(a).save(data / split / name / f"{i}.png")
        cnnlab.train(TrainConfig(model="resnet20", data=f"folder:{data}", epochs=1, batch_size=8, val_size=6,
                                 out=str(runs["resnet20"]), device="cpu"), quiet=True)
    return runs


def start_server(runs: list[Path], workers: int) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-c", "from cnnlab.cli import main; main()", "serve", *map(str, runs), "--port", "0",
           "--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        m = re.search(r"at http://127\.0\.0\.1:(\d+)/", line)
        if m:
            return proc, int(m.group(1))
    raise RuntimeError(f"server did not start: {proc.stderr.read()}")


def client(port: int, run: str, samples: list[int], out: list[float], errors: list[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    for n in samples:
        body = f"sample={n}".encode()
        start = time.perf_counter()
        conn.request("POST", f"/api/runs/{run}/predict", body=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        reply = conn.getresponse()
        reply.read()
        out.append(time.perf_counter() - start)
        if reply.status != 200:
            errors.append(str(reply.status))
    conn.close()


def measure(port: int, run: str, clients: int, total: int, test_size: int) -> dict:
    per = max(1, total // clients)
    times: list[float] = []
    errors: list[str] = []
    threads = [threading.Thread(target=client, args=(port, run, [(c * per + i) % test_size for i in range(per)], times, errors))
               for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = sorted(1000 * t for t in times)
    return {"clients": clients, "requests": len(ms), "errors": len(errors), "p50": statistics.median(ms),
            "p95": ms[min(len(ms) - 1, int(round(0.95 * len(ms))) - 1)], "rps": len(ms) / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per measurement")
    parser.add_argument("--workers", type=int, default=2, help="the server's --workers")
    parser.add_argument("--keep", help="folder for the run folders (reused when present)")
    args = parser.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-serve-"))
    runs = make_runs(root)
    proc, port = start_server(list(runs.values()), args.workers)
    try:
        rows = []
        for model, path in runs.items():
            test_size = 10_000 if model == "lenet5" else 12
            client(port, path.name, [0, 1, 2], [], [])  # load the model and the test split; warm up
            for clients in (1, 20):
                r = measure(port, path.name, clients, args.requests, test_size)
                rows.append((model, r))
    finally:
        proc.terminate()
        proc.wait(30)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"cnnlab serve, POST /predict (sample=N), {os.cpu_count()} CPUs ({cpu}), server --workers {args.workers}, "
          f"torch threads default")
    print("| model | clients | requests | p50 ms | p95 ms | requests/s | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for model, r in rows:
        print(f"| {model} | {r['clients']} | {r['requests']} | {r['p50']:.1f} | {r['p95']:.1f} | {r['rps']:.1f} | {r['errors']} |")


if __name__ == "__main__":
    main()
