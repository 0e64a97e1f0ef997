"""`cnnlab bench`: wiring over cnnlab.training.bench."""

from __future__ import annotations

import json

import click
import torch

from cnnlab.cli.common import cli, print_table
from cnnlab.errors import CnnlabError
from cnnlab.training.bench import SETTINGS, TRAINING_SETTINGS, BenchReport, bench
from cnnlab.training.device import choose_threads

MODES = ("all", "inference", "training")


@cli.command("bench")
@click.argument("run_or_model")
@click.option("--batch", default=32, show_default=True, type=click.IntRange(min=1), help="Images per call (per training step).")
@click.option("--size", type=click.IntRange(min=1), default=None, help="Input height = width (default: the model's).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads.  [default: one per idle core, as cnnlab train]")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, ...")
@click.option("--mode", type=click.Choice(MODES), default="all", show_default=True,
              help="Inference rows, training rows, or both.")
@click.option("--setting", "only", multiple=True, type=click.Choice([s.name for s in SETTINGS + TRAINING_SETTINGS]),
              help="Measure only these settings (repeatable; default: all of --mode).")
@click.option("--steps", default=4, show_default=True, type=click.IntRange(min=1),
              help="Training steps per timed call.")
@click.option("--images", default=64, show_default=True, type=click.IntRange(min=1),
              help="Real test images for the top-1 agreement check.")
@click.option("--min-time", default=2.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds of timed calls per setting.")
@click.option("--data-root", type=click.Path(file_okay=False), help="Where the test images are (else $CNNLAB_DATA).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def bench_cmd(run_or_model, batch, size, threads, device, mode, only, steps, images, min_time, data_root, as_json) -> None:
    """Inference and training images/s of RUN_OR_MODEL in one process: eager fp32, cnnlab's inference
    path, onnxruntime; training next to a plain PyTorch loop (ratio), channels-last, bf16 where native,
    compiled, --amp auto; top-1 agreement with eager fp32 on real images; GFLOP/s against the measured
    matmul peak."""
    threads, threads_note = choose_threads(threads)  # as `cnnlab train` chooses them
    torch.set_num_threads(threads)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CnnlabError(f"device {device!r} asked for, but CUDA is not available")
    settings = tuple(s for s in SETTINGS if (not only or s.name in only) and mode != "training")
    training = tuple(s for s in TRAINING_SETTINGS if (not only or s.name in only) and mode != "inference")
    report = bench(run_or_model, batch=batch, size=size, device=device, settings=settings, training=training,
                   steps=steps, images=images, min_time=min_time, data_root=data_root)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(threads_note)
    print_report(report)


def print_report(report: BenchReport) -> None:
    peaks = ", ".join(f"{dtype} {gflops:,.0f}" for dtype, gflops in report.peak_gflops.items())
    click.echo(f"{report.machine} ({' '.join(report.flags) or 'no AVX-512/AMX'}), {report.threads} threads, "
               f"load average {report.load_average:.1f}; matmul peak GFLOP/s: {peaks}")
    size_text = "x".join(map(str, report.input_size))
    if report.rows:
        # Each row's share is of the matmul peak of its dtype, measured just before it.
        rows = _rows(report.rows, lambda r: [f"{r.images_per_s:,.1f}", f"{r.ms_per_batch:,.1f}", f"{r.gflops:,.1f}",
                                             f"{r.share_of_peak:.0%} of {r.peak_gflops:,.0f}",
                                             f"{r.top1_agreement:.1%} (max |diff| {r.max_abs_diff:.2g})"])
        print_table(["setting", "images/s", "ms/batch", "GFLOP/s", "of matmul peak", "top-1 agreement", "details"], rows,
                    title=f"{report.model}, batch {report.batch} x {size_text}, {_g(report.gmacs_per_image)} GMACs/image; "
                          f"agreement on {report.images}",
                    right=("images/s", "ms/batch", "GFLOP/s", "of matmul peak"), wrap=("details",))
    if report.training:
        rows = _rows(report.training, lambda r: [f"{r.images_per_s:,.1f}", f"{r.ratio_to_plain:.2f}x", f"{r.ms_per_batch:,.1f}",
                                                 f"{r.gflops:,.1f}", f"{r.share_of_peak:.0%} of {r.peak_gflops:,.0f}"])
        print_table(["setting", "images/s", "vs plain", "ms/step", "GFLOP/s", "of matmul peak", "details"], rows,
                    title=f"training {report.model}, batch {report.batch} x {size_text}, {report.train_steps} steps per call, "
                          f"{_g(3 * 2 * report.gmacs_per_image)} GFLOP/image (3x forward); "
                          "'vs plain': the plain loop timed alternately with each row",
                    right=("images/s", "vs plain", "ms/step", "GFLOP/s", "of matmul peak"), wrap=("details",))


def _rows(rows, measured) -> list[list[str]]:
    """Table rows: the setting, ``measured(row)``'s cells (blank for a setting that did not
    run), its details."""
    out = []
    for r in rows:
        cells = measured(r) if r.images_per_s is not None else [""] * 5
        out.append([r.setting, *cells, r.details])
    return out


def _g(value: float) -> str:
    """Three decimals, or two significant digits below 0.01 (LeNet-5: 0.00042 GMACs, not 0.000)."""
    return f"{value:.3f}" if value >= 0.01 else f"{value:.2g}"
