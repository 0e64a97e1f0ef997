"""Training throughput of 1 process against N processes (DDP through torchrun), same code.

Each setting is one real `cnnlab train` run (``--nproc N`` for N > 1, i.e. torchrun's
launcher, gloo on CPU and NCCL on CUDA) of ``--epochs`` epochs at the same GLOBAL batch
(``--global-batch``, split over the processes; ``--reference-batch`` keeps the lr); the
figures are the last epoch's images/s and time from the run's metrics.csv, so start-up,
data loading and the first epoch's warm-up (cuDNN autotuning, compilation) are left out.

Data: a real dataset by name (``--data mnist``), or ``--synthetic C,H,W,CLASSES,N``: N random
uint8 images in memory (ImageNet-shaped for ResNet-50 on GPUs, no dataset needed). A
synthetic run starts this file as the torchrun worker (``--worker``), which registers the
dataset and then runs the CLI.

    python benchmarks/bench_distributed.py                      # LeNet-5 / MNIST, CPU: 1 vs 2 processes
    python benchmarks/bench_distributed.py --model resnet50 --device cuda --synthetic 3,224,224,1000,8192 \\
        --global-batch 256 --nproc 1 --nproc 8 --set amp=true --set channels_last=true   # benchmarks/gpu.sh

Prints a markdown table (machine named) and, with --json PATH, writes the numbers.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

IMAGENET_TRAIN = 1_281_167  # images in ILSVRC-2012's training set, for the per-epoch estimate


def register_synthetic(spec_text: str) -> str:
    """Register ``synthetic`` (random uint8 images, fixed seed) and return its name."""
    import torch

    from cnnlab.data import DatasetSpec, register_dataset

    c, h, w, classes, n = (int(v) for v in spec_text.split(","))

    def load(root, split, download):
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        count = n if split == "train" else max(classes, n // 10)
        images = torch.randint(0, 256, (count, c, h, w), generator=g, dtype=torch.uint8)
        return images, torch.randint(0, classes, (count,), generator=g), f"synthetic {c}x{h}x{w}"

    register_dataset(DatasetSpec("synthetic", tuple(f"class{i}" for i in range(classes)), load, val_size=0))
    return "synthetic"


def machine() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    name = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                name = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{name}, {len(os.sched_getaffinity(0))} cores"


def run_setting(args, nproc: int, threads: int, out: Path) -> dict:
    data = "synthetic" if args.synthetic else args.data
    per_rank = args.global_batch // nproc
    train = ["train", args.model, "--data", data, "--epochs", str(args.epochs), "--batch-size", str(per_rank),
             "--reference-batch", str(args.global_batch), "--device", args.device, "--threads", str(threads),
             "--no-eval-test-every-epoch", "--val-size", "0", "--out", str(out), "-q"]
    if args.train_subset:
        train += ["--train-subset", str(args.train_subset)]
    for pair in args.set:
        train += ["--set", pair]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if args.synthetic:
        worker = [__file__, "--worker", args.synthetic]
        launcher = ["-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--rdzv-backend", "c10d",
                    "--rdzv-endpoint", "127.0.0.1:0", "--max-restarts", "0"] if nproc > 1 else []
        command = [sys.executable, *launcher, *worker, *train]
    else:
        command = [sys.executable, "-m", "cnnlab", *train] + (["--nproc", str(nproc)] if nproc > 1 else [])
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(command)}\n{result.stderr[-3000:]}")
    with open(out / "metrics.csv") as f:
        last = list(csv.DictReader(f))[-1]
    ips = float(last["images_per_s"])
    return {"processes": nproc, "threads_per_process": threads, "global_batch": args.global_batch,
            "per_rank_batch": per_rank, "images_per_s": ips, "epoch_time_s": float(last["epoch_time_s"]),
            "imagenet_epoch_min": IMAGENET_TRAIN / ips / 60}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":  # a torchrun worker of a synthetic run
        register_synthetic(sys.argv[2])
        from cnnlab.cli import main as cli

        cli(sys.argv[3:])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="lenet5")
    p.add_argument("--data", default="mnist")
    p.add_argument("--synthetic", metavar="C,H,W,CLASSES,N", help="random in-memory data instead of --data")
    p.add_argument("--train-subset", type=int, default=8192, help="training images (0: all); ignored with --synthetic")
    p.add_argument("--epochs", type=int, default=2, help="the last one is measured")
    p.add_argument("--global-batch", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--nproc", type=int, action="append", help="process counts to compare (repeat); default 1 and 2")
    p.add_argument("--threads", type=int, action="append",
                   help="threads for the 1-process run (repeat); default 1 and all cores. N processes get cores/N each")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra training settings (amp=true ...)")
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args()
    if args.synthetic:
        args.train_subset = 0
    cores = len(os.sched_getaffinity(0))
    nprocs = args.nproc or [1, 2]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for nproc in nprocs:
            # On CPU the cores are what processes share out; on GPUs threads only feed the device.
            cpu_alone = nproc == 1 and args.device == "cpu"
            counts = (args.threads or sorted({1, cores})) if cpu_alone else [max(1, cores // nproc)]
            for threads in counts:
                rows.append(run_setting(args, nproc, threads, Path(tmp) / f"p{nproc}-t{threads}"))
                r = rows[-1]
                print(f"  {nproc} process(es) x {threads} thread(s): {r['images_per_s']:,.0f} img/s", file=sys.stderr)
    base = rows[0]["images_per_s"]
    print(f"\n{args.model} on {'synthetic ' + args.synthetic if args.synthetic else args.data}, global batch "
          f"{args.global_batch}, {args.device}, {machine()}\n")
    print("| processes | threads each | per-rank batch | images/s | speed-up | epoch time (s) | ImageNet epoch (min) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['processes']} | {r['threads_per_process']} | {r['per_rank_batch']} | {r['images_per_s']:,.0f} | "
              f"{r['images_per_s'] / base:.2f}x | {r['epoch_time_s']:.2f} | {r['imagenet_epoch_min']:,.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "model": args.model, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
