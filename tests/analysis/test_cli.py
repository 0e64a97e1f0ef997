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
