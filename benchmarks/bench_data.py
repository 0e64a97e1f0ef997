"""Data pipeline on Imagenette: decode + augment images/s with 1 and 2 DataLoader workers,
training images/s in memory vs streamed for the same model, and peak memory while streaming.

    CNNLAB_DATA=../shared/datasets .venv/bin/python benchmarks/bench_data.py [--images 2000] [--json out.json]

Each measurement runs in a fresh process (so peak RSS is that path's own: the process and its
workers, from getrusage). Decoding: RandomResizedCrop to 128 from the 160x160 JPEGs, the
resnet18-imagenette recipe's crop, batches of 64, the loop waiting on nothing but the data.
Training: ResNet-18 on 128x128 crops, SGD, a few dozen steps after one warm-up step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CROP = 128
BATCH = 64


def _rss_mb() -> float:
    """Peak resident memory of this process plus that of its largest (finished) child, MB:
    getrusage reports the children's maximum, not their sum, so with 2 workers this is a
    lower bound of the true peak."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024


def decode(workers: int, images: int) -> dict:
    import torch

    from cnnlab.data.stream import StreamBatches, stream_splits, train_transform

    train, _, _ = stream_splits("imagenette", None, size=CROP, val_size=0)
    train = train.subset(torch.arange(min(images, len(train))))
    batches = StreamBatches(train, BATCH, transform=train_transform("imagenet", CROP), shuffle=True, workers=workers,
                            generator=torch.Generator().manual_seed(0), seed=0)
    iterator = iter(batches)
    next(iterator)  # workers started, first batch decoded
    t0, n = time.perf_counter(), 0
    for x, _ in iterator:
        n += len(x)
    seconds = time.perf_counter() - t0
    return {"what": f"decode+crop, {workers} worker(s)", "images_per_s": n / seconds, "images": n, "peak_rss_mb": _rss_mb()}


def train(mode: str, steps: int) -> dict:
    import torch

    from cnnlab.training.config import build_config
    from cnnlab.training.loop import prepare

    config = build_config("resnet18", "imagenette", recipe="resnet18-imagenette", data_mode=mode, workers=1,
                          train_subset=BATCH * (steps + 1))
    setup = prepare(config)
    model, opt = setup.model, setup.optimizer
    model.train()
    n, t0 = 0, None
    for i, (x, y) in enumerate(setup.train):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i == 0:
            t0 = time.perf_counter()  # after one warm-up step
        else:
            n += len(y)
    seconds = time.perf_counter() - t0
    return {"what": f"train resnet18 {CROP}px, {mode}", "images_per_s": n / seconds, "images": n, "peak_rss_mb": _rss_mb(),
            "data": setup.data_note}


def _child(args: list[str], images: int, steps: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--images", str(images), "--steps", str(steps), "--child", *args],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="images decoded per worker setting")
    parser.add_argument("--steps", type=int, default=20, help="training steps per data path")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, value = args.child
        row = decode(int(value), args.images) if kind == "decode" else train(value, args.steps)
        print(json.dumps(row))
        return
    rows = [_child([kind, value], args.images, args.steps)
            for kind, value in (("decode", "1"), ("decode", "2"), ("train", "memory"), ("train", "stream"))]
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"{cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    for row in rows:
        print(f"{row['what']:<34} {row['images_per_s']:8.1f} images/s  peak RSS {row['peak_rss_mb']:7.0f} MB  ({row['images']} images)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu, "load": os.getloadavg()[0], "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
