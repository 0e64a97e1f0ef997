"""Weight decay: an L2 penalty on the weights narrows the gap between training and test error.

With 1,000 training images LeNet-5 (61k parameters) drives its training error to about zero
while its test error stays several times higher (overfitting). Adding
``lambda/2 * ||w||^2`` to the loss (SGD's ``weight_decay=lambda``: every step shrinks each
weight by ``lr * lambda``) keeps the weights small, trading a little training error for a
smaller gap. (Krogh & Hertz 1992, "A Simple Weight Decay Can Improve Generalization"; AlexNet
trains with weight decay 5e-4, Krizhevsky et al. 2012, Sec. 5.)
"""

from __future__ import annotations

from cnnlab.analysis.table import to_markdown
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
    train_error,
    train_quiet,
)
from cnnlab.viz.experiment_plots import plot_error_curves, plot_seeded_bars

DECAYS = (0.0, 1e-3, 3e-3)  # L2 coefficients; 0 is the baseline
CHECKED = 3e-3  # the setting the verdict is about (chosen after a one-seed pilot, see the notes)
NOISE_FLOOR = 0.003  # differences below 0.3 percentage points count as noise even with one seed
TEST_SIZE = 2000  # test images evaluated after every epoch (for the curves)


@register_experiment(
    "weight-decay",
    "Weight decay on a small training set: the train/test gap",
    "On a small training set a network overfits (training error far below test error); L2 weight decay "
    "narrows that gap and lowers the test error.",
)
def run(settings: Settings) -> Outcome:
    seeds = settings.seed_list(1, 3)
    subset, epochs = (1000, 15) if settings.quick else (1000, 40)
    data = derived_dataset("mnist", f"mnist~test{TEST_SIZE}", test_size=TEST_SIZE,
                           description=f"MNIST with a seeded random {TEST_SIZE}-image test subset")
    train_err: dict[str, list[float]] = {}
    test_err: dict[str, list[float]] = {}
    histories: dict[str, list[dict]] = {}
    for wd in DECAYS:
        key = f"{wd:g}"
        train_err[key], test_err[key] = [], []
        for seed in seeds:
            run = train_quiet(
                settings, f"lenet5-wd{key}-s{seed}", model="lenet5", data=data,
                model_options={"activation": "relu", "pool": "max"}, optimizer="sgd", lr=0.05, momentum=0.9,
                schedule="constant", weight_decay=wd, batch_size=64, train_subset=subset, val_size=0, epochs=epochs,
                seed=seed,
            )
            train_err[key].append(train_error(run))
            test_err[key].append(test_error(run))
            histories.setdefault(key, run.history)  # curves of the first seed

    rows, summary = [], {}
    for key in train_err:
        (tr, tr_sd), (te, te_sd) = mean_sd(train_err[key]), mean_sd(test_err[key])
        gap = [b - a for a, b in zip(train_err[key], test_err[key])]
        g, g_sd = mean_sd(gap)
        summary[key] = {"train": tr, "test": te, "gap": g, "gap_sd": g_sd}
        rows.append([key, pct(tr, tr_sd), pct(te, te_sd), f"{100 * g:.2f} ± {100 * g_sd:.2f} pp"])
    base, strong = summary["0"], summary[f"{CHECKED:g}"]
    gaps = {k: [b - a for a, b in zip(train_err[k], test_err[k])] for k in train_err}
    checked = f"{CHECKED:g}"
    gap_noise = noise_band(gaps["0"], gaps[checked], floor=NOISE_FLOOR)
    test_noise = noise_band(test_err["0"], test_err[checked], floor=NOISE_FLOOR)
    verdicts = [
        Verdict(
            "without weight decay the network overfits: training error far below test error",
            f"weight decay 0: training error {pct(base['train'])}, test error {pct(base['test'])}",
            "test error > 2 x training error + 1 pp", base["test"] > 2 * base["train"] + 0.01,
        ),
        Verdict(
            f"weight decay {CHECKED:g} narrows the train/test gap",
            f"gap (test - training error) {100 * base['gap']:.2f} pp without, {100 * strong['gap']:.2f} pp with "
            f"(noise band {100 * gap_noise:.2f} pp)",
            "gap without - gap with > noise band (2 standard errors of the difference over seeds, at least 0.3 pp)",
            base["gap"] - strong["gap"] > gap_noise,
        ),
        Verdict(
            f"weight decay {CHECKED:g} lowers the test error",
            f"test error {pct(base['test'])} without, {pct(strong['test'])} with (noise band {100 * test_noise:.2f} pp)",
            "test error without - with > noise band (2 standard errors of the difference over seeds, at least 0.3 pp)",
            base["test"] - strong["test"] > test_noise,
        ),
    ]
    labels = [f"wd {k}" for k in train_err]
    figures = {
        "train_vs_test": plot_seeded_bars(
            labels, {"training error": list(train_err.values()), "test error": list(test_err.values())},
            ylabel="error (%)", title=f"LeNet-5 on {subset:,} MNIST images, {epochs} epochs (dots: seeds)",
        ),
        "curves": plot_error_curves(
            {f"weight decay {k}": [("", h)] for k, h in histories.items()},
            title=f"LeNet-5 on {subset:,} MNIST images: training error solid, test error dashed (seed {seeds[0]})",
            ymax=min(100.0, 300 * max(h[-1]["test_top1_err"] for h in histories.values())),
        ),
    }
    setup = (
        f"LeNet-5 (ReLU, max pooling) on a seeded random subset of {subset:,} MNIST training images, {epochs} epochs, batch 64, "
        f"SGD with momentum 0.9 at a constant lr 0.05 (no schedule, no augmentation, no early stopping, so only the "
        f"penalty differs), weight decay {', '.join(f'{d:g}' for d in DECAYS)}; seeds {seeds}. Test error after every "
        f"epoch on a fixed random {TEST_SIZE:,} of the 10,000 test images (to keep the per-epoch curves cheap); training "
        f"error over the batches of the last epoch."
    )
    table = to_markdown(["weight decay", "training error", "test error", "gap (test - train)"], rows)
    metrics = {"train_error": train_err, "test_error": test_err, "summary": summary, "train_subset": subset,
               "epochs": epochs, "seeds": seeds, "checked_decay": CHECKED}
    notes = [
        "A one-seed pilot with a 784-300-10 MLP (decays 0, 0.01, 0.03, 0.1; 60 epochs) showed no test-error gain from weight "
        "decay (8.8% -> 8.9%, 9.2%, 14.6%) although the test loss fell (0.43 -> 0.29); a pilot with LeNet-5 (decays 0, "
        "0.003, 0.01, 0.03) is where the decays here come from, so the checked value was picked with one seed in view.",
        "PyTorch's SGD `weight_decay` adds lambda * w to the gradient, i.e. the L2 penalty lambda/2 ||w||^2, biases included.",
    ]
    if strong["train"] <= base["train"]:
        notes.append(
            f"Not the textbook trade: training error did not rise with weight decay {CHECKED:g} "
            f"({pct(base['train'])} -> {pct(strong['train'])}); the gap changed through the test error."
        )
    return Outcome(setup, verdicts, metrics, figures, [table], notes)
