"""Shared pieces of the `cnnlab` command line: Wiring only: each command calls the library's functions.

Every command turns cnnlab's own errors (bad model, dataset, file, shape) into one line on
stderr and a non-zero exit status, never a traceback.
"""
from __future__ import annotations

import ast
import sys

import click
from rich.console import Console
from rich.table import Table


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="cnnlab")
def cli() -> None:
    """cnnlab: build, inspect, train and understand convolutional networks."""


# --- models and training (Foundation) ---------------------------------------------------


def parse_options(pairs: tuple[str, ...]) -> dict:
    """``-o key=value`` pairs; values are Python literals (3, 0.5, True, (64, 32)) or strings."""
    options = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"expected key=value, got {pair!r}", param_hint="-o/--option")
        key, text = pair.split("=", 1)
        try:
            options[key.strip()] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[key.strip()] = text
    return options


def console() -> Console:
    # Piped output (a file, `less`) gets wide lines rather than rich's 80-column default.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)



def print_rows(headers: list[str], rows: list[list[str]], fmt: str, *, title: str = "") -> None:
    if fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(rows)
        return
    if fmt == "markdown":
        click.echo("| " + " | ".join(headers) + " |")
        click.echo("|" + "|".join("---" for _ in headers) + "|")
        for row in rows:
            click.echo("| " + " | ".join(row) + " |")
        return
    table = Table(title=title, title_justify="left")
    for h in headers:
        numeric = h in ("parameters", "GMACs", "top-1 %")
        table.add_column(h, justify="right" if numeric else "left", no_wrap=True, overflow="ellipsis")
    for row in rows:
        table.add_row(*row)
    console().print(table)


