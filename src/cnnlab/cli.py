"""The `cnnlab` command line. Wiring only: each command calls the library's functions.

Every command turns cnnlab's own errors (bad model, dataset, file, shape) into one line on
stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import sys

import click

from cnnlab.errors import CnnlabError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="cnnlab")
def cli() -> None:
    """cnnlab: build, inspect, train and understand convolutional networks."""


# --- models and training (Foundation) ---------------------------------------------------


# --- analysis: summary, conv, chart -------------------------------------------------------


# --- data and evaluation -------------------------------------------------------------------


# --- scratch: NumPy backpropagation --------------------------------------------------------


# --- viz and experiments --------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, printing cnnlab errors as one line."""
    try:
        cli.main(args=argv, prog_name="cnnlab", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except CnnlabError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
