"""`cnnlab models`: wiring over the model registry."""

from __future__ import annotations

import re

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from cnnlab.cli.common import cli, print_rows
from cnnlab.errors import CnnlabError


@cli.command()
@click.argument("pattern", default="*")
@click.option("--macs/--no-macs", default=True, help="Count MACs at each model's input size (meta device, no weights).")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "csv"]), default="table")
def models(pattern: str, macs: bool, fmt: str) -> None:
    """List registered models matching PATTERN (shell-style: 'resnet*') with parameters and MACs."""
    from cnnlab.models import get_model_info, list_models

    names = list_models(pattern)
    if not names:
        raise CnnlabError(f"no model matches {pattern!r}; run `cnnlab models` to list all")
    rows = []
    with Progress(TextColumn("counting {task.fields[name]}"), BarColumn(), MofNCompleteColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("models", total=len(names), name="")
        for name in names:
            progress.update(task, name=name)
            info = get_model_info(name)
            params, gmacs = _count(name, info.input_size, macs)
            top1 = f"{info.reported.top1:.1f}" if info.reported and info.reported.top1 else ""
            dataset = info.reported.dataset if info.reported else ""
            # In a table, the paper's authors and year; the full title in markdown and CSV.
            paper = _short_citation(info.paper) if fmt == "table" else info.paper
            params_text = str(params) if fmt == "csv" else f"{params:,}"
            rows.append([name, info.family, params_text, gmacs, "x".join(map(str, info.input_size)), top1, dataset, paper])
            progress.advance(task)
    headers = ["model", "family", "parameters", "GMACs", "input", "top-1 %", "on", "paper"]
    print_rows(headers, rows, fmt, title=f"{len(rows)} models (GMACs at the input size; top-1 as reported)")



def _short_citation(paper: str) -> str:
    """'He, Zhang, Ren, Sun 2016, Deep residual ...' -> 'He et al. 2016'."""
    match = re.match(r"^(.*?)\b((?:19|20)\d\d)\b", paper)
    if not match:
        return paper.split(",")[0]
    authors = [a.strip() for a in re.split(r",|&|\band\b", match.group(1)) if a.strip()]
    if len(authors) > 2:
        return f"{authors[0]} et al. {match.group(2)}"
    return f"{' & '.join(authors)} {match.group(2)}"


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
