"""cnnlab: build, inspect, train and understand convolutional networks.

    >>> import cnnlab
    >>> model = cnnlab.create_model("lenet5")
    >>> cnnlab.list_models("resnet*")
    >>> run = cnnlab.train(cnnlab.TrainConfig(model="lenet5", data="mnist", epochs=3))
    >>> cnnlab.evaluate(run).top1_err
"""

from cnnlab.api import evaluate, train
from cnnlab.data import list_datasets, load_dataset
from cnnlab.errors import CheckpointError, CnnlabError, DataError, UnknownNameError
from cnnlab.models import create_model, get_model_info, list_models
from cnnlab.train.config import TrainConfig, build_config
from cnnlab.train.loop import Run
from cnnlab.train.run import load_run

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
    "get_model_info",
    "list_datasets",
    "list_models",
    "load_dataset",
    "load_run",
    "train",
]
