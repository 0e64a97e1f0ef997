"""A single sigmoid neuron, and why hidden layers make non-linear classifiers.

``plot_neuron``: the output x(z1, z2) = 1 / (1 + exp(-(w1 z1 + w2 z2 + b))) of one neuron with
two inputs, as a 3-D surface and as a contour map. The surface is a smoothed step whose
rising edge is the line w1 z1 + w2 z2 + b = 0, perpendicular to the weight vector (w1, w2),
and whose steepness grows with |w|.

``plot_decision_regions``: the class each trained classifier assigns to every point of the
plane, for a 2-D toy set (:mod:`cnnlab.data.toy`), one panel per classifier. A perceptron
(no hidden layer) can only draw a straight boundary; a hidden layer bends it. The classifiers
come fitted (:func:`cnnlab.training.toy.fit_toy_classifier`); plotting never trains.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import nn  # noqa: E402

CLASS_COLOURS = ("#1f77b4", "#d62728")  # class 0 blue, class 1 red
REGION_COLOURS = ListedColormap(["#c6dbef", "#fcbba1"])  # the same, pale, for the regions


def sigmoid_neuron(z1: np.ndarray, z2: np.ndarray, w1: float, w2: float, bias: float = 0.0) -> np.ndarray:
    """x = 1 / (1 + exp(-(w1 z1 + w2 z2 + b))), elementwise."""
    return 1.0 / (1.0 + np.exp(-(w1 * z1 + w2 * z2 + bias)))


def plot_neuron(w1: float = 1.0, w2: float = 1.0, *, bias: float = 0.0, extent: float = 5.0, steps: int = 101) -> Figure:
    """Surface (3-D) and contour map of one sigmoid neuron's output over (z1, z2) in
    [-extent, extent]^2, with the weight vector and the 0.5 line drawn on the map."""
    if extent <= 0 or steps < 2:
        raise ValueError(f"need extent > 0 and steps >= 2, got {extent} and {steps}")
    z = np.linspace(-extent, extent, steps)
    z1, z2 = np.meshgrid(z, z)
    x = sigmoid_neuron(z1, z2, w1, w2, bias)
    fig = plt.figure(figsize=(12, 5.2), constrained_layout=True)
    ax3d = fig.add_subplot(1, 2, 1, projection="3d")
    ax3d.plot_surface(z1, z2, x, cmap="viridis", vmin=0, vmax=1, rstride=2, cstride=2, linewidth=0, antialiased=True)
    ax3d.set(xlabel="$z_1$", ylabel="$z_2$", zlabel="output $x$", zlim=(0, 1), title="surface")
    ax3d.view_init(elev=28, azim=-125)
    ax = fig.add_subplot(1, 2, 2)
    levels = np.linspace(0, 1, 11)
    filled = ax.contourf(z1, z2, x, levels=levels, cmap="viridis", vmin=0, vmax=1)
    lines = ax.contour(z1, z2, x, levels=[0.1, 0.5, 0.9], colors="white", linewidths=[0.8, 1.8, 0.8])
    ax.clabel(lines, fmt="%.1f", fontsize=9)
    norm = np.hypot(w1, w2)
    if norm > 0:  # the weight vector from the point of the 0.5 line closest to the origin
        foot = -bias / norm**2 * np.array([w1, w2])
        arrow = np.array([w1, w2]) / norm * extent * 0.35
        ax.annotate("", xy=foot + arrow, xytext=foot, arrowprops={"arrowstyle": "->", "color": "black", "lw": 2})
        ax.text(*(foot + arrow * 1.5), "$(w_1, w_2)$", fontsize=10, ha="center", va="center",
                bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8})
    ax.set(xlabel="$z_1$", ylabel="$z_2$", title="contours (white: x = 0.1, 0.5, 0.9)", aspect="equal",
           xlim=(-extent, extent), ylim=(-extent, extent))
    fig.colorbar(filled, ax=ax, label="output $x$", ticks=levels[::2])
    fig.suptitle(f"A sigmoid neuron: $x = 1 / (1 + e^{{-(w_1 z_1 + w_2 z_2 + b)}})$ with "
                 f"$w_1$ = {w1:g}, $w_2$ = {w2:g}" + (f", b = {bias:g}" if bias else ""))
    return fig


def describe_hidden(hidden: Sequence[int]) -> str:
    if not hidden:
        return "perceptron (no hidden layer)"
    widths = " + ".join(str(h) for h in hidden)
    return f"MLP, hidden {widths} tanh unit{'s' if sum(hidden) > 1 else ''}"


@torch.no_grad()
def plot_decision_regions(
    classifiers: Sequence[tuple[str, nn.Module]],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    title: str | None = None,
    resolution: int = 300,
) -> Figure:
    """One panel per (name, classifier): the plane coloured by the predicted class, the
    boundary where the two classes' probabilities are equal, and the points coloured by their
    true class. The panel title gives the classifier's training accuracy."""
    if not classifiers:
        raise ValueError("need at least one classifier to draw")
    lo, hi = x.min(0).values - 0.5, x.max(0).values + 0.5
    g1, g2 = torch.meshgrid(torch.linspace(lo[0], hi[0], resolution), torch.linspace(lo[1], hi[1], resolution), indexing="xy")
    grid = torch.stack([g1.reshape(-1), g2.reshape(-1)], 1)
    n = len(classifiers)
    aspect = float((hi[1] - lo[1]) / (hi[0] - lo[0]))  # panels keep the data's aspect: size the figure to it
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.6 * aspect + 0.9), squeeze=False, constrained_layout=True)
    for ax, (name, model) in zip(axes[0], classifiers):
        model.eval()
        p1 = F.softmax(model(grid), 1)[:, 1].reshape(resolution, resolution).numpy()
        accuracy = (model(x).argmax(1) == y).float().mean().item()
        ax.contourf(g1.numpy(), g2.numpy(), (p1 > 0.5).astype(float), levels=[-0.5, 0.5, 1.5], cmap=REGION_COLOURS)
        ax.contour(g1.numpy(), g2.numpy(), p1, levels=[0.5], colors="black", linewidths=1.5)
        for c in (0, 1):
            pts = x[y == c].numpy()
            ax.scatter(pts[:, 0], pts[:, 1], s=12, c=CLASS_COLOURS[c], edgecolors="white", linewidths=0.4,
                       label=f"class {c}")
        ax.set(title=f"{name}\ntraining accuracy {accuracy:.1%}", xlabel="$z_1$", ylabel="$z_2$", aspect="equal",
               xlim=(float(lo[0]), float(hi[0])), ylim=(float(lo[1]), float(hi[1])))
    axes[0, 0].legend(loc="lower left", fontsize=8, framealpha=0.9)
    if title:
        fig.suptitle(title)
    return fig
