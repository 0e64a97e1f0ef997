"""Experiments: the registry and CLI listing, the report writer, and the helpers each
experiment is built from. Running an experiment for real is in test_quick_runs.py (slow),
except receptive-field, which trains nothing and takes seconds."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from cnnlab.analysis.table import to_markdown
from cnnlab.cli import cli
from cnnlab.data import DatasetSpec, load_dataset, register_dataset
from cnnlab.errors import UnknownNameError
from cnnlab.experiments import (
    EXPERIMENTS,
    Settings,
    get_experiment,
    list_experiments,
    run_experiment,
)
from cnnlab.experiments.common import (
    Outcome,
    Verdict,
    derived_dataset,
    mean_sd,
    register_experiment,
)
from cnnlab.experiments.digit_augmentation import RandomRotate180
from cnnlab.experiments.permuted_pixels import permute_pixels, pixel_permutation
from cnnlab.experiments.receptive_field import (
    centre_gradient,
    conv_stack,
    nonzero_extent,
    power_law_fit,
    profile_sigma,
)
from cnnlab.viz.experiment_plots import plot_seeded_bars

NAMES = ["degradation", "degradation-full", "digit-augmentation", "ensemble", "hog-vs-cnn", "permuted-pixels", "receptive-field", "weight-decay"]


def test_all_experiments_are_registered():
    assert list_experiments() == NAMES


def test_cli_lists_the_experiments():
    result = CliRunner().invoke(cli, ["experiment"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name in NAMES:
        assert name in result.output


def test_unknown_experiment_suggests_a_name():
    with pytest.raises(UnknownNameError, match="did you mean permuted-pixels"):
        get_experiment("permuted-pixel")


def test_report_writer(tmp_path):
    def fake(settings: Settings) -> Outcome:
        measured = 0.25
        return Outcome(
            setup="nothing trained",
            verdicts=[Verdict("a quarter is below a half", f"{measured}", "measured < 0.5", measured < 0.5),
                      Verdict("a quarter is above a half", f"{measured}", "measured > 0.5", measured > 0.5)],
            metrics={"measured": measured, "nan": float("nan"), "tensor": torch.tensor([1.0, 2.0])},
            figures={"bars": plot_seeded_bars(["a", "b"], {"s": [[0.1, 0.2], [0.3]]})},
            tables=[to_markdown(["x", "y"], [[1, 2]])],
        )

    register_experiment("test-fake", "A fake experiment", "Numbers compare.")(fake)
    try:
        folder = run_experiment("test-fake", Settings(quick=True), out=tmp_path, command="cnnlab experiment test-fake")
    finally:
        del EXPERIMENTS["test-fake"]
    report = (folder / "report.md").read_text()
    assert "**HELD**: a quarter is below a half" in report
    assert "**DID NOT HOLD**: a quarter is above a half" in report
    assert "`cnnlab experiment test-fake` (quick mode)" in report
    from cnnlab.training.device import machine_name

    # The machine is named (CPU model and ISA), so figures from different machines are not mixed up.
    assert f"cores of {machine_name(torch.device('cpu'))} (" in report
    assert "![bars](bars.png)" in report and "| x | y |\n|---|---|\n| 1 | 2 |\n\n" in report
    record = json.loads((folder / "metrics.json").read_text())
    assert record["all_held"] is False
    assert record["metrics"] == {"measured": 0.25, "nan": None, "tensor": [1.0, 2.0]}
    assert (folder / "bars.png").stat().st_size > 1000


def test_mean_sd():
    assert mean_sd([1.0]) == (1.0, 0.0)
    m, sd = mean_sd([1.0, 3.0])
    assert m == 2.0 and sd == pytest.approx(2**0.5)


def test_permutation_moves_pixels_and_is_invertible():
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    perm = pixel_permutation(784)
    shuffled = permute_pixels(images, perm)
    assert not torch.equal(shuffled, images)
    assert torch.equal(shuffled.flatten(1).sort(1).values, images.flatten(1).sort(1).values)  # same pixel values
    inverse = torch.argsort(perm)
    assert torch.equal(permute_pixels(shuffled, inverse), images)
    assert torch.equal(pixel_permutation(784), perm)  # one fixed permutation
    with pytest.raises(ValueError, match="784 entries"):
        permute_pixels(images, perm[:100])


def test_derived_dataset_cuts_and_transforms():
    gen = torch.Generator().manual_seed(0)
    train = torch.randint(0, 256, (50, 1, 4, 4), dtype=torch.uint8, generator=gen)
    test = torch.randint(0, 256, (30, 1, 4, 4), dtype=torch.uint8, generator=gen)

    def load(root, split, download):
        images = train if split == "train" else test
        return images, torch.arange(len(images)) % 2, "memory"

    register_dataset(DatasetSpec("test-derived-base", ("a", "b"), load, val_size=5))
    name = derived_dataset("test-derived-base", "test-derived", transform=lambda x: 255 - x, train_size=20, test_size=10)
    assert derived_dataset("test-derived-base", "test-derived") == name  # registered once
    cut_test = load_dataset(name, "test")
    assert len(cut_test) == 10 and len(load_dataset(name, "trainval")) == 20
    # every image of the cut test split is an inverted image of the base test split
    base = {tuple((255 - img).flatten().tolist()) for img in test}
    assert all(tuple(img.flatten().tolist()) in base for img in cut_test.images)


def test_rotate180():
    x = torch.rand(6, 1, 5, 5)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(RandomRotate180(1.0)(x, g), torch.rot90(x, 2, dims=(2, 3)))
    assert torch.equal(RandomRotate180(0.0)(x, g), x)


@pytest.mark.parametrize("depth", [1, 3, 5])
def test_gradient_extent_is_the_theoretical_field(depth):
    torch.manual_seed(0)
    grad = centre_gradient(conv_stack(depth, channels=4), torch.randn(2, 1, 21, 21))
    assert nonzero_extent(grad) == 1 + 2 * depth


def test_profile_sigma_and_power_law():
    assert profile_sigma(torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0])) == pytest.approx(1.0)
    a, p = power_law_fit([1, 4, 9], [2.0, 4.0, 6.0])
    assert a == pytest.approx(2.0) and p == pytest.approx(0.5)


def test_receptive_field_quick_run(tmp_path):
    folder = run_experiment("receptive-field", Settings(quick=True), out=tmp_path, command="test")
    record = json.loads((folder / "metrics.json").read_text())
    m = record["metrics"]
    assert m["extent"] == m["theory"] == [1 + 2 * L for L in range(1, 9)]
    assert record["verdicts"][0]["held"] is True
    # the other verdicts are their rules applied to the recorded numbers
    from cnnlab.experiments.receptive_field import GAUSSIAN_TV, SLOPE_RANGE

    assert m["sigma_over_L"] == pytest.approx([s / L for s, L in zip(m["erf_sigma"], m["depths"])], abs=1e-5)
    a, p = power_law_fit(m["depths"], m["erf_sigma"])
    assert (m["fit"]["a"], m["fit"]["exponent"]) == (pytest.approx(a, abs=1e-5), pytest.approx(p, abs=1e-5))
    assert [v["held"] for v in record["verdicts"][1:]] == [
        m["gaussian_tv"][-1] < GAUSSIAN_TV,
        SLOPE_RANGE[0] <= m["fit"]["exponent"] <= SLOPE_RANGE[1],
        all(b < a for a, b in zip(m["sigma_over_L"], m["sigma_over_L"][1:])),
    ]
    # untrained, seeded stacks: the ERF grows, but more slowly than the theoretical field
    assert m["erf_sigma"] == sorted(m["erf_sigma"]) and 0.3 < m["fit"]["exponent"] < 0.9
    assert (folder / "receptive_field.png").is_file() and (folder / "report.md").is_file()


def test_noise_band():
    from cnnlab.experiments.common import noise_band

    assert noise_band([0.1], [0.2], floor=0.005) == 0.005  # one seed: no spread, the floor
    # sample variance 0.0002 in both groups of two: 2 * sqrt((0.0002 + 0.0002) / 2) = 0.0283
    assert noise_band([0.10, 0.12], [0.20, 0.22], floor=0.0) == pytest.approx(2 * 0.0002**0.5)
