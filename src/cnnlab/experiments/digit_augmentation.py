"""Which augmentations help digits: label-preserving ones (small shifts and rotations) versus
ones that change what a digit means (mirror images, upside-down digits: 6 <-> 9).

Augmentation encodes an invariance the label has. A 2-pixel shift or a 15-degree tilt leaves
a digit the same digit, so training on shifted and tilted copies is free extra data (LeCun
et al. 1998, Sec. III.C, "distortions"; Simard, Steinkraus & Platt 2003). A mirrored 2 or an
upside-down 6 is not the same symbol (or none at all): teaching the network to ignore flips
throws away information the test set needs. The effect shows when data is scarce, so we
train LeNet-5 on 2,000 MNIST images.
"""

from __future__ import annotations

import torch

from cnnlab.analysis.table import to_markdown
from cnnlab.data import augment as augment_module
from cnnlab.data import load_dataset
from cnnlab.data.augment import Augment, Compose, HorizontalFlip, RandomAffine, RandomShift
from cnnlab.experiments.common import (
    Outcome,
    Settings,
    Verdict,
    mean_sd,
    noise_band,
    pct,
    register_experiment,
    test_error,
    train_quiet,
)
from cnnlab.viz.experiment_plots import plot_image_rows, plot_seeded_bars

NOISE_FLOOR = 0.003  # differences below 0.3 percentage points count as noise even with one seed


