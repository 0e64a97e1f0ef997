"""cnnlab: build, inspect, train and understand convolutional networks.

    >>> import cnnlab
    >>> model = cnnlab.create_model("lenet5")
    >>> cnnlab.list_models("resnet*")
    >>> run = cnnlab.train(cnnlab.TrainConfig(model="lenet5", data="mnist", epochs=3))
    >>> cnnlab.evaluate(run).top1_err

``cnnlab.train`` is ``cnnlab.training.fit``: it writes the run folder and returns the Run; it
draws no figures (``cnnlab.viz.curves.plot_curves(...)`` does, see the README).
"""

from cnnlab.analysis import summary
from cnnlab.data import list_datasets, load_dataset
from cnnlab.errors import CheckpointError, CnnlabError, DataError, UnknownNameError
from cnnlab.models import create_model, get_model_info, list_models
from cnnlab.models.features import features, forward_features
from cnnlab.training import Run, TrainConfig, build_config, load_run
from cnnlab.training import fit as train
from cnnlab.training.evaluate import evaluate

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "CnnlabError",
    "DataError",
    "Run",
    "TrainConfig",
    "UnknownNameError",
    "build_config",
    "create_model",
    "evaluate",
    "features",
    "forward_features",
    "get_model_info",
    "list_datasets",
    "list_models",
    "load_dataset",
    "load_run",
    "summary",
    "train",
]
