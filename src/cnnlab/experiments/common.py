"""What every experiment shares: the registry, the settings, quiet training into a scratch
folder, derived datasets, and the report writer.

An experiment is a function ``run(settings) -> Outcome`` registered under a name with the
lecture's claim. :func:`run_experiment` times it and writes ``<out>/<name>/report.md`` (the
claim, the setup, the measured numbers, whether the claim held, the exact command and the
machine), ``metrics.json`` (every number the report states) and the figures the experiment
returned. Whether a claim held is computed by the experiment from its measurements, with the
rule stated in the report, never typed in.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from matplotlib.figure import Figure

from cnnlab.data import DatasetSpec, get_dataset_spec, load_dataset, register_dataset
from cnnlab.errors import UnknownNameError
from cnnlab.training.config import TrainConfig
from cnnlab.training.loop import fit as train_loop
from cnnlab.training.run import Run
from cnnlab.viz.curves import save_figure


@dataclass
class Settings:
    """How to run an experiment (the command-line flags), not what it measures."""

    quick: bool = False  # the ~1-2 minute variant (fewer images, epochs, seeds) used by tests
    seeds: int | None = None  # None: the experiment's default for the mode
    device: str = "auto"
    data_root: str | None = None  # else $CNNLAB_DATA, else ~/.cache/cnnlab
    scratch: Path | None = None  # where run folders go; a temporary folder while running

    def seed_list(self, quick_default: int, full_default: int) -> list[int]:
        n = self.seeds if self.seeds is not None else (quick_default if self.quick else full_default)
        if n < 1:
            raise ValueError(f"--seeds must be >= 1, got {n}")
        return list(range(n))


@dataclass
class Verdict:
    """One lecture claim, checked against a measurement."""

    claim: str  # the lecture's statement
    measured: str  # the numbers it is judged by, in words
    rule: str  # how "held" is decided from those numbers
    held: bool

    def to_dict(self) -> dict:
        return {"claim": self.claim, "measured": self.measured, "rule": self.rule, "held": self.held}


@dataclass
class Outcome:
    """What an experiment hands back to be written out."""

    setup: str  # markdown: what was trained on what, and why it is this small
    verdicts: list[Verdict]
    metrics: dict[str, Any]  # every number the report mentions (JSON-serialisable)
    figures: dict[str, Figure] = field(default_factory=dict)  # file stem -> figure
    tables: list[str] = field(default_factory=list)  # Markdown tables (cnnlab.analysis.table.to_markdown)
    notes: list[str] = field(default_factory=list)  # deviations and caveats


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    claim: str  # one line, for `cnnlab experiment` without a name
    run: Callable[[Settings], Outcome]


EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(name: str, title: str, claim: str) -> Callable[[Callable[[Settings], Outcome]], Callable[[Settings], Outcome]]:
    def wrap(fn: Callable[[Settings], Outcome]) -> Callable[[Settings], Outcome]:
        if name in EXPERIMENTS:
            raise ValueError(f"experiment {name!r} is registered twice")
        EXPERIMENTS[name] = Experiment(name, title, claim, fn)
        return fn

    return wrap


def get_experiment(name: str) -> Experiment:
    try:
        return EXPERIMENTS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, list(EXPERIMENTS), n=2)
        hint = f"did you mean {', '.join(close)}?" if close else f"known experiments: {', '.join(sorted(EXPERIMENTS))}"
        raise UnknownNameError(f"unknown experiment {name!r}; {hint}") from None


# --- training ----------------------------------------------------------------------------------


def train_quiet(settings: Settings, label: str, **config: Any) -> Run:
    """Train one configuration into ``settings.scratch/label`` without a progress bar."""
    assert settings.scratch is not None, "train_quiet runs inside run_experiment (it sets the scratch folder)"
    cfg = TrainConfig(device=settings.device, data_root=settings.data_root, out=str(settings.scratch / label), **config)
    t0 = time.perf_counter()
    run = train_loop(cfg, quiet=True)
    print(f"  {label}: {final_summary(run)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return run


def final_summary(run: Run) -> str:
    f = run.final
    return f"train error {100 * (1 - f['train_acc']):.2f}%, test error {100 * f['test_top1_err']:.2f}%"


def train_error(run: Run) -> float:
    """Training error of the last epoch (the running error over its batches, in train mode)."""
    return 1.0 - run.final["train_acc"]


def test_error(run: Run) -> float:
    return run.final["test_top1_err"]


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def noise_band(a: Sequence[float], b: Sequence[float], *, floor: float) -> float:
    """Two standard errors of the difference between the means of two equal-sized groups of
    seeds, and at least ``floor`` (with one seed there is no spread to estimate)."""
    (_, sd_a), (_, sd_b) = mean_sd(a), mean_sd(b)
    return max(2 * ((sd_a**2 + sd_b**2) / len(a)) ** 0.5, floor)


def pct(value: float, sd: float | None = None) -> str:
    """A fraction as a percentage: ``1.23%`` or ``1.23 ± 0.05%``."""
    return f"{100 * value:.2f}%" if not sd else f"{100 * value:.2f} ± {100 * sd:.2f}%"


# --- derived datasets --------------------------------------------------------------------------


def derived_dataset(
    base: str,
    name: str,
    *,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    train_size: int | None = None,
    test_size: int | None = None,
    description: str = "",
) -> str:
    """Register (once) a dataset ``name`` made from ``base``: every image passed through
    ``transform`` (uint8 (N, C, H, W) -> same), the canonical training split cut to a fixed
    seeded random ``train_size`` images (the same images whatever the run's seed), and/or the
    test split cut to ``test_size`` (so small experiments do not spend their time on 10,000
    test images).
    Returns ``name``, ready for ``TrainConfig(data=...)``."""
    try:
        get_dataset_spec(name)
        return name
    except UnknownNameError:
        pass
    spec = get_dataset_spec(base)

    def load(root: Path, split: str, allow_download: bool) -> tuple[torch.Tensor, torch.Tensor, str]:
        canonical = load_dataset(base, "trainval" if split == "train" else "test", root, download=allow_download)
        images, labels = canonical.images, canonical.labels
        size = test_size if split == "test" else train_size
        if size is not None and size < len(images):
            pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:size].sort().values
            images, labels = images[pick], labels[pick]
        if transform is not None:
            images = transform(images)
        return images, labels, f"{canonical.source} ({name})"

    register_dataset(DatasetSpec(name, spec.classes, load, val_size=spec.val_size, description=description))
    return name


# --- running and writing -----------------------------------------------------------------------


def machine_description() -> str:
    """The CPU by name and its vector ISA, cores, whether other work shares the machine (load
    average), torch threads, device: figures are only comparable on the same machine."""
    from cnnlab.training.device import machine_name, native_precision

    cores = os.cpu_count() or 1
    cpu = torch.device("cpu")
    bf16 = "native bf16" if native_precision(cpu).dtype is not None else "no native bf16"
    text = f"{cores} cores of {machine_name(cpu)} ({torch.backends.cpu.get_cpu_capability()}, {bf16})"
    if hasattr(os, "getloadavg"):
        load = os.getloadavg()[0]
        # Before the experiment starts, a load of 1 or more means other processes are running.
        text += f", {'shared' if load >= 1.0 else 'idle'} (load average {load:.1f} at the start)"
    text += f", {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} torch thread(s)"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def run_experiment(name: str, settings: Settings, *, out: str | os.PathLike = "results", command: str | None = None) -> Path:
    """Run experiment ``name`` and write ``<out>/<name>/``; returns that folder."""
    experiment = get_experiment(name)
    folder = Path(out) / name
    machine = machine_description()
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"cnnlab-{name}-") as scratch:
        settings.scratch = Path(scratch)
        outcome = experiment.run(settings)
        settings.scratch = None
    seconds = time.perf_counter() - t0
    folder.mkdir(parents=True, exist_ok=True)
    if command is None:
        env = f"CNNLAB_DATA={os.environ['CNNLAB_DATA']} " if os.environ.get("CNNLAB_DATA") and not settings.data_root else ""
        command = env + "cnnlab " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    for stem, fig in outcome.figures.items():
        save_figure(fig, folder / f"{stem}.png", dpi=90)
    record = {
        "experiment": name,
        "mode": "quick" if settings.quick else "full",
        "command": command,
        "machine": machine,
        "started_utc": started.strftime("%Y-%m-%d %H:%M"),
        "wall_time_s": round(seconds, 1),
        "verdicts": [v.to_dict() for v in outcome.verdicts],
        "all_held": all(v.held for v in outcome.verdicts),
        "metrics": _jsonable(outcome.metrics),
    }
    (folder / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    (folder / "report.md").write_text(render_report(experiment, outcome, record, sorted(outcome.figures)))
    return folder


def render_report(experiment: Experiment, outcome: Outcome, record: dict, figures: Sequence[str]) -> str:
    lines = [f"# {experiment.title}", "", f"**Claim.** {experiment.claim}", ""]
    lines += ["## Result", ""]
    for v in outcome.verdicts:
        mark = "HELD" if v.held else "DID NOT HOLD"
        lines += [f"- **{mark}**: {v.claim}", f"  - measured: {v.measured}", f"  - rule: {v.rule}"]
    lines += ["", "## Setup", "", outcome.setup.strip(), ""]
    for table in outcome.tables:
        lines += [table.rstrip("\n"), ""]
    if figures:
        lines += ["## Figures", ""] + [f"![{stem}]({stem}.png)" for stem in figures] + [""]
    if outcome.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in outcome.notes] + [""]
    lines += [
        "## Reproduce",
        "",
        f"- command: `{record['command']}` ({record['mode']} mode)",
        f"- machine: {record['machine']}",
        f"- started {record['started_utc']} UTC, wall time {record['wall_time_s']:.0f} s",
        "- every number above is in `metrics.json`",
        "",
    ]
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    return value
