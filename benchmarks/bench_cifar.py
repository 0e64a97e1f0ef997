"""CIFAR-10 time to accuracy: the speedrun recipe against ResNet-20's, in the same invocation.

Both sides train on cifar10-jpeg, each in a fresh Python process, with the time measured from
the moment that process is started (imports, data loading and the precision probe count, as
they do for a user) and test accuracy checked after every epoch (the weights' and, where the
recipe keeps one, the weight average's: whichever reaches a target first):

- speedrun: ``cnnlab train airbench94 --recipe cifar-speedrun --epochs 6`` (after Jordan 2024,
  arXiv:2404.00498; the recipe's one-cycle schedule fitted to 6 epochs, since a 10-epoch
  schedule only passes ResNet-20's accuracy in its 8th epoch);
- ResNet-20: ``cnnlab train resnet20 --recipe resnet-cifar`` (He et al. 2016, the paper's 182
  epochs), stopped once it has reached the target, unless ``--full-resnet``.

The target (``--target``, default 87.59%) is ResNet-20's final test accuracy after its full
recipe on cifar10-jpeg (docs/results.md, 2026-12-02); ``--full-resnet`` runs all 182 epochs
(about 95 minutes on 2 cores of an AVX-512 EPYC) and takes this run's final accuracy instead.

Usage: python benchmarks/bench_cifar.py [--target 0.8759] [--speedrun-epochs 6] [--full-resnet]
           [--threads 2] [--device cpu] [--out NEW_DIR]
Prints each side's progress, then a table of the times to 85%, the target, 90% and 93%, and
the ratio; writes the run folders, results.json and a time-to-accuracy plot (curves-time.png)
under --out.
Needs $CNNLAB_DATA or ../shared/datasets.
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

# One side: trains into its run folder and prints, per epoch, the wall time from its process's
# start (to stderr, as progress) and at the end one JSON line (to stdout) with all of them.
SIDE = r"""
import json, sys, time
T0 = float(sys.argv[1])
import cnnlab
from cnnlab.training.loop import StopTraining
from cnnlab.viz.curves import best_test_accuracy, first_reaching
model, recipe, out, device = sys.argv[2:6]
epochs, threads, stop_at = (int(sys.argv[6]) or None), (int(sys.argv[7]) or None), float(sys.argv[8])
config = cnnlab.build_config(model, "cifar10-jpeg", recipe=recipe, epochs=epochs, threads=threads,
                             device=device, out=out)
walls = {}
def check(epoch, record):
    walls[epoch] = time.time() - T0
    acc = best_test_accuracy([record])  # the weights' or the weight average's, whichever is higher
    print(f"{model}: epoch {epoch}/{config.epochs}  test accuracy {acc if acc is not None else float('nan'):.2%}  "
          f"{walls[epoch]:,.0f} s from the start", file=sys.stderr, flush=True)
    if stop_at and first_reaching([record], stop_at) is not None:
        raise StopTraining
