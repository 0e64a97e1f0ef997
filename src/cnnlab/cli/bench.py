"""`cnnlab bench`: wiring over cnnlab.training.bench."""

from __future__ import annotations

import json

import click
import torch

from cnnlab.cli.common import cli, print_table
from cnnlab.errors import CnnlabError
from cnnlab.training.bench import SETTINGS, bench


@cli.command("bench")
@click.argument("run_or_model")
@click.option("--batch", default=32, show_default=True, type=click.IntRange(min=1), help="Images per call.")
@click.option("--size", type=click.IntRange(min=1), default=None, help="Input height = width (default: the model's).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads (default: torch's).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, ...")
@click.option("--setting", "only", multiple=True, type=click.Choice([s.name for s in SETTINGS]),
              help="Measure only these settings (repeatable; default: all).")
@click.option("--images", default=64, show_default=True, type=click.IntRange(min=1),
              help="Real test images for the top-1 agreement check.")
@click.option("--min-time", default=2.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds of timed calls per setting.")
@click.option("--data-root", type=click.Path(file_okay=False), help="Where the test images are (else $CNNLAB_DATA).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def bench_cmd(run_or_model, batch, size, threads, device, only, images, min_time, data_root, as_json) -> None:
    """Inference images/s of RUN_OR_MODEL: eager fp32, cnnlab's inference path, onnxruntime;
    top-1 agreement with eager fp32 on real images; GFLOP/s against the measured matmul peak."""
    if threads:
        torch.set_num_threads(threads)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CnnlabError(f"device {device!r} asked for, but CUDA is not available")
    settings = tuple(s for s in SETTINGS if not only or s.name in only)
    report = bench(run_or_model, batch=batch, size=size, device=device, settings=settings, images=images,
                   min_time=min_time, data_root=data_root)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    peaks = ", ".join(f"{dtype} {gflops:,.0f}" for dtype, gflops in report.peak_gflops.items())
    click.echo(f"{report.machine} ({' '.join(report.flags) or 'no AVX-512/AMX'}), {report.threads} threads, "
               f"load average {report.load_average:.1f}; matmul peak GFLOP/s: {peaks}")
    rows = []  # each row's share is of the matmul peak of its dtype, measured just before it
    for r in report.rows:
        if r.images_per_s is None:
            rows.append([r.setting, "", "", "", "", "", r.details])
            continue
        rows.append([r.setting, f"{r.images_per_s:,.1f}", f"{r.ms_per_batch:,.1f}", f"{r.gflops:,.1f}",
                     f"{r.share_of_peak:.0%} of {r.peak_gflops:,.0f}", f"{r.top1_agreement:.1%} (max |diff| {r.max_abs_diff:.2g})", r.details])
    size_text = "x".join(map(str, report.input_size))
    print_table(["setting", "images/s", "ms/batch", "GFLOP/s", "of matmul peak", "top-1 agreement", "details"], rows,
                title=f"{report.model}, batch {report.batch} x {size_text}, {report.gmacs_per_image:.3f} GMACs/image; "
                      f"agreement on {report.images}",
                right=("images/s", "ms/batch", "GFLOP/s", "of matmul peak"))
