"""The analysis commands, through click's test runner."""

import json

from click.testing import CliRunner

from cnnlab.cli import cli


def run(*args):
    result = CliRunner().invoke(cli, list(args))
    return result


def test_summary_table():
    r = run("summary", "lenet5")
    assert r.exit_code == 0, r.output
    assert "features.c1" in r.output and "61,706" in r.output and "FLOPs = 2 x MACs" in r.output


def test_summary_json_with_video_and_options():
    r = run("summary", "lenet5", "--format", "json", "--video", "1920x1080@30", "--batch-size", "4", "--dtype", "bfloat16")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["dtype"] == "bfloat16" and data["training_memory"]["batch_size"] == 4
    assert data["video"]["fps"] == 30


def test_summary_markdown_csv_depth_and_input():
    assert "| layer |" in run("summary", "lenet5", "--format", "markdown").output
    csv_out = run("summary", "resnet18", "--input", "3x64x64", "--depth", "1", "--format", "csv").output
    assert csv_out.splitlines()[0].startswith("name,type") and "layer4,Sequential" in csv_out


def test_summary_errors_are_one_line():
    r = run("summary", "lenet5", "--input", "3x32x32")
    assert r.exit_code != 0 and "lenet5 cannot run on input 3x32x32" in r.output
    r = run("summary", "lenet5", "--video", "fast")
    assert r.exit_code != 0 and "WIDTHxHEIGHT@FPS" in r.output


def test_conv_layer_explains():
    r = run("conv", "layer", "33x33x5", "--filters", "10", "--kernel", "3", "--stride", "2")
    assert r.exit_code == 0, r.output
    assert "16x16x10" in r.output and "= 460" in r.output
    r = run("conv", "layer", "32x32x3", "-k", "10", "-f", "5", "-p", "same")
    assert "32x32x10" in r.output and "= 760" in r.output


def test_conv_pool_and_field():
    r = run("conv", "pool", "1 1 2 4; 5 6 7 8; 3 2 1 0; 1 2 3 4")
    assert r.exit_code == 0, r.output
    assert r.output.rstrip().splitlines()[-2:] == ["  6 8", "  3 4"]
    r = run("conv", "field", "3", "3", "3")
    assert r.exit_code == 0, r.output
    assert "1 + 3*(3 - 1) = 7" in r.output
    assert run("conv", "field", "3q").exit_code != 0


def test_chart_writes_a_png(tmp_path):
    out = tmp_path / "chart.png"
    r = run("chart", "accuracy-vs-compute", "--models", "vgg1[16]", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:4] == b"\x89PNG" and "2 models" in r.output
    assert run("chart", "accuracy-vs-compute", "--models", "nothing*").exit_code != 0


# --- the printed numbers are the library's ----------------------------------------------------
def test_summary_csv_rows_are_the_summary_rows():
    import csv
    import io

    from cnnlab.analysis import summary

    s = summary("resnet18", (3, 64, 64), depth=2)
    r = run("summary", "resnet18", "--input", "3x64x64", "--depth", "2", "--format", "csv")
    assert r.exit_code == 0, r.output
    printed = list(csv.DictReader(io.StringIO(r.output)))
    assert [p["name"] for p in printed] == [row.name for row in s.rows]
    for p, row in zip(printed, s.rows):
        assert (int(p["params"]), int(p["macs"]), int(p["other_ops"]), int(p["activations"])) == (
            row.params, row.macs, row.other_ops, row.activations)
        assert p["receptive_field"] == (row.field.describe() if row.field else "-")
    assert sum(int(p["macs"]) for p in printed) == s.macs


def test_summary_table_totals_and_json_equal_the_library():
    from cnnlab.analysis import summary, video_compute
    from cnnlab.analysis.format import summary_dict

    s = summary("lenet5")
    table = run("summary", "lenet5").output
    assert f"{s.total_params:,} total, {s.trainable_params:,} trainable" in table
    assert f"{s.macs:,} = " in table and f"{s.other_ops:,} = " in table
    for row in s.rows:  # each layer's MACs on the line that names it
        (line,) = [ln for ln in table.splitlines() if ln.startswith(row.name + " ")]
        assert f"{row.macs:,}" in line and f"{row.params:,}" in line
    printed = json.loads(run("summary", "lenet5", "--format", "json", "--video", "640x480@25").output)
    assert printed == json.loads(json.dumps(summary_dict(s, video_compute(s, "640x480@25"))))


def test_conv_layer_and_pool_print_the_library_numbers():
    from cnnlab.analysis import conv_layer, pool2d

    layer = conv_layer((33, 33, 5), 10, 3, stride=2)
    out = run("conv", "layer", "33x33x5", "-k", "10", "-f", "3", "-s", "2").output
    assert out.splitlines() == layer.explain()
    assert f"parameters: each filter has 3*3*5 = 45 weights + 1 bias; 10 filters x 46 = {layer.params:,}" in out
    result = pool2d([[1, 3], [2, 4]], 2, mode="avg")
    out = run("conv", "pool", "1 3; 2 4", "--mode", "avg").output.splitlines()
    assert out == ["input:", "  1 3", "  2 4", *result.explain(), "output:", "  2.5"]


def test_conv_field_table_is_the_stack_working():
    from cnnlab.analysis import stack_working

    working = stack_working(["3", "3", "2s2", "3p1"])
    out = run("conv", "field", "3", "3", "2s2", "3p1").output
    for cells in working.rows():  # one printed line per layer, cell by cell
        (line,) = [ln for ln in out.splitlines() if ln.rstrip().endswith(cells[-1])]
        assert line.split() == [token for cell in cells for token in cell.split()]
    assert working.closed_form() is None and "closed form" not in out


def test_chart_counts_the_library_points(tmp_path):
    from cnnlab.analysis.chart import accuracy_vs_compute_points
    from cnnlab.models import list_models

    points = accuracy_vs_compute_points(list_models("resnet*"))
    r = run("chart", "accuracy-vs-compute", "--models", "resnet*", "--out", str(tmp_path / "c.png"))
    assert r.exit_code == 0, r.output
    assert r.output.strip() == f"wrote {tmp_path / 'c.png'} ({len(points)} models)" and len(points) >= 3
