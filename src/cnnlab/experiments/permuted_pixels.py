"""Permuted pixels: a fully connected network does not care where a pixel is, a CNN does.

Shuffle the 784 pixel positions of every MNIST image with one fixed random permutation (the
same for training and test images). An MLP's first layer is a dense matrix over all pixels,
so permuting its inputs only permutes the rows it has to learn: its accuracy must not change
beyond seed noise. A CNN assumes nearby pixels belong together (local 5x5 kernels, weight
sharing, pooling); after the permutation they do not, so it must lose accuracy.
(The lecture's argument for convolution; the experiment is the "permutation-invariant MNIST"
of e.g. Goodfellow et al. 2013, Maxout Networks, Sec. 5.1.)
"""

from __future__ import annotations

import torch

from cnnlab.analysis.table import to_markdown
from cnnlab.data import load_dataset
from cnnlab.experiments.common import (
    Outcome,
    Settings,
    Verdict,
    derived_dataset,
    mean_sd,
    noise_band,
    pct,
    register_experiment,
    test_error,
    train_quiet,
)
from cnnlab.viz.experiment_plots import plot_image_rows, plot_seeded_bars

PERMUTATION_SEED = 1234  # the one fixed permutation of pixel positions
NOISE_FLOOR = 0.005  # differences below 0.5 percentage points count as noise even with one seed

MODELS = {  # label -> (model, builder options, optimiser settings)
    "MLP (784-300-10)": ("mlp", {}, dict(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, schedule="cosine")),
    "LeNet-5 (CNN)": ("lenet5", {"activation": "relu", "pool": "max"}, dict(optimizer="adam", lr=0.003, schedule="onecycle")),
}


def pixel_permutation(num_pixels: int, seed: int = PERMUTATION_SEED) -> torch.Tensor:
    return torch.randperm(num_pixels, generator=torch.Generator().manual_seed(seed))


def permute_pixels(images: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """Move pixel ``permutation[i]`` to position ``i`` in every image (N, C, H, W); channels
    of a pixel move together."""
    n, c, h, w = images.shape
    if permutation.shape != (h * w,):
        raise ValueError(f"permutation must have {h * w} entries for {h}x{w} images, got {tuple(permutation.shape)}")
    return images.reshape(n, c, h * w)[:, :, permutation].reshape(n, c, h, w)


def mnist_permuted() -> str:
    """The dataset ``mnist-permuted`` (registered on first use)."""
    perm = pixel_permutation(28 * 28)
    return derived_dataset(
        "mnist", "mnist-permuted", transform=lambda x: permute_pixels(x, perm),
        description=f"MNIST with one fixed pixel permutation (seed {PERMUTATION_SEED})",
    )


@register_experiment(
    "permuted-pixels",
    "Permuted pixels: MLP vs CNN",
    "Permuting the pixels of every image with one fixed permutation leaves a fully connected "
    "network's accuracy unchanged (within noise), while a CNN, which assumes spatial locality, loses accuracy.",
)
def run(settings: Settings) -> Outcome:
    seeds = settings.seed_list(1, 3)
    subset, epochs = (2000, 3) if settings.quick else (15000, 6)
    datasets = {"original": "mnist", "permuted": mnist_permuted()}
    errors: dict[str, dict[str, list[float]]] = {m: {d: [] for d in datasets} for m in MODELS}
    for label, (model, options, optim) in MODELS.items():
        for data_label, data in datasets.items():
            for seed in seeds:
                run = train_quiet(
                    settings, f"{model}-{data_label}-s{seed}", model=model, data=data, model_options=options,
                    train_subset=subset, val_size=0, epochs=epochs, seed=seed, eval_test_every_epoch=False, **optim,
                )
                errors[label][data_label].append(test_error(run))

    mlp = next(iter(MODELS))
    verdicts, rows, metrics = [], [], {"test_error": errors, "seeds": seeds, "train_subset": subset, "epochs": epochs}
    for label in MODELS:
        (m0, s0), (m1, s1) = mean_sd(errors[label]["original"]), mean_sd(errors[label]["permuted"])
        delta = m1 - m0
        noise = noise_band(errors[label]["original"], errors[label]["permuted"], floor=NOISE_FLOOR)
        metrics[label] = {"original_mean": m0, "permuted_mean": m1, "delta": delta, "noise": noise}
        rows.append([label, pct(m0, s0), pct(m1, s1), f"{100 * delta:+.2f} pp", f"{100 * noise:.2f} pp"])
        measured = f"test error {pct(m0, s0)} on MNIST, {pct(m1, s1)} permuted ({100 * delta:+.2f} pp; noise band {100 * noise:.2f} pp)"
        if label == mlp:
            verdicts.append(Verdict(
                f"{label}: accuracy unchanged by the permutation", measured,
                "|permuted - original| <= noise band (2 standard errors of the difference over seeds, at least 0.5 pp)",
                abs(delta) <= noise,
            ))
        else:
            verdicts.append(Verdict(
                f"{label}: loses accuracy on permuted pixels", measured,
                "permuted - original > noise band (2 standard errors of the difference over seeds, at least 0.5 pp)",
                delta > noise,
            ))

    test = load_dataset("mnist", "test", settings.data_root)
    perm = pixel_permutation(28 * 28)
    samples = test.images[:8]
    figures = {
        "samples": plot_image_rows(
            [("MNIST", samples), ("permuted", permute_pixels(samples, perm))],
            title=f"The same test digits with one fixed pixel permutation (seed {PERMUTATION_SEED})",
        ),
        "test_error": plot_seeded_bars(
            list(MODELS), {d: [errors[m][d] for m in MODELS] for d in datasets},
            title=f"MNIST test error, {subset:,} training images, {epochs} epochs (dots: seeds)",
        ),
    }
    setup = (
        f"Models: a 784-300-10 ReLU MLP (SGD, Nesterov momentum 0.9, lr 0.05, cosine) and LeNet-5 with ReLU and max "
        f"pooling (Adam, one-cycle, lr 0.003), trained on a seeded random subset of {subset:,} MNIST training images "
        f"for {epochs} epochs, batch 128, no augmentation, seeds {seeds}; test error on all 10,000 test images. "
        f"`mnist-permuted` is MNIST with the pixel positions of every image (train and test) shuffled by one "
        f"permutation (seed {PERMUTATION_SEED}); LeNet-5's 2-pixel zero padding to 32x32 comes after the permutation. "
        f"The same seed gives the same training subset, initialisation and batch order on both datasets."
    )
    table = to_markdown(["model", "MNIST", "permuted", "difference", "noise band"], rows)
    notes = ["Small on purpose (2-core shared CPU): the full mode trains 12 networks in a few minutes."]
    return Outcome(setup, verdicts, metrics, figures, [table], notes)
