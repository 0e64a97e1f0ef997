"""The one table writer: the same rows as Markdown, CSV, JSON and a rich table."""

from __future__ import annotations

import csv
import io
import json

import pytest
from rich.console import Console

from cnnlab.analysis.table import FORMATS, render, to_csv, to_json, to_markdown, to_rich

HEADERS = ["model", "parameters", "paper"]
ROWS = [["lenet5", "61,706", "LeCun et al. 1998"], ["odd|name", 7, "a, b"]]


def test_markdown_aligns_named_columns_right_and_escapes_pipes():
    text = to_markdown(HEADERS, ROWS, right=("parameters",))
    assert text.splitlines() == [
        "| model | parameters | paper |",
        "|---|---:|---|",
        "| lenet5 | 61,706 | LeCun et al. 1998 |",
        "| odd\\|name | 7 | a, b |",
    ]
    assert text.endswith("\n")


def test_csv_round_trips_including_commas():
    rows = list(csv.reader(io.StringIO(to_csv(HEADERS, ROWS))))
    assert rows == [HEADERS, ["lenet5", "61,706", "LeCun et al. 1998"], ["odd|name", "7", "a, b"]]


def test_json_is_one_object_per_row_keeping_numbers():
    assert json.loads(to_json(HEADERS, ROWS)) == [
        {"model": "lenet5", "parameters": "61,706", "paper": "LeCun et al. 1998"},
        {"model": "odd|name", "parameters": 7, "paper": "a, b"},
    ]


def _text(table) -> str:
    console = Console(width=120, file=io.StringIO(), color_system=None)
    console.print(table)
    return console.file.getvalue()


def test_rich_table_has_title_cells_and_alignment():
    table = to_rich(HEADERS, ROWS, title="2 models", right=("parameters",))
    assert [c.justify for c in table.columns] == ["left", "right", "left"]
    text = _text(table)
    assert text.startswith("2 models") and "61,706" in text and "odd|name" in text
    bare = to_rich(HEADERS, ROWS, boxed=False, wrap=("paper",))
    assert bare.box is None and [c.no_wrap for c in bare.columns] == [True, True, False]


def test_render_dispatches_and_rejects_unknown_formats():
    assert FORMATS == ("table", "markdown", "csv", "json")
    assert render(HEADERS, ROWS, "markdown") == to_markdown(HEADERS, ROWS)
    assert render(HEADERS, ROWS, "csv") == to_csv(HEADERS, ROWS)
    assert render(HEADERS, ROWS, "json") == to_json(HEADERS, ROWS)
    assert render(HEADERS, ROWS, "table").row_count == 2
    with pytest.raises(ValueError, match="unknown table format 'html'; expected one of table, markdown, csv, json"):
        render(HEADERS, ROWS, "html")


def test_a_short_row_is_an_error_naming_it():
    with pytest.raises(ValueError, match="row 1 has 2 cells for 3 columns"):
        to_markdown(HEADERS, [ROWS[0], ["x", "y"]])
