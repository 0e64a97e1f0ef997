"""The receptive field of stacked 3x3 convolutions, measured by gradients.

Theory: L stacked n x n stride-1 convolutions see 1 + L(n - 1) input pixels (two 3x3 layers
see 5x5, three see 7x7: Simonyan & Zisserman 2015, VGG, Sec. 2.3). Measurement: the gradient
of one output unit (the centre of channel 0) with respect to the input is non-zero exactly on
the pixels that unit depends on, so the extent of its non-zero region is the receptive field.

Luo, Li, Urtasun & Zemel 2016, "Understanding the Effective Receptive Field in Deep
Convolutional Neural Networks" (NeurIPS, https://arxiv.org/abs/1701.04128): the gradient is
far from uniform over that square. Averaged over random weights and inputs it is close to a
Gaussian whose standard deviation grows like sqrt(L) while the theoretical field grows like L,
so the *effective* receptive field is a shrinking fraction of the theoretical one (their
Sec. 2-3; the central limit theorem over the paths through the stack).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cnnlab.analysis.receptive_field import stacked_field
from cnnlab.analysis.table import to_markdown
from cnnlab.experiments.common import Outcome, Settings, Verdict, register_experiment
from cnnlab.viz.experiment_plots import plot_receptive_field

KERNEL = 3
CHANNELS = 16  # width of every layer
SLOPE_RANGE = (0.35, 0.65)  # power-law exponents that count as "like sqrt(L)"
GAUSSIAN_TV = 0.05  # largest total-variation distance from a Gaussian that counts as "Gaussian-like"


def conv_stack(depth: int, *, channels: int = CHANNELS, kernel: int = KERNEL, relu: bool = True) -> nn.Sequential:
    """``depth`` same-padded ``kernel`` x ``kernel`` convolutions (1 input channel), ReLU between
    them, He-initialised random weights and zero biases (Luo et al.'s "random weights" case)."""
    layers: list[nn.Module] = []
    for i in range(depth):
        conv = nn.Conv2d(1 if i == 0 else channels, channels, kernel, padding=kernel // 2)
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        layers.append(conv)
        if relu and i < depth - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def centre_gradient(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """|d y / d x| summed over the batch, where y is the centre unit of output channel 0:
    (H, W) map of how much each input pixel moves that one unit."""
    x = inputs.clone().requires_grad_(True)
    y = model(x)
    c = y.shape[-1] // 2
    y[:, 0, c, c].sum().backward()
    return x.grad.abs().sum(dim=(0, 1))


def nonzero_extent(gradient: torch.Tensor) -> int:
    """Width of the bounding box of the non-zero gradient (columns that have any)."""
    cols = torch.nonzero(gradient.sum(0) > 0).flatten()
    return int(cols.max() - cols.min() + 1) if len(cols) else 0


def profile_sigma(profile: torch.Tensor) -> float:
    """Standard deviation (pixels) of a 1-D profile treated as a distribution over offsets."""
    p = profile.double() / profile.sum()
    offsets = torch.arange(len(p), dtype=torch.float64) - len(p) // 2
    mean = (p * offsets).sum()
    return float(((p * (offsets - mean) ** 2).sum()).sqrt())


def gaussian_distance(profile: torch.Tensor) -> float:
    """Total-variation distance (0: identical, 1: disjoint) between a 1-D profile, as a
    distribution over offsets, and the Gaussian of the same mean and standard deviation."""
    p = profile.double() / profile.sum()
    offsets = torch.arange(len(p), dtype=torch.float64) - len(p) // 2
    mean = (p * offsets).sum()
    var = (p * (offsets - mean) ** 2).sum()
    g = torch.exp(-((offsets - mean) ** 2) / (2 * var))
    return float(0.5 * (p - g / g.sum()).abs().sum())


def power_law_fit(xs: list[int], ys: list[float]) -> tuple[float, float]:
    """(a, p) of the least-squares line log y = log a + p log x."""
    lx = torch.tensor([math.log(x) for x in xs], dtype=torch.float64)
    ly = torch.tensor([math.log(y) for y in ys], dtype=torch.float64)
    p = float(((lx - lx.mean()) * (ly - ly.mean())).sum() / ((lx - lx.mean()) ** 2).sum())
    return math.exp(float(ly.mean()) - p * float(lx.mean())), p


@register_experiment(
    "receptive-field",
    "Receptive field of stacked 3x3 convolutions, measured by gradients",
    "L stacked 3x3 convolutions see exactly 1 + 2L pixels, but the effective receptive field (Luo et al. 2016) "
    "is Gaussian-like, grows only like sqrt(L), and so fills a shrinking fraction of the theoretical one.",
)
def run(settings: Settings) -> Outcome:
    max_depth, inits, batch = (8, 8, 4) if settings.quick else (12, 48, 8)
    depths = list(range(1, max_depth + 1))
    size = 2 * (max_depth + 4) + 1  # odd, with a margin of 4 pixels beyond the largest field
    generator = torch.Generator().manual_seed(0)
    extent, theory, sigma, tv, maps, profiles = [], [], [], [], {}, {}
    shown = sorted({1, 2, max_depth // 2, max_depth})
    for depth in depths:
        total = torch.zeros(size, size, dtype=torch.float64)
        widths = []
        for i in range(inits):
            torch.manual_seed(1000 * depth + i)
            model = conv_stack(depth)
            grad = centre_gradient(model, torch.randn(batch, 1, size, size, generator=generator)).double()
            widths.append(nonzero_extent(grad))
            total += grad / grad.sum()  # each initialisation weighs the same
        extent.append(min(widths) if min(widths) == max(widths) else -1)  # -1: the extent varied between inits
        theory.append(stacked_field(depth, KERNEL))
        profile = total.sum(0)  # marginal over rows: the horizontal profile
        sigma.append(profile_sigma(profile))
        tv.append(gaussian_distance(profile))
        if depth in shown:
            maps[depth] = total.float()
            profiles[depth] = profile.float()
    a, slope = power_law_fit(depths, sigma)
    # ERF std relative to the theoretical half-width L: shrinks if sigma grows slower than L.
    fraction = [s / d for s, d in zip(sigma, depths)]

    verdicts = [
        Verdict(
            "the non-zero gradient region is exactly the theoretical receptive field 1 + L(3 - 1)",
            "non-zero extent " + ", ".join(f"L={d}: {e}" for d, e in zip(depths, extent)),
            f"extent == 1 + 2L for every L (and the same for all {inits} random initialisations)",
            extent == theory,
        ),
        Verdict(
            f"the effective receptive field is Gaussian-like (at L = {max_depth})",
            f"total-variation distance between the ERF profile and a Gaussian of the same std: {tv[-1]:.3f} "
            f"(L=1: {tv[0]:.3f}, a 3-tap kernel)",
            f"distance < {GAUSSIAN_TV} at the deepest stack", tv[-1] < GAUSSIAN_TV,
        ),
        Verdict(
            "the effective receptive field grows like sqrt(L)",
            f"ERF standard deviation {sigma[0]:.2f} px at L=1 ... {sigma[-1]:.2f} px at L={max_depth}; "
            f"power-law fit sigma = {a:.2f} L^{slope:.2f}",
            f"fitted exponent in [{SLOPE_RANGE[0]}, {SLOPE_RANGE[1]}] (sqrt: 0.5; the theoretical field: 1)",
            SLOPE_RANGE[0] <= slope <= SLOPE_RANGE[1],
        ),
        Verdict(
            "the effective field is a shrinking fraction of the theoretical one",
            f"sigma / L = {fraction[0]:.2f} at L=1, {fraction[-1]:.2f} at L={max_depth}",
            "sigma / L decreases at every step of L",
            all(b < a_ for a_, b in zip(fraction, fraction[1:])),
        ),
    ]
    rows = [[d, t, e, f"{s:.2f}", f"{f:.2f}", f"{v:.3f}"] for d, t, e, s, f, v in zip(depths, theory, extent, sigma, fraction, tv)]
    table = to_markdown(["layers L", "theory 1 + 2L", "measured extent", "ERF std (px)", "std / L", "distance to Gaussian"], rows)
    figures = {
        "receptive_field": plot_receptive_field(depths, extent, theory, sigma, maps, profiles, sqrt_fit=(a, slope)),
    }
    setup = (
        f"Stacks of L = 1..{max_depth} same-padded 3x3 convolutions, {CHANNELS} channels, ReLU between layers, "
        f"He-normal random weights and zero biases (untrained). Input: {batch} random normal {size}x{size} one-channel "
        f"images per initialisation, {inits} initialisations per depth. Measured: |d y / d x| for y = the centre "
        f"unit of output channel 0. Extent = width of the non-zero region; ERF profile = the gradient maps, each "
        f"normalised to sum 1, averaged over initialisations; ERF std = standard deviation of its horizontal marginal."
    )
    metrics = {"depths": depths, "theory": theory, "extent": extent, "erf_sigma": sigma, "sigma_over_L": fraction, "gaussian_tv": tv,
               "fit": {"a": a, "exponent": slope}, "inits": inits, "batch": batch, "input_size": size}
    notes = ["No training involved: a few seconds on a CPU; `--seeds` is ignored."]
    return Outcome(setup, verdicts, metrics, figures, [table], notes)