run = cnnlab.train(config, callbacks=[check], quiet=True)
print(json.dumps({"walls": walls, "total_s": time.time() - T0, "epochs_planned": config.epochs}))
"""

MARKS = (0.85, 0.90, 0.93)


def run_side(model: str, recipe: str, out: Path, *, device: str, epochs: int, threads: int, stop_at: float) -> dict:
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", SIDE, str(t0), model, recipe, str(out), device, str(epochs), str(threads), str(stop_at)],
        stdout=subprocess.PIPE, text=True, check=False,  # stderr passes through: the progress lines
    )
    if proc.returncode != 0:
        sys.exit(f"the {model} side failed (exit code {proc.returncode}); its run folder: {out}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def times_to(history: list[dict], walls: dict, targets) -> dict:
    """For each target: (seconds from process start, epoch), or None when not reached."""
    from cnnlab.viz.curves import first_reaching

    result = {}
    for target in targets:
        hit = first_reaching(history, target)
        result[target] = (walls[str(hit[0]["epoch"])], hit[0]["epoch"]) if hit else None
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.8759, help="ResNet-20's final accuracy (a fraction)")
    parser.add_argument("--speedrun-epochs", type=int, default=6)
    parser.add_argument("--full-resnet", action="store_true", help="ResNet-20's whole recipe; its final accuracy is the target")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for both sides (0: cnnlab's choice)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="a new folder for both run folders and results.json "
                        "(default: runs/bench-cifar-<date>-<time>)")
    args = parser.parse_args()
    if not os.environ.get("CNNLAB_DATA"):
        shared = Path(__file__).resolve().parents[2] / "shared" / "datasets"
        if shared.is_dir():
            os.environ["CNNLAB_DATA"] = str(shared)
    import torch

    from cnnlab.training.device import machine_name
    from cnnlab.viz.curves import plot_curves, run_histories, save_figure

    out = Path(args.out or f"runs/bench-cifar-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists():
        sys.exit(f"{out} exists; bench_cifar.py writes a new folder each time (--out NEW_FOLDER)")
    out.mkdir(parents=True)
    machine = (f"{machine_name(torch.device(args.device))} ({platform.machine()}, torch CPU kernels "
               f"{torch.backends.cpu.get_cpu_capability()}), {os.cpu_count()} CPU cores, "
               f"load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}, Python {platform.python_version()}")
    print(f"machine: {machine}", flush=True)
    common = dict(device=args.device, threads=args.threads)
    speed = run_side("airbench94", "cifar-speedrun", out / "speedrun", epochs=args.speedrun_epochs, stop_at=0, **common)
    resnet = run_side("resnet20", "resnet-cifar", out / "resnet20", epochs=0,
                      stop_at=0 if args.full_resnet else args.target, **common)
    (_, speed_history), (_, resnet_history) = run_histories([out / "speedrun", out / "resnet20"])
    target = 1 - resnet_history[-1]["test_top1_err"] if args.full_resnet else args.target
    targets = sorted({*MARKS, target})
    rows = {"speedrun": times_to(speed_history, speed["walls"], targets),
            "resnet20": times_to(resnet_history, resnet["walls"], targets)}

    def cell(hit) -> str:
        return f"{hit[0]:,.0f} s (ep. {hit[1]})" if hit else "not reached"

    print(f"\nCIFAR-10 (cifar10-jpeg) time to test accuracy from process start, on {machine}")
    print(f"{'':36}" + "".join(f"{f'{t:.2%}':>18}" for t in targets) + f"{'final':>10}")
    for name, label, history in (("speedrun", f"airbench94, cifar-speedrun, {args.speedrun_epochs} ep.", speed_history),
                                 ("resnet20", f"resnet20, resnet-cifar ({len(resnet_history)} ep. run)", resnet_history)):
        final = 1 - history[-1]["test_top1_err"]
        print(f"{label:36}" + "".join(f"{cell(rows[name][t]):>18}" for t in targets) + f"{final:>10.2%}")
    ratio = None
    if rows["speedrun"][target] and rows["resnet20"][target]:
        ratio = rows["resnet20"][target][0] / rows["speedrun"][target][0]
        faster = f"speedrun {ratio:.2f}x sooner" if ratio >= 1 else f"ResNet-20 {1 / ratio:.2f}x sooner"
        print(f"\ntime to ResNet-20's final accuracy ({target:.2%}): {faster}")
    else:
        print(f"\none side did not reach {target:.2%}: no ratio")
    fig = plot_curves([("airbench94 (cifar-speedrun)", speed_history), ("resnet20 (resnet-cifar)", resnet_history)],
                      title="CIFAR-10 time to accuracy", x="time", targets=targets)
    print(f"plot: {save_figure(fig, out / 'curves-time.png')}; run folders under {out}")
    (out / "results.json").write_text(json.dumps({
        "machine": machine, "target": target, "ratio": ratio, "speedrun_epochs": args.speedrun_epochs,
        "times_s_epoch": {name: {f"{t:.4f}": hit for t, hit in r.items()} for name, r in rows.items()},
    }, indent=1))


if __name__ == "__main__":
    main()
