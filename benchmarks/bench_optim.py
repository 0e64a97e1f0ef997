"""Optimizer step time: torch's fused step (what `cnnlab train` uses on CPU and CUDA) against
its default foreach step, in the same process, on real models' parameters with random grads.

Usage: python benchmarks/bench_optim.py [--device cpu] [--threads N]
Prints ms per step and the ratio (foreach / fused), with the machine.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from cnnlab.models import create_model
from cnnlab.training.device import machine_name

CASES = (("lenet5", "adam", 200), ("resnet20", "sgd", 50), ("resnet50", "sgd", 5))


def step_ms(model: torch.nn.Module, name: str, steps: int, *, fused: bool | None) -> float:
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    if name == "adam":
        opt = torch.optim.Adam(params, lr=1e-3, fused=fused)
    else:
        opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9, fused=fused)
    for _ in range(2):
        opt.step()
    best = float("inf")
    for _ in range(3):  # best of three: the machine may be shared
        t = time.perf_counter()
        for _ in range(steps):
            opt.step()
        best = min(best, (time.perf_counter() - t) / steps)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"machine: {machine_name(device)}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}")
    print(f"{'model':10} {'optimizer':9} {'foreach ms':>11} {'fused ms':>9} {'ratio':>6}")
    for model_name, opt_name, steps in CASES:
        model = create_model(model_name).to(device)
        plain = step_ms(model, opt_name, steps, fused=None)
        fused = step_ms(model, opt_name, steps, fused=True)
        print(f"{model_name:10} {opt_name:9} {plain:11.2f} {fused:9.2f} {plain / fused:5.2f}x")


if __name__ == "__main__":
    main()
