"""Fine-tuning: a training run that starts from weights (``TrainConfig.weights``).

``cnnlab train resnet18 --data folder:~/photos --weights torchvision --num-classes auto``:

- the model is built with the builder options the weights need (``stride_in_3x3`` for
  torchvision's ResNet-50; recorded in the run's ``model_options`` so that ``eval``, ``predict``
  and ``export`` rebuild it the same way) and the weights are loaded, every key checked;
- when the dataset has another number of classes than the weights' classifier, the classifier
  is new and zero (:func:`cnnlab.models.weights.new_head`; Kolesnikov et al. 2020, BiT);
- ``freeze="backbone"`` (a linear probe): only the classifier trains; the rest keeps
  ``requires_grad=False`` and stays in eval mode during training (BatchNorm normalises with
  the pretrained running statistics and does not update them; dropout and stochastic depth
  are off), :func:`cnnlab.training.optim.keep_frozen_in_eval`;
- ``freeze="none"``: everything trains, BatchNorm in train mode as usual (batch statistics,
  running statistics updated); ``backbone_lr_scale`` gives the backbone that fraction of the
  head's learning rate (a second parameter group, :func:`cnnlab.training.optim.parameter_groups`).

Images are normalised with the dataset's own per-channel statistics, as every cnnlab run is
(a folder of photos has statistics close to ImageNet's); the weights' own preprocessing is
what ``predict``/``eval`` use when they run the published weights themselves.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.models.weights import head_keys, weight_options
from cnnlab.training.config import TrainConfig
from cnnlab.training.optim import freeze_backbone

__all__ = ["build_model", "head_parameters", "with_weight_options"]


def with_weight_options(config: TrainConfig) -> TrainConfig:
    """``config`` with the builder options its weights need added to ``model_options``."""
    if config.weights is None:
        return config
    return dataclasses.replace(config, model_options=weight_options(config.model, config.weights, config.model_options))


def head_parameters(model: nn.Module) -> frozenset[str]:
    """Names of the classifier's parameters (``head_keys`` without buffers)."""
    keys = head_keys(model)
    return frozenset(name for name, _ in model.named_parameters() if name in keys)


def build_model(config: TrainConfig, *, num_classes: int, in_chans: int) -> tuple[nn.Module, frozenset[str]]:
    """The model a run trains, with its weights and frozen parts, and its head's parameter names.

    ``num_classes``: the dataset's; ``config.num_classes`` (when given) must agree with it."""
    if config.num_classes is not None and config.num_classes != num_classes:
        raise CnnlabError(
            f"num_classes {config.num_classes} does not match the dataset's {num_classes} classes; "
            "give --num-classes auto (the dataset's) or another dataset"
        )
    if config.weights is None and (config.freeze != "none" or config.backbone_lr_scale != 1.0):
        what = f"freeze={config.freeze}" if config.freeze != "none" else f"backbone_lr_scale={config.backbone_lr_scale:g}"
        raise CnnlabError(f"{what} fine-tunes pretrained weights: give weights to start from (--weights)")
    model = create_model(config.model, num_classes=num_classes, in_chans=in_chans, weights=config.weights,
                         **config.model_options)
    head = head_parameters(model) if config.weights is not None else frozenset()
    if config.freeze == "backbone":
        freeze_backbone(model, head)
    return model, head
