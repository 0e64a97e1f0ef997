"""`cnnlab eval` and `cnnlab predict`: wiring over cnnlab.training."""

from __future__ import annotations

import os
from pathlib import Path

import click

from cnnlab.cli.common import (
    checkpoint_option,
    cli,
    console,
    device_option,
    invert_option,
    print_table,
    split_option,
    weights_source_option,
)
from cnnlab.data.tta import TTA_MODES
from cnnlab.training.evaluate import confusion_rows, evaluate_members, evaluate_weights, per_class_rows
from cnnlab.training.predict import predict_images
from cnnlab.errors import CnnlabError
from cnnlab.training.run import WEIGHTS, Run


def check_writable_file(path: Path) -> None:
    """An output file's folder must exist and be writable, and the path not be a folder."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise CnnlabError(f"cannot write {path}: it is a folder")
    if not folder.is_dir():
        raise CnnlabError(f"cannot write {path}: no folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CnnlabError(f"cannot write {path}: folder {folder} is not writable")


def eval_target(runs: tuple[str, ...], weights: str | None) -> str | None:
    """The registered model ``cnnlab eval`` scores with ``--weights``, or None for run folders.
    A model is one name that is no path (a registered name has no slash) and either is
    registered or comes with weights that are no run's best|last."""
    from cnnlab.models import list_models

    if len(runs) != 1 or Path(runs[0]).exists() or "/" in runs[0] or os.sep in runs[0]:
        return None
    if runs[0] in list_models() or (weights is not None and weights not in WEIGHTS):
        return runs[0]
    return None


@cli.command("eval")
@click.argument("runs", nargs=-1, required=True, type=click.Path(), metavar="RUN...|MODEL")
@click.option("--data", "-d", default=None, help="Dataset (default: the run's own; a MODEL needs one).")
@split_option()
@click.option("--data-root", type=click.Path(file_okay=False))
@device_option()
@click.option("--batch-size", default=500, type=click.IntRange(min=1), show_default=True)
@click.option("--tta", default="none", show_default=True, type=click.Choice(TTA_MODES),
              help="Test-time augmentation: average softmax over mirrors, or AlexNet's 10 crops at the model's input size.")
@weights_source_option(help="A MODEL's weights (a .pth/.safetensors path, URL, run folder, or torchvision), fed with "
                            "their own preprocessing; 1000-class weights are scored over the dataset's ImageNet classes (by wnid).")
@checkpoint_option()
@click.option("--per-class", is_flag=True, help="Also print per-class accuracy and the confusion table.")
@click.option("--confusion", "confusion_png", type=click.Path(dir_okay=False), default=None,
              help="Write the confusion matrix heat map (of the ensemble, or the only run) to this PNG.")
@click.option("--stream/--no-stream", default=None,
              help="Decode the images file by file in worker processes (--no-stream: all in memory).  "
                   "[default: streamed when the split does not fit the run's memory budget or the run was trained streamed]")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Streaming: image-decoding worker processes.  [default: half the cores, 1 to 8]")
def eval_cmd(runs, data, split, data_root, device, batch_size, tta, weights, checkpoint, per_class, confusion_png,
             stream, workers) -> None:
    """Top-1/top-5 error of one run, of several runs and their ensemble (averaged probabilities),
    or of a registered MODEL with --weights on an image-folder dataset (--data)."""
    if confusion_png:
        check_writable_file(Path(confusion_png))  # before minutes of evaluation, not after
    model = eval_target(runs, weights)
    title = f"{split} split" + (f", TTA {tta}" if tta != "none" else "")
    if model is not None:
        if weights is None:
            raise CnnlabError(f"model {model} has no trained weights; give --weights (a file, URL, run folder or torchvision)")
        if checkpoint is not None:
            raise CnnlabError(f"--checkpoint {checkpoint} picks a run folder's file; {model} is not a run folder")
        if data is None:
            raise CnnlabError(f"eval {model} --weights {weights} needs --data: the image-folder dataset to score it on")
        got = evaluate_weights(model, weights, data=data, split=split, data_root=data_root, device=device,
                               batch_size=batch_size, tta=tta, workers=workers)
        click.echo(f"{got.member.name}: preprocessing from {got.preprocessing}", err=True)
        members, first, title = [got.member], "model", f"{title}, {got.scoring}"
    else:
        if weights is not None and weights not in WEIGHTS:
            raise CnnlabError(f"--weights {weights} scores a registered MODEL (cnnlab eval MODEL --weights SOURCE --data DATA); "
                              "a run folder's own file is --checkpoint best|last")
        members = evaluate_members(list(runs), data=data, split=split, data_root=data_root, device=device,
                                   batch_size=batch_size, tta=tta, weights=checkpoint or weights or "best",
                                   stream=stream, workers=workers, progress=True)
        first = "run"
    report = [(m.name, m.result) for m in members]
    rows = [[name, f"{r.top1_err:.2%}", f"{r.top5_err:.2%}", f"{r.loss:.4f}", f"{r.num_images:,}"] for name, r in report]
    print_table([first, "top-1 error", "top-5 error", "loss", "images"], rows, "table", title=title)
    classes = members[0].classes
    if per_class:
        headers, rows = per_class_rows(classes, report)
        print_table(headers, rows, "table", title="per-class accuracy")
        headers, rows = confusion_rows(classes, report[-1][1].confusion)
        print_table(headers, rows, "table", title=f"confusion matrix of {report[-1][0]} (rows: true class)")
    if confusion_png:
        from cnnlab.viz.confusion import plot_confusion
        from cnnlab.viz.curves import save_figure

        name = report[-1][0] if len(report) > 1 else Path(report[0][0]).name
        fig = plot_confusion(report[-1][1].confusion, classes, title=name)
        save_figure(fig, confusion_png)
        click.echo(f"wrote {confusion_png}")


@cli.command()
@click.argument("run", metavar="RUN|MODEL|FILE.onnx", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--top", "-k", default=5, type=click.IntRange(min=1), show_default=True, help="Classes to show per image.")
@invert_option()
@weights_source_option(help="A MODEL's weights (a .pth/.safetensors path, URL, run folder, or torchvision), fed "
                            "with their own preprocessing; for a RUN, weights to load instead of its own (best/last: --checkpoint).")
@checkpoint_option()
def predict(run, images, top, invert, weights, checkpoint) -> None:
    """Classify image files (PNG, JPEG, ...) with a trained run, a registered model with --weights,
    or an ONNX file (onnxruntime); prints the top classes."""
    from cnnlab.training.predict import open_predictor, predict_with

    loaded = open_predictor(run, weights=weights, checkpoint=checkpoint)
    paths = [Path(i) for i in images]
    if isinstance(loaded, Run):
        predictions = predict_images(loaded, paths, k=top, invert=invert)
    else:
        click.echo(f"{loaded.label}: preprocessing from {loaded.note}", err=True)
        predictions = predict_with(loaded, paths, k=top, invert=invert)
    out = console()
    for p in predictions:
        if p.mismatch:
            click.echo(f"warning: {p.path}: {p.mismatch}", err=True)
        out.print(f"[bold]{p.path}[/bold]")
        for name, prob in p.top:
            bar = "█" * round(prob * 30)
            out.print(f"  {name:>12}  {prob:7.2%}  {bar}")


