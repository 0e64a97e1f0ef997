"""`cnnlab export`: wiring over cnnlab.training.export."""

from __future__ import annotations

from pathlib import Path

import click

from cnnlab.cli.common import cli
from cnnlab.training.export import DEFAULT_OPSET, OPSETS, check_onnx, export_onnx
from cnnlab.training.inference import load_target, sample_images

FORMATS = ("onnx",)


@cli.command("export")
@click.argument("run_or_model")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="onnx", show_default=True)
@click.option("--out", "-o", "out", required=True, type=click.Path(dir_okay=False), help="File to write, e.g. model.onnx.")
@click.option("--dynamic-batch", is_flag=True, help="Leave the batch dimension free (else it is fixed at 1).")
@click.option("--opset", type=click.IntRange(OPSETS.start, OPSETS.stop - 1), default=DEFAULT_OPSET, show_default=True,
              help="ONNX operator set version.")
@click.option("--check-images", default=32, show_default=True, type=click.IntRange(min=0),
              help="Real test images to compare onnxruntime with PyTorch on (0: no check).")
@click.option("--data-root", type=click.Path(file_okay=False), help="Where the check images are (else $CNNLAB_DATA).")
def export_cmd(run_or_model: str, fmt: str, out: str, dynamic_batch: bool, opset: int, check_images: int,
               data_root: str | None) -> None:
    """Write RUN_OR_MODEL (a run folder, or a registered model name) as an ONNX file, then check
    it with onnxruntime: max |logit difference| and top-1 agreement with PyTorch (a --dynamic-batch
    file at two batch sizes: all the check images at once, then one at a time)."""
    target = load_target(run_or_model)
    path = export_onnx(target.model, Path(out), input_size=target.input_size, dynamic_batch=dynamic_batch,
                       opset=opset, metadata=target.metadata())
    batch = "dynamic" if dynamic_batch else "1"
    size = "x".join(map(str, target.input_size))
    megabytes = path.stat().st_size / 1e6
    click.echo(f"wrote {path} ({megabytes:.1f} MB): {target.label}, input (batch {batch}) x {size}, opset {opset}")
    if check_images:
        images, source = sample_images(target.input_size, check_images, mean=target.mean, std=target.std, root=data_root)
        click.echo(f"onnxruntime vs PyTorch on {source}: {check_onnx(path, target.model, images).describe()}")
