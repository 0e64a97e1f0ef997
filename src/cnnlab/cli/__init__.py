"""The `cnnlab` command line: one small module per verb group, each wiring over library functions.

Every command turns cnnlab's own errors (bad model, dataset, file, shape) into one line on
stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import sys

import click

from cnnlab.cli import analysis, data, evaluate, experiment, explain, models, scratch, serve, train, viz  # noqa: F401  (register verbs)
from cnnlab.cli.common import cli
from cnnlab.errors import CnnlabError


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
