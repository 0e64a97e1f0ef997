"""The single neuron and the multilayer perceptron: the lectures' first networks.

``perceptron`` is one linear layer, sigma(w . x + b) per class: a single sigmoid neuron for
two classes, a linear (softmax) classifier for more. Its logits are returned; the sigmoid or
softmax belongs to the loss, which is the numerically stable way to apply it.

``mlp`` stacks fully connected hidden layers. The default, one hidden layer of 300 units, is
LeCun et al. 1998's "2-layer NN, 300 hidden units" baseline on MNIST (4.7% test error
without distortions).
"""

from __future__ import annotations

from torch import Tensor, nn

from cnnlab.models.features import ImageModel
from cnnlab.models.registry import Reported, register_model

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "prelu": nn.PReLU,
}

LECUN_1998 = "LeCun, Bottou, Bengio, Haffner 1998, Gradient-based learning applied to document recognition"


def make_activation(name: str) -> nn.Module:
    """An activation module by name; unknown names list the valid ones."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}") from None


class MLP(ImageModel):
    """Flatten, then fully connected layers ``hidden[0], ..., hidden[-1], num_classes``."""

    def __init__(
        self, *, in_features: int, hidden: tuple[int, ...], num_classes: int, activation: str = "relu"
    ) -> None:
        super().__init__()
        widths = [in_features, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for width_in, width_out in zip(widths, widths[1:]):
            layers += [nn.Linear(width_in, width_out), make_activation(activation)]
        layers.append(nn.Linear(widths[-1], num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)  # (B, num_classes) logits


@register_model(
    paper="Rosenblatt 1958; a single sigmoid neuron / linear classifier", input_size=(1, 28, 28), params=7_850
)
def perceptron(*, num_classes: int = 10, in_chans: int = 1, image_size: int = 28) -> MLP:
    """One linear layer: sigma(w . x + b), the lectures' single neuron."""
    return MLP(in_features=in_chans * image_size * image_size, hidden=(), num_classes=num_classes)


@register_model(
    paper=LECUN_1998,
    input_size=(1, 28, 28),
    reported=Reported(top1=95.3, dataset="MNIST", source="LeCun et al. 1998, Fig. 9: 2-layer NN, 300 HU"),
    params=238_510,
)
def mlp(
    *,
    num_classes: int = 10,
    in_chans: int = 1,
    image_size: int = 28,
    hidden: tuple[int, ...] = (300,),
    activation: str = "relu",
) -> MLP:
    """Fully connected network; one hidden layer of 300 units by default."""
    return MLP(
        in_features=in_chans * image_size * image_size,
        hidden=tuple(hidden),
        num_classes=num_classes,
        activation=activation,
    )
