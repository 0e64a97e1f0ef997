"""One thread against all cores, side by side in one process: what `--threads` defaults to and why.

PyTorch's default is one thread per core. On a machine whose cores other processes keep busy,
extra threads wait for each other at every operator; `cnnlab.training.device.choose_threads`
therefore gives one thread per idle core (from the load average). This measures the claim:
training steps (forward, cross-entropy, backward, SGD) of LeNet-5 and ResNet-20 on random
batches, alternating the thread counts (median of a few rounds), with the load average before
and after.

Usage: python benchmarks/bench_threads.py [--rounds 3] [--steps 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from cnnlab.models import create_model
from cnnlab.training.device import choose_threads, machine_name

CASES = (("lenet5", (1, 32, 32), 256), ("resnet20", (3, 32, 32), 128))  # model, input, batch


def images_per_s(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * len(x) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    counts = sorted({1, torch.get_num_threads()})
    _, why = choose_threads(None)
    print(f"machine: {machine_name(torch.device('cpu'))}, {cores} cores, load average {os.getloadavg()[0]:.1f}; "
          f"cnnlab's default here: {why}")
    for name, shape, batch in CASES:
        model = create_model(name, num_classes=10, in_chans=shape[0]).train()
        x, y = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))
        rates: dict[int, list[float]] = {n: [] for n in counts}
        for n in counts:  # warm-up at each count
            torch.set_num_threads(n)
            images_per_s(model, x, y, 1)
        for _ in range(args.rounds):
            for n in counts:
                torch.set_num_threads(n)
                rates[n].append(images_per_s(model, x, y, args.steps))
        medians = {n: statistics.median(r) for n, r in rates.items()}
        parts = ", ".join(f"{n} thread(s) {medians[n]:,.0f} images/s" for n in counts)
        best = max(medians, key=medians.get)
        print(f"{name} (batch {batch}): {parts}; best: {best} (load average now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
