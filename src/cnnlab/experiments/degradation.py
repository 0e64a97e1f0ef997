"""Degradation: a deeper plain network trains worse than a shallower one; a residual one does not.

He, Zhang, Ren & Sun 2016, "Deep Residual Learning for Image Recognition" (CVPR,
https://arxiv.org/abs/1512.03385), Sec. 4.2 and Figure 6: on CIFAR-10 the 56-layer plain
network has *higher training error* than the 20-layer one (so it is not overfitting: it is
harder to optimise), while with identity shortcuts the deeper network is as good or better.

Our scale: the CIFAR-style networks of the paper (3 stages of 2n 3x3 layers; option-A
shortcuts) at a quarter of the width (8/16/32 channels instead of 16/32/64), trained on a few
thousand images for a few epochs, because this runs on a shared 2-core CPU. The paper's
curves span 64k iterations; ours are the first few hundred, where its Figure 6 already shows
the gap between plain-20 and plain-56.
"""

from __future__ import annotations

from cnnlab.analysis.table import to_markdown
from cnnlab.experiments.common import (
    Outcome,
    Settings,
    Verdict,
    derived_dataset,
    mean_sd,
    pct,
    register_experiment,
    test_error,
    train_error,
    train_quiet,
)
from cnnlab.viz.experiment_plots import plot_error_curves

WIDTH = 8  # channels of the first stage (the paper's 16, halved to fit a CPU)
MARGIN = 0.01  # training-error differences within 1 percentage point count as "no change"
NETS = (("plain", 20), ("plain", 56), ("resnet", 20), ("resnet", 56))  # (family, depth)
# `degradation-full`: the paper's scale (Sec. 4.2), sized to reproduce Figure 6's ordering: width 16,
# the 45k/5k split, 64k iterations of batch 128 (182 epochs), lr 0.1 / 10 at 50% and 75%, 4-pixel
# crops and flips (recipes/resnet-cifar.toml), all 10,000 test images. A GPU job: about 111
# CPU-hours here (measured per step; docs/experiments.md).
FULL_RECIPE = dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="multistep", milestones=(0.5, 0.75),
                   gamma=0.1, batch_size=128, augment="cifar", train_subset=None, val_size=5000)
FULL_WIDTH, FULL_EPOCHS, FULL_TEST, FULL_TRAIN = 16, 182, 10000, 45000


@register_experiment(
    "degradation",
    "Degradation: plain vs residual networks of depth 20 and 56",
    "A deeper plain network has higher *training* error than a shallower one (the degradation problem); "
    "with residual (shortcut) connections the deeper network does not, and trains far better than the plain one of "
    "the same depth (He et al. 2016, Figure 1 and 6).",
)
def run(settings: Settings) -> Outcome:
    return _run(settings, full=False)


@register_experiment(
    "degradation-full",
    "Degradation at the paper's scale: plain vs residual networks of depth 20 and 56",
    "He et al. 2016, Figure 6 on the full CIFAR-10 training split: plain-56 has higher training error than plain-20 "
    "(degradation); ResNet-56 has no higher training error than ResNet-20. Sized for a GPU; --quick is the small test.",
)
def run_full(settings: Settings) -> Outcome:
    return _run(settings, full=not settings.quick)


