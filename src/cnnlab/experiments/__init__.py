"""The lecture's claims as experiments: ``cnnlab experiment NAME`` writes ``results/NAME/``.

Each module registers one experiment (see :mod:`cnnlab.experiments.common`); importing the
package registers them all.
"""

import importlib
import pkgutil

from cnnlab.experiments.common import EXPERIMENTS, Experiment, Settings, get_experiment, run_experiment

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name != "common":
        importlib.import_module(f"{__name__}.{_module.name}")


def list_experiments() -> list[str]:
    return sorted(EXPERIMENTS)


__all__ = ["EXPERIMENTS", "Experiment", "Settings", "get_experiment", "list_experiments", "run_experiment"]