class RandomRotate180:
    """Turn each image upside down (a 180-degree rotation) with probability ``p``.

    NOTE: written here because the augmentation module had no 180-degree rotation yet."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        turn = (torch.rand(len(x), generator=generator) < self.p).to(x.device).view(-1, 1, 1, 1)
        return torch.where(turn, x.flip(2, 3), x)

    def __repr__(self) -> str:
        return f"RandomRotate180(p={self.p})"


# condition -> (augmentation or None, label-preserving for digits?)
CONDITIONS: dict[str, tuple[Augment | None, bool]] = {
    "none": (None, True),
    "shift 2px": (RandomShift(2), True),
    "rotate 15deg": (RandomAffine(degrees=15), True),
    "shift+rotate": (Compose([RandomShift(2), RandomAffine(degrees=15)]), True),
    "h-flip": (HorizontalFlip(0.5), False),
    "rotate 180deg": (RandomRotate180(0.5), False),
}


def preset_name(condition: str) -> str:
    """Register the condition as an augmentation preset (the trainer takes presets by name)."""
    name = "digits-" + condition.replace(" ", "-").replace("+", "-")
    aug = CONDITIONS[condition][0]
    # NOTE: the augmentation module has no public way to add a preset; its PRESETS table is the
    # registry the trainer reads, so the experiment adds its own names there (prefixed digits-).
    augment_module.PRESETS.setdefault(name, lambda dataset, aug=aug: aug)
    return name


@register_experiment(
    "digit-augmentation",
    "Augmentation for digits: shifts and small rotations vs flips and 180-degree rotations",
    "Label-preserving augmentations (small shifts and rotations) lower the test error of a CNN trained on few "
    "digits; flips and 180-degree rotations, which change what a digit means, do not help and raise it.",
)
def run(settings: Settings) -> Outcome:
    seeds = settings.seed_list(1, 3)
    subset, epochs = (2000, 8) if settings.quick else (2000, 20)
    errors: dict[str, list[float]] = {}
    train_errors: dict[str, list[float]] = {}
    for condition in CONDITIONS:
        errors[condition], train_errors[condition] = [], []
        for seed in seeds:
            run = train_quiet(
                settings, f"{preset_name(condition)}-s{seed}", model="lenet5", data="mnist",
                model_options={"activation": "relu", "pool": "max"}, optimizer="adam", lr=0.003, schedule="onecycle",
                batch_size=64, train_subset=subset, val_size=0, epochs=epochs, seed=seed,
                augment=preset_name(condition), eval_test_every_epoch=False,
            )
            errors[condition].append(test_error(run))
            train_errors[condition].append(1 - run.final["train_acc"])

    base, base_sd = mean_sd(errors["none"])
    rows, effects = [], {}
    for condition, (_, safe) in CONDITIONS.items():
        m, sd = mean_sd(errors[condition])
        noise = noise_band(errors[condition], errors["none"], floor=NOISE_FLOOR)
        effects[condition] = {"mean": m, "sd": sd, "delta_vs_none": m - base, "noise": noise}
        word = "-" if condition == "none" else ("helps" if m < base - noise else "hurts" if m > base + noise else "no clear effect")
        effects[condition]["effect"] = word
        rows.append([condition, "yes" if safe else "no", pct(*mean_sd(train_errors[condition])), pct(m, sd),
                     "" if condition == "none" else f"{100 * (m - base):+.2f} pp", word])

    safe = [c for c, (_, s) in CONDITIONS.items() if s and c != "none"]
    unsafe = [c for c, (_, s) in CONDITIONS.items() if not s]

    def listing(conditions: list[str]) -> str:
        return "; ".join(f"{c} {pct(effects[c]['mean'])} ({100 * effects[c]['delta_vs_none']:+.2f} pp)" for c in conditions)

    verdicts = [
        Verdict("small shifts and rotations lower the test error", f"no augmentation {pct(base, base_sd)}; " + listing(safe),
                "each of them is below no augmentation by more than the noise band (2 standard errors, at least 0.3 pp)",
                all(effects[c]["effect"] == "helps" for c in safe)),
        Verdict("horizontal flips and 180-degree rotations raise the test error", f"no augmentation {pct(base, base_sd)}; " + listing(unsafe),
                "each of them is above no augmentation by more than the noise band (2 standard errors, at least 0.3 pp)",
                all(effects[c]["effect"] == "hurts" for c in unsafe)),
    ]

    test = load_dataset("mnist", "test", settings.data_root)
    digits = torch.nn.functional.pad(test.images[:8].float() / 255.0, (2, 2, 2, 2))  # as LeNet-5 sees them: 32x32
    samples = []
    for condition, (aug, _) in CONDITIONS.items():
        shown = digits if aug is None else aug(digits.clone(), torch.Generator().manual_seed(0))
        samples.append((condition, shown))
    figures = {
        "samples": plot_image_rows(samples, title="Test digits through each augmentation (one random draw)"),
        "test_error": plot_seeded_bars(
            list(CONDITIONS), {"LeNet-5": [errors[c] for c in CONDITIONS]},
            title=f"MNIST test error, LeNet-5 on {subset:,} training images, {epochs} epochs (dots: seeds)",
        ),
    }
    setup = (
        f"LeNet-5 (ReLU, max pooling) on a seeded random subset of {subset:,} MNIST training images, {epochs} epochs, "
        f"batch 64, Adam with a one-cycle schedule (peak lr 0.003), seeds {seeds}; test error on all 10,000 test "
        f"images (never augmented). Augmentations act on whole batches after the 2-pixel zero padding to 32x32: "
        f"`RandomShift(2)` (up to 2 px in x and y), `RandomAffine(degrees=15)` (uniform tilt in +-15 degrees), both, "
        f"`HorizontalFlip(0.5)`, and a 180-degree rotation with probability 0.5."
    )
    table = to_markdown(["augmentation", "keeps the label", "training error", "test error", "vs none", "effect"], rows)
    notes = [
        "The 180-degree rotation (`RandomRotate180`) is defined in this experiment: the augmentation module had none when it was written.",
        "The conditions are registered as augmentation presets named `digits-*` so the standard trainer can use them.",
        "Training error is measured on augmented batches, so it is not comparable across rows; the test error is.",
    ]
    metrics = {"test_error": errors, "train_error": train_errors, "effects": effects, "train_subset": subset,
               "epochs": epochs, "seeds": seeds}
    return Outcome(setup, verdicts, metrics, figures, [table], notes)
