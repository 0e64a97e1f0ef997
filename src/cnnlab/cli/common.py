"""Shared pieces of the `cnnlab` command line: Wiring only: each command calls the library's functions.

Every command turns cnnlab's own errors (bad model, dataset, file, shape) into one line on
stderr and a non-zero exit status, never a traceback.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Callable

import click
from rich.console import Console

from cnnlab.analysis.table import render
from cnnlab.data import SPLITS
from cnnlab.data.image import INVERT_MODES
from cnnlab.training.device import DEVICES
from cnnlab.training.run import WEIGHTS


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="cnnlab")
def cli() -> None:
    """cnnlab: build, inspect, train and understand convolutional networks."""


# --- options whose choices come from the library's constants ------------------------------


def device_option(*, default: str | None = "auto", help: str = "Device to run on (auto: CUDA, else MPS, else CPU).") -> Callable:
    return click.option("--device", type=click.Choice(DEVICES), default=default, show_default=default is not None, help=help)


def split_option(*, default: str = "test", help: str = "Dataset split.") -> Callable:
    return click.option("--split", type=click.Choice(SPLITS), default=default, show_default=True, help=help)


def weights_option(*, default: str = "best", help: str = "The run's best (validation) or last weights.") -> Callable:
    # --checkpoint names a run's own file; --weights, its old spelling, still works here.
    # (`train` and `predict` take --weights SOURCE: a file, URL, run folder or "torchvision".)
    return click.option("--checkpoint", "--weights", "weights", type=click.Choice(WEIGHTS), default=default,
                        show_default=True, help=help)


def weights_source_option(*, help: str = "Weights to use: a .pth/.safetensors path, URL, run folder, or torchvision "
                                          "(the model's default published file).") -> Callable:
    return click.option("--weights", "weights", default=None, metavar="SOURCE", help=help)


def checkpoint_option() -> Callable:
    return click.option("--checkpoint", type=click.Choice(WEIGHTS), default=None,
                        help="A run's best (validation) or last weights.  [default: best]")


def invert_option(*, default: str = "auto",
                  help: str = "Invert grayscale images (auto: when the dataset is light-on-dark and the image is not).") -> Callable:
    return click.option("--invert", type=click.Choice(INVERT_MODES), default=default, show_default=True, help=help)


def out_option(*, help: str = "PNG to write.  [default: see above]") -> Callable:
    return click.option("--out", type=click.Path(dir_okay=False), default=None, help=help)


def data_root_option() -> Callable:
    return click.option("--data-root", type=click.Path(file_okay=False), default=None,
                        help="Data root (else the run's, else $CNNLAB_DATA, else ~/.cache/cnnlab).")


def save_figure(fig, out: str | None, default: Path) -> Path:
    """Write a figure to --out (else ``default``) and say where: every `cnnlab viz` verb ends here."""
    from cnnlab.viz.curves import save_figure as write

    path = write(fig, Path(out) if out else default)
    click.echo(f"wrote {path}")
    return path


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


def print_table(headers: list[str], rows: list[list], fmt: str = "table", *, title: str = "",
                right: tuple[str, ...] = (), wrap: tuple[str, ...] = ()) -> None:
    """Rows on stdout in one of cnnlab.analysis.table.FORMATS (``right``: right-aligned columns;
    ``wrap``: columns whose cells may take several lines, so that the others are not cut)."""
    out = render(headers, rows, fmt, title=title, right=right, wrap=wrap)
    if isinstance(out, str):
        click.echo(out, nl=False)
    else:
        console().print(out)


