"""The one table writer: headers and rows as a rich table, Markdown, CSV or JSON.

Every table cnnlab prints or writes goes through here: the command line's listings
(``cnnlab models``, ``eval``, ``data``, ``conv field``), the per-layer summary
(:mod:`cnnlab.analysis.format`) and the experiments' reports. Cells are shown as ``str(cell)``
in the text formats; JSON keeps numbers as numbers.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Sequence

from rich.table import Table

__all__ = ["FORMATS", "render", "to_csv", "to_json", "to_markdown", "to_rich"]

FORMATS = ("table", "markdown", "csv", "json")  # "table": rich, for a terminal

Rows = Sequence[Sequence[Any]]


def _check(headers: Sequence[str], rows: Rows) -> None:
    for i, row in enumerate(rows):
        if len(row) != len(headers):
            raise ValueError(f"row {i} has {len(row)} cells for {len(headers)} columns ({', '.join(headers)})")


def to_markdown(headers: Sequence[str], rows: Rows, *, right: Sequence[str] = ()) -> str:
    """A GitHub Markdown table; columns named in ``right`` are right-aligned (``---:``).

    A ``|`` inside a cell is escaped so that it cannot split the cell.
    """
    _check(headers, rows)

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    rule = "|" + "|".join("---:" if h in right else "---" for h in headers) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)]) + "\n"


def to_csv(headers: Sequence[str], rows: Rows) -> str:
    """CSV with a header line (``\\n`` line ends, quoting only where a cell needs it)."""
    _check(headers, rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return out.getvalue()


def to_json(headers: Sequence[str], rows: Rows) -> str:
    """A JSON list with one object per row, keyed by the headers."""
    _check(headers, rows)
    return json.dumps([dict(zip(headers, row)) for row in rows], indent=2) + "\n"


def to_rich(
    headers: Sequence[str],
    rows: Rows,
    *,
    title: str = "",
    right: Sequence[str] = (),
    wrap: Sequence[str] = (),
    boxed: bool = True,
) -> Table:
    """A rich table for a terminal.

    ``right``: right-aligned columns (numbers). ``wrap``: columns whose cells may break onto
    several lines; the others stay on one line. ``boxed``: lines around the cells, for a table
    on its own, whose cells are cut with an ellipsis when the terminal is too narrow; False: a
    bare table to sit inside a longer report, whose cells fold rather than lose characters.
    """
    _check(headers, rows)
    options: dict[str, Any] = {} if boxed else {"box": None, "pad_edge": False, "header_style": "bold"}
    table = Table(title=title or None, title_justify="left", **options)
    for h in headers:
        table.add_column(h, justify="right" if h in right else "left", no_wrap=h not in wrap,
                         overflow="ellipsis" if boxed else "fold")
    for row in rows:
        table.add_row(*(str(c) for c in row))
    return table


def render(headers: Sequence[str], rows: Rows, fmt: str, *, title: str = "", right: Sequence[str] = (),
           wrap: Sequence[str] = ()) -> Table | str:
    """``fmt`` one of :data:`FORMATS`: a rich :class:`~rich.table.Table` for "table" (``wrap``:
    columns whose cells may break onto several lines), text otherwise."""
    if fmt == "table":
        return to_rich(headers, rows, title=title, right=right, wrap=wrap)
    if fmt == "markdown":
        return to_markdown(headers, rows, right=right)
    if fmt == "csv":
        return to_csv(headers, rows)
    if fmt == "json":
        return to_json(headers, rows)
    raise ValueError(f"unknown table format {fmt!r}; expected one of {', '.join(FORMATS)}")