def _run(settings: Settings, *, full: bool) -> Outcome:
    seeds = settings.seed_list(1, 1)
    subset, epochs, test_size = (500, 2, 1000) if settings.quick else (2500, 6, 1000)
    width = FULL_WIDTH if full else WIDTH
    if full:
        subset, epochs, test_size = None, FULL_EPOCHS, FULL_TEST
    data = derived_dataset(
        "cifar10-jpeg", f"cifar10-jpeg~test{test_size}", test_size=test_size,
        description=f"cifar10-jpeg with a seeded random {test_size}-image test subset",
    )
    recipe = dict(
        optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4, schedule="cosine", batch_size=64, augment="none",
        train_subset=subset, val_size=0, epochs=epochs, model_options={"width": WIDTH},
    )
    if full:
        recipe = dict(FULL_RECIPE, epochs=epochs, model_options={"width": width})
    histories: dict[str, list[list[dict]]] = {}
    errors: dict[str, dict[str, list[float]]] = {}
    for family, depth in NETS:
        name = f"{family}{depth}"
        histories[name], errors[name] = [], {"train": [], "test": []}
        for seed in seeds:
            run = train_quiet(settings, f"{name}-s{seed}", model=name, data=data, seed=seed, **recipe)
            histories[name].append(run.history)
            errors[name]["train"].append(train_error(run))
            errors[name]["test"].append(test_error(run))

    train = {name: mean_sd(e["train"]) for name, e in errors.items()}
    test = {name: mean_sd(e["test"]) for name, e in errors.items()}
    verdicts = []
    gaps = {}
    for family in ("plain", "resnet"):
        shallow, deep = f"{family}20", f"{family}56"
        gap = train[deep][0] - train[shallow][0]
        gaps[family] = gap
        measured = (
            f"final training error {family}-20 {pct(*train[shallow])}, {family}-56 {pct(*train[deep])} "
            f"(56 - 20 = {100 * gap:+.2f} pp)"
        )
        if family == "plain":
            verdicts.append(Verdict("the 56-layer plain net has higher training error than the 20-layer one", measured,
                                    f"plain56 - plain20 > {100 * MARGIN:.0f} pp", gap > MARGIN))
        else:
            verdicts.append(Verdict("the 56-layer residual net has no higher training error than the 20-layer one", measured,
                                    f"resnet56 - resnet20 <= {100 * MARGIN:.0f} pp", gap <= MARGIN))

    shortcut_gain = train["plain56"][0] - train["resnet56"][0]
    verdicts.append(Verdict(
        "at depth 56, shortcut connections lower the training error (ResNet-56 vs plain-56)",
        f"final training error plain-56 {pct(*train['plain56'])}, ResNet-56 {pct(*train['resnet56'])}",
        f"plain56 - resnet56 > {100 * MARGIN:.0f} pp", shortcut_gain > MARGIN,
    ))
    rows = [[f"{name} (width {width})", pct(*train[name]), pct(*test[name])] for name in errors]
    table = to_markdown(["network", "training error (last epoch)", f"test error ({test_size:,} images)"], rows)
    figures = {
        "error_curves": plot_error_curves(
            {
                "plain networks": [(f"plain-{d}", histories[f"plain{d}"][0]) for d in (20, 56)],
                "residual networks": [(f"ResNet-{d}", histories[f"resnet{d}"][0]) for d in (20, 56)],
            },
            title=f"CIFAR-10 (JPEG), {subset or FULL_TRAIN:,} training images, width {width}: train error solid, test dashed (seed {seeds[0]})",
        )
    }
    setup = "" if full else (
        f"Networks: `plain20`, `plain56`, `resnet20`, `resnet56` (He et al. 2016, Sec. 4.2; option-A shortcuts) with "
        f"width {WIDTH} (stages of {WIDTH}/{2 * WIDTH}/{4 * WIDTH} channels; the paper's 16/32/64 would be 4x slower). "
        f"Data: a seeded random subset of {subset:,} images of `cifar10-jpeg` (CIFAR-10 re-encoded as JPEG), no "
        f"augmentation, so the training error measures optimisation only; test error on a seeded random {test_size:,}-image "
        f"subset of the test set after every epoch. Same recipe for all four: SGD, momentum 0.9, lr 0.05 with cosine "
        f"decay, weight decay 1e-4, batch 64, {epochs} epochs; seeds {seeds}. Training error = error over the batches of "
        f"the last epoch, in training mode (as the paper's curves)."
    )
    notes = [] if full else [
        f"Far shorter than the paper (64k iterations of batch 128 on 45k images): {epochs} epochs of {subset:,} images "
        f"on a shared 2-core CPU. The comparison is of optimisation early in training, where the paper's Figure 6 also "
        f"separates the plain nets.",
    ]
    if full:
        setup = (f"He et al. 2016, Sec. 4.2 at the paper's scale: `plain20`, `plain56`, `resnet20`, `resnet56` at width "
                 f"{width} (16/32/64 channels), option-A shortcuts, on the {FULL_TRAIN:,} training images of the 45k/5k "
                 f"split of `cifar10-jpeg`, SGD momentum 0.9, weight decay 1e-4, batch 128, lr 0.1 divided by 10 at 50% "
                 f"and 75% of {epochs} epochs (64k iterations), 4-pixel crops and horizontal flips; test error on all "
                 f"{test_size:,} test images; seeds {seeds}. Training error = error over the last epoch's batches, in "
                 f"training mode (with augmentation, as the paper's curves).")
        notes = ["The paper's own schedule and data; only the JPEG re-encoding of CIFAR-10 differs."]
    metrics = {
        "errors": errors, "gap_56_minus_20": gaps, "plain56_minus_resnet56": shortcut_gain, "width": width, "train_subset": subset, "epochs": epochs,
        "test_size": test_size, "seeds": seeds,
        "curves": {name: [{k: row[k] for k in ("epoch", "train_acc", "test_top1_err")} for row in h[0]] for name, h in histories.items()},
    }
    return Outcome(setup, verdicts, metrics, figures, [table], notes)
