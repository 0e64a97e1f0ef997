"""The `cnnlab` command line: one small module per verb group, each wiring over library functions.

Every command turns cnnlab's own errors (bad model, dataset, file, shape) into one line on
stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import sys
import warnings

import click

from cnnlab.cli import (  # noqa: F401  (register verbs)
    analysis,
    bench,
    data,
    evaluate,
    experiment,
    explain,
    export,
    figures,
    models,
    scratch,
    serve,
    train,
    viz,
)
from cnnlab.cli.common import cli
from cnnlab.errors import CnnlabError
from cnnlab.training.distributed import exit_worker, launched_by_torchrun


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, printing cnnlab errors, usage errors, file-system errors and
    warnings as one line each (``error: ...`` then a non-zero exit; ``warning: ...``).

    A torchrun worker (``cnnlab train --nproc N``, ``torchrun -m cnnlab``) ends through
    ``exit_worker``, skipping the interpreter's shutdown (see there why)."""
    if not launched_by_torchrun():
        _main(argv)
        return
    try:
        _main(argv)
    except SystemExit as e:
        exit_worker(e.code)
    exit_worker(0)


def _main(argv: list[str] | None) -> None:
    warnings.showwarning = _one_line_warning
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        # obj: the raw arguments, for `cnnlab train --nproc N` to hand its workers (H1).
        cli.main(args=argv, prog_name="cnnlab", standalone_mode=False, obj={"argv": argv})
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as e:
        where = f"; see `{e.ctx.command_path} --help`" if e.ctx is not None else ""
        click.echo(f"error: {_first_line(e.format_message())}{where}", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.echo(f"error: {_first_line(e.format_message())}", err=True)
        sys.exit(e.exit_code)
    except CnnlabError as e:
        click.echo(f"error: {_first_line(str(e))}", err=True)
        sys.exit(1)
    except OSError as e:  # a path the user gave that cannot be read or written
        what = f"{e.strerror}: {e.filename}" if e.strerror and e.filename else _first_line(str(e))
        click.echo(f"error: {what}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else text


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # A library's warning (Python prints two lines: location and source) as one line.
    click.echo(f"warning: {_first_line(str(message))}", err=True)
