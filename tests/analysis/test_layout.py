"""The analysis package's own pieces: the op rules, the receptive-field rules, the stack
working of ``cnnlab conv field``, and the import graph (no module imports one that imports it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import cnnlab.analysis
from cnnlab.analysis import ops
from cnnlab.analysis.conv_arith import parse_matrix
from cnnlab.analysis.receptive_field import Field, field_after, stack_working

aten = torch.ops.aten


def _call(func, *args, **kwargs) -> ops.OpCall:
    return ops.OpCall(func, args, kwargs, func(*args, **kwargs))


def test_op_rules_for_a_convolution_a_product_and_an_op_without_a_rule():
    x, w = torch.randn(1, 2, 5, 5), torch.randn(4, 2, 3, 3)
    conv = _call(aten.convolution.default, x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)
    assert ops.macs(conv, is_activation=lambda t: t is x) == ("conv", 4 * 3 * 3 * 2 * 3 * 3)
    assert ops.other_ops(conv) == ("", 0)
    a, b = torch.randn(3, 4), torch.randn(4, 5)
    mm = _call(aten.mm.default, a, b)
    assert ops.macs(mm, is_activation=lambda t: True) == ("matmul", 3 * 4 * 5)
    assert ops.macs(mm, is_activation=lambda t: t is a) == ("linear", 3 * 4 * 5)
    relu = _call(aten.relu.default, a)
    assert ops.other_ops(relu) == ("pointwise", 12)
    # cumsum computes but has no counting rule: None, so the tracer lists it as uncounted
    assert ops.other_ops(_call(aten.cumsum.default, a, 0)) is None


def test_op_call_reads_arguments_by_schema_name_with_defaults():
    x = torch.randn(1, 1, 4, 4)
    pool = _call(aten.max_pool2d.default, x, [2, 2])
    assert pool.arg("kernel_size") == [2, 2] and pool.arg("stride") == [] and pool.arg("dilation") == [1, 1]
    assert pool.arg("no_such_argument") is None and pool.inputs == [x]


def test_field_after_a_strided_convolution_and_a_global_mean():
    x, w = torch.randn(1, 1, 8, 8), torch.randn(1, 1, 3, 3)
    conv = _call(aten.convolution.default, x, w, None, [2, 2], [1, 1], [1, 1], False, [0, 0], 1)
    start = Field.of_input((8, 8))
    f = field_after(conv, [start], image=(8, 8), batch=1, is_activation=lambda t: t is x)
    assert (f.size, f.jump, f.start, f.grid) == ((3, 3), (2, 2), (0.0, 0.0), (4, 4))
    mean = _call(aten.mean.dim, conv.out, [2, 3])
    g = field_after(mean, [f], image=(8, 8), batch=1, is_activation=lambda t: True)
    assert g.is_global and g.describe() == "global"


def test_stack_working_rows_and_closed_form():
    working = stack_working(["3", "3", "3"])
    assert working.rows()[-1] == ["3", "3x3", "7", "1", "3", "5 + (3 - 1) * 1 * 1 = 7"]
    assert working.closed_form() == "closed form for 3 stacked 3x3 stride-1 layers: 1 + L(n - 1) = 1 + 3*(3 - 1) = 7"
    vgg = stack_working(["3", "3", "2s2", "3"])
    assert [r[2] for r in vgg.rows()] == ["3", "5", "6", "10"] and vgg.closed_form() is None
    with pytest.raises(ValueError, match="bad layer '3q'"):
        stack_working(["3q"])
    with pytest.raises(ValueError, match="at least one layer"):
        stack_working([])


def test_parse_matrix():
    assert parse_matrix("1 1 2; 5,6 7") == [[1.0, 1.0, 2.0], [5.0, 6.0, 7.0]]
    assert parse_matrix("[[1, 2], [3, 4]]") == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(ValueError, match="bad matrix '1 x'"):
        parse_matrix("1 x")


def _imports(path: Path) -> set[str]:
    """The cnnlab.analysis modules ``path`` imports, at run time or for type checking."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cnnlab.analysis"):
            names = [node.module] if node.module != "cnnlab.analysis" else [f"cnnlab.analysis.{a.name}" for a in node.names]
            found.update(names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("cnnlab.analysis."))
    return found


def test_no_import_cycle_inside_analysis():
    folder = Path(cnnlab.analysis.__file__).parent
    graph = {f"cnnlab.analysis.{p.stem}": _imports(p) for p in folder.glob("*.py") if p.stem != "__init__"}
    assert "cnnlab.analysis.summarize" not in graph["cnnlab.analysis.format"]
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join(path + (module,))}"
        if module in done or module not in graph:
            return
        for other in graph[module]:
            visit(other, path + (module,))
        done.add(module)

    for module in graph:
        visit(module, ())


def test_summary_is_importable_from_the_top_level():
    import cnnlab

    assert "summary" in cnnlab.__all__
    s = cnnlab.summary("lenet5", (1, 32, 32))
    assert (s.total_params, s.macs) == (61_706, 416_520)  # cnnlab's lenet5 (C3 fully connected)
