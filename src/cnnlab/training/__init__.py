"""Training: config and recipes, optimizers and schedules, device policy, the loop, checkpoints
and run folders, evaluation (one prediction loop for eval, TTA and ensembles) and prediction.

``fit(config)`` (``cnnlab.train``) trains into a run folder and returns the Run; it never plots.
Names re-exported here never shadow a submodule (``cnnlab.training.evaluate`` is the module;
the function is ``cnnlab.training.evaluate.evaluate``, alias ``cnnlab.evaluate``).
"""

from cnnlab.training.config import TrainConfig, build_config
from cnnlab.training.loop import StopTraining, fit
from cnnlab.training.run import Run, load_run

__all__ = ["Run", "StopTraining", "TrainConfig", "build_config", "fit", "load_run"]
