"""`cnnlab models`: wiring over the model registry."""

from __future__ import annotations

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from cnnlab.cli.common import cli, print_table
from cnnlab.errors import CnnlabError


@cli.command()
@click.argument("pattern", default="*")
@click.option("--macs/--no-macs", default=True, help="Count MACs at each model's input size (meta device, no weights).")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "csv"]), default="table")
@click.option("--weights", "weights", is_flag=True,
              help="List the published weight files that fit the models (file, top-1, preprocessing) instead.")
def models(pattern: str, macs: bool, fmt: str, weights: bool) -> None:
    """List registered models matching PATTERN (shell-style: 'resnet*') with parameters and MACs."""
    from cnnlab.models import get_model_info, list_models

    names = list_models(pattern)
    if not names:
        raise CnnlabError(f"no model matches {pattern!r}; run `cnnlab models` to list all")
    if weights:
        _weights_table(names, fmt)
        return
    rows = []
    with Progress(TextColumn("counting {task.fields[name]}"), BarColumn(), MofNCompleteColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("models", total=len(names), name="")
        for name in names:
            progress.update(task, name=name)
            info = get_model_info(name)
            params, gmacs = _count(name, info.input_size, macs)
            top1 = f"{info.reported.top1:.1f}" if info.reported and info.reported.top1 is not None else ""
            dataset = info.reported.dataset if top1 else ""
            # In a table, the paper's authors and year; the full title in markdown and CSV.
            paper = info.short_paper if fmt == "table" else info.paper
            params_text = str(params) if fmt == "csv" else f"{params:,}"
            rows.append([name, info.family, params_text, gmacs, "x".join(map(str, info.input_size)), top1, dataset, paper])
            progress.advance(task)
    headers = ["model", "family", "parameters", "GMACs", "input", "top-1 %", "on", "paper"]
    print_table(headers, rows, fmt, title=f"{len(rows)} models (GMACs at the input size; top-1 as reported)",
                right=("parameters", "GMACs", "top-1 %"))
    # Other builds' exact counts (GoogLeNet without its training-only auxiliary heads) as notes
    # under the table; CSV stays one header and one row per model.
    notes = [_variant_note(get_model_info(name)) for name in names if get_model_info(name).params_variants]
    if notes and fmt != "csv":
        click.echo()
        for note in notes:
            click.echo(f"- {note}" if fmt == "markdown" else note)


def _variant_note(info) -> str:
    """'googlenet: 13,378,280 parameters by default; 6,998,552 without ... (aux_logits=False); ...'"""
    parts = [f"{info.name}: {info.params:,} parameters by default"]
    for v in info.params_variants:
        options = ", ".join(f"{k}={value!r}" for k, value in v.options.items())
        source = f"; {v.source}" if v.source else ""
        parts.append(f"{v.count:,} {v.note} ({options}{source})")
    return "; ".join(parts)


def _count(name: str, input_size, with_macs: bool) -> tuple[int, str]:
    import torch

    from cnnlab.models import create_model

    try:
        from cnnlab.analysis import profile
    except ImportError:
        profile = None
    if with_macs and profile is not None:
        params, macs = profile(name, input_size)
        return params, f"{macs / 1e9:.3f}"
    with torch.device("meta"):
        model = create_model(name)
    return sum(p.numel() for p in model.parameters()), ""


def preprocess_text(pre) -> str:
    """'232 -> 224 bilinear, ImageNet mean/std' (other statistics written out)."""
    from cnnlab.models.weight_files import IMAGENET_MEAN, IMAGENET_STD

    def triple(v):
        return "/".join(f"{x:g}" for x in v)

    stats = ("ImageNet mean/std" if (tuple(pre.mean), tuple(pre.std)) == (IMAGENET_MEAN, IMAGENET_STD)
             else f"mean {triple(pre.mean)}, std {triple(pre.std)}")
    return f"{pre.resize} -> {pre.crop} {pre.interpolation}, {stats}"


def _weights_table(names: list[str], fmt: str) -> None:
    from cnnlab.models import get_model_info

    rows = []
    for name in names:
        for f in get_model_info(name).weights:
            options = ", ".join(f"{k}={v!r}" for k, v in f.options.items())
            rows.append([name, f.tag + (" *" if f.default else ""), f.file_name, f"{f.top1:.3f}", f"{f.top5:.3f}",
                         preprocess_text(f.preprocess), options])
    if not rows:
        raise CnnlabError(f"no published weight files fit {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}; "
                          "`cnnlab models --weights` lists the models that have some")
    headers = ["model", "weights", "file", "top-1 %", "top-5 %", "resize -> crop", "builder options"]
    print_table(headers, rows, fmt, title=f"{len(rows)} weight files (torchvision 0.28; * = the default, what --weights torchvision picks)",
                right=("top-1 %", "top-5 %"))
