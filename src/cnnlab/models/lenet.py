"""LeNet-5: LeCun, Bottou, Bengio, Haffner 1998, "Gradient-based learning applied to document
recognition", Proc. IEEE 86(11). http://yann.lecun.com/exdb/publis/pdf/lecun-98.pdf

Section II.B of the paper, on a 32x32 input (MNIST's 28x28 digits padded by 2):

    C1  6 feature maps 5x5 conv        -> 6@28x28
    S2  2x2 subsampling                -> 6@14x14
    C3  16 feature maps 5x5 conv       -> 16@10x10
    S4  2x2 subsampling                -> 16@5x5
    C5  120 feature maps 5x5 conv      -> 120@1x1
    F6  84 units
    output: 10 units

The default here is the form every course teaches: full C3 connections, plain average
pooling, a linear output layer: 61,706 parameters. ``activation`` and ``pool`` select
tanh/sigmoid/relu and avg/max.

Deviations from the paper (the default form): the paper's squashing function is a scaled
tanh 1.7159 tanh(2a/3); S2/S4 have a trainable coefficient and bias per map; C3 connects
each map to a subset of S2's maps (Table I); the output is a layer of Euclidean RBF units.
"""

from __future__ import annotations

from torch import Tensor, nn

from cnnlab.models.mlp import LECUN_1998, make_activation
from cnnlab.models.registry import Reported, register_model

POOLS: dict[str, type[nn.Module]] = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


class LeNet5(nn.Module):
    def __init__(self, *, num_classes: int = 10, in_chans: int = 1, activation: str = "tanh", pool: str = "avg"):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r}; expected one of {', '.join(POOLS)}")
        Pool = POOLS[pool]
        self.features = nn.Sequential()
        self.features.add_module("c1", nn.Conv2d(in_chans, 6, 5))  # (B, 6, 28, 28)
        self.features.add_module("act1", make_activation(activation))
        self.features.add_module("s2", Pool(2))  # (B, 6, 14, 14)
        self.features.add_module("c3", nn.Conv2d(6, 16, 5))  # (B, 16, 10, 10)
        self.features.add_module("act3", make_activation(activation))
        self.features.add_module("s4", Pool(2))  # (B, 16, 5, 5)
        self.features.add_module("c5", nn.Conv2d(16, 120, 5))  # (B, 120, 1, 1)
        self.features.add_module("act5", make_activation(activation))
        self.classifier = nn.Sequential()
        self.classifier.add_module("f6", nn.Linear(120, 84))
        self.classifier.add_module("act6", make_activation(activation))
        self.classifier.add_module("output", nn.Linear(84, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (B, 120, 1, 1)
        return self.classifier(x.flatten(1))  # (B, num_classes)


@register_model(
    paper=LECUN_1998,
    input_size=(1, 32, 32),
    reported=Reported(top1=99.05, dataset="MNIST", source="LeCun et al. 1998, Fig. 9: LeNet-5, no distortions"),
)
def lenet5(*, num_classes: int = 10, in_chans: int = 1, activation: str = "tanh", pool: str = "avg") -> LeNet5:
    """LeNet-5 with full C3 connections (61,706 parameters)."""
    return LeNet5(num_classes=num_classes, in_chans=in_chans, activation=activation, pool=pool)
