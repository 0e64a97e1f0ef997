"""MNIST speed: cnnlab's trainer against a plain PyTorch loop, in the same invocation.

Both sides train LeNet-5 (ReLU, max pooling) on the same 55,000 training images and stop
once the 10,000-image test set reaches the target accuracy (checked after every epoch). Each
runs in a fresh Python process, and "time to target" is measured from the moment that
process is started, so imports and data loading count, as they do for a user.

- cnnlab: the demo recipe (`cnnlab train lenet5 --data mnist`): the dataset held as uint8
  tensors, batches cut by indexing, normalisation and padding on whole batches.
- baseline: the textbook loop: a map-style Dataset whose __getitem__ converts one image at a
  time (uint8 -> float, normalise, pad), a DataLoader at batch 64, Adam at 1e-3.

Usage: python benchmarks/bench_mnist.py [--target 0.99] [--max-epochs 8] [--device cuda] [--no-baseline]
Prints a table and the ratios (baseline / cnnlab), with the machine and its load average;
needs $CNNLAB_DATA or ../shared/datasets. Both sides run on --device (default: cpu).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

OURS = r"""
import json, sys, time, tempfile
T0 = float(sys.argv[1])
import cnnlab
from cnnlab.training.loop import StopTraining
target, max_epochs, device = float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
config = cnnlab.build_config("lenet5", "mnist", out=tempfile.mkdtemp() + "/run", device=device)
reached = {}
def check(epoch, record):
    if "t" not in reached and 1 - record["test_top1_err"] >= target:
        reached.update(t=time.time() - T0, epoch=epoch, acc=1 - record["test_top1_err"])
run = cnnlab.train(config, callbacks=[check], quiet=True)
h = run.history
ips = sum(r["images_per_s"] * r["epoch_time_s"] for r in h) / sum(r["epoch_time_s"] for r in h)
print(json.dumps({"time_to_target": reached.get("t"), "epoch": reached.get("epoch"),
                  "final_acc": 1 - h[-1]["test_top1_err"], "epochs": len(h), "images_per_s": ips,
                  "total_s": time.time() - T0}))
"""

BASELINE = r"""
import json, sys, time
T0 = float(sys.argv[1])
import torch, torch.nn.functional as F
from torch.utils.data import Dataset, DataLoader
from cnnlab.data import load_dataset
from cnnlab.models import create_model
target, max_epochs, device = float(sys.argv[2]), int(sys.argv[3]), torch.device(sys.argv[4])
train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")

class PerSample(Dataset):
    def __init__(self, ds):
        self.images, self.labels = ds.images.numpy(), ds.labels.numpy()
    def __len__(self):
        return len(self.images)
    def __getitem__(self, i):  # one image at a time, as torchvision's ToTensor + Normalize + Pad
        x = torch.from_numpy(self.images[i]).float().div(255)
        x = (x - 0.1307) / 0.3081
        return F.pad(x, (2, 2, 2, 2), value=-0.1307 / 0.3081), int(self.labels[i])

torch.manual_seed(0)
model = create_model("lenet5", activation="relu", pool="max").to(device)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
train_loader = DataLoader(PerSample(train), batch_size=64, shuffle=True)
test_loader = DataLoader(PerSample(test), batch_size=1000)
reached, seen, train_time, acc = {}, 0, 0.0, 0.0
for epoch in range(1, max_epochs + 1):
    model.train(); t = time.perf_counter()
    for x, y in train_loader:
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        seen += len(y)
    train_time += time.perf_counter() - t
    model.eval(); correct = 0
    with torch.no_grad():
        for x, y in test_loader:
            correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
    acc = correct / len(test)
    if acc >= target:
        reached.update(t=time.time() - T0, epoch=epoch)
        break
print(json.dumps({"time_to_target": reached.get("t"), "epoch": reached.get("epoch"), "final_acc": acc,
                  "epochs": epoch, "images_per_s": seen / train_time, "total_s": time.time() - T0}))
"""


def run_side(code: str, target: float, max_epochs: int, device: str) -> dict:
    t0 = time.time()
    out = subprocess.run(
        [sys.executable, "-c", code, str(t0), str(target), str(max_epochs), device],
        capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        sys.exit(f"benchmark side failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (both sides)")
    parser.add_argument("--no-baseline", action="store_true", help="only cnnlab's side (the plain loop takes minutes on a CPU)")
    args = parser.parse_args()
    if not os.environ.get("CNNLAB_DATA"):
        shared = Path(__file__).resolve().parents[2] / "shared" / "datasets"
        if shared.is_dir():
            os.environ["CNNLAB_DATA"] = str(shared)
    import torch

    from cnnlab.training.device import machine_name

    print(f"machine: {machine_name(torch.device(args.device))} ({platform.machine()}), {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}, Python {platform.python_version()}")
    ours = run_side(OURS, args.target, args.max_epochs, args.device)
    print(json.dumps({"cnnlab": ours}))
    if args.no_baseline:
        return
    base = run_side(BASELINE, args.target, args.max_epochs, args.device)

    def fmt_t(r: dict) -> str:
        return f"{r['time_to_target']:.1f} s (epoch {r['epoch']})" if r["time_to_target"] else f"not reached in {r['epochs']} epochs"

    rows = [("cnnlab (demo recipe)", ours), ("plain PyTorch loop", base)]
    print(f"\nLeNet-5 on MNIST, target test accuracy {args.target:.1%}")
    print(f"{'':24} {'time to target':>24} {'train images/s':>15} {'final acc':>10} {'total':>9}")
    for name, r in rows:
        print(f"{name:24} {fmt_t(r):>24} {r['images_per_s']:>15,.0f} {r['final_acc']:>10.2%} {r['total_s']:>8.1f}s")
    print(f"\nthroughput ratio (cnnlab / baseline): {ours['images_per_s'] / base['images_per_s']:.2f}x")
    if ours["time_to_target"] and base["time_to_target"]:
        print(f"time-to-target ratio (baseline / cnnlab): {base['time_to_target'] / ours['time_to_target']:.2f}x")


if __name__ == "__main__":
    main()
