"""Backpropagation from first principles in NumPy, for study; PyTorch is the test oracle.

Every layer's backward sits next to its forward and follows the lectures' equations:
``layers`` (Linear, Conv2d, pooling, activations, BatchNorm, Dropout, Flatten), ``losses``
(softmax cross-entropy, binary cross-entropy, MSE, L2 weight decay), ``optim`` (gradient
descent, SGD, momentum), ``model`` (Sequential, the MLP and LeNet-5), ``gradcheck`` (finite
differences), ``autodiff`` (the scalar chain rule, the single sigmoid neuron) and ``fit``
(the training loop). This package stands alone: it imports nothing else from cnnlab.
"""

from cnnlab.scratch.autodiff import Scalar, chain_rule_example, sigmoid_neuron_gradient
from cnnlab.scratch.fit import accuracy, fit, standardise
from cnnlab.scratch.gradcheck import check_gradients, numerical_gradient, relative_error
from cnnlab.scratch.init import he_normal, lecun_normal, uniform_fan_in
from cnnlab.scratch.layers import (
    AvgPool2d,
    BatchNorm,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Layer,
    Linear,
    MaxPool2d,
    Parameter,
    ReLU,
    Sigmoid,
    Tanh,
)
from cnnlab.scratch.losses import BinaryCrossEntropy, MSELoss, SoftmaxCrossEntropy, l2_penalty, softmax
from cnnlab.scratch.model import MODELS, Sequential, lenet5, mlp
from cnnlab.scratch.optim import SGD

__all__ = [
    "MODELS", "SGD", "AvgPool2d", "BatchNorm", "BatchNorm1d", "BatchNorm2d", "BinaryCrossEntropy",
    "Conv2d", "Dropout", "Flatten", "Layer", "Linear", "MSELoss", "MaxPool2d", "Parameter", "ReLU",
    "Scalar", "Sequential", "Sigmoid", "SoftmaxCrossEntropy", "Tanh", "accuracy", "chain_rule_example",
    "check_gradients", "fit", "he_normal", "l2_penalty", "lecun_normal", "lenet5", "mlp",
    "numerical_gradient", "relative_error", "sigmoid_neuron_gradient", "softmax", "standardise",
    "uniform_fan_in",
]
