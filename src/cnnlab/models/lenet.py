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

``paper=True`` builds the network as published (60,000 trainable parameters):
- C3 connects each of its 16 maps to a subset of S2's 6 maps, Table I (below): 60 links of
  one 5x5 kernel each, 1,516 parameters, 151,600 connections.
- S2 and S4 are trainable subsampling: the four inputs are added, multiplied by a trainable
  coefficient and a trainable bias is added, per map (12 and 32 parameters).
- Every layer up to F6 is followed by the squashing function f(a) = 1.7159 tanh(2a/3)
  (Appendix A).
- The output layer is 10 Euclidean RBF units, y_i = sum_j (x_j - w_ij)^2, with *fixed*
  weights w_i in {-1, +1}^84: a stylised 7x12 bitmap of each digit (Fig. 3). The paper
  prints the bitmaps as pictures, so the ones here are our own drawings of the ten digits
  in the same spirit; they are a buffer, not parameters (840 values). With more than 10
  classes, the extra codes are pseudo-random +-1 vectors from a fixed seed.
- The RBF output is a *penalty* (lower is better); ``forward`` returns -y_i, so the logits
  work with cross-entropy, and cross-entropy on them is the paper's MAP criterion (Eq. 9)
  without its constant e^-j term (j -> infinity).
- Initialisation (Appendix A): every weight and bias uniform in (-2.4/F, 2.4/F), F the
  fan-in of the unit it feeds.

Table I, which S2 maps (rows) each C3 map (columns) sees; a column's kernels are summed:

        0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15
    0   X       X X X     X X  X  X     X  X
    1   X X       X X X     X  X  X  X     X
    2   X X X       X X X      X     X  X  X
    3     X X X     X X X X       X     X  X
    4       X X X     X X X X     X  X     X
    5         X X X     X X X  X     X  X  X
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.models.features import ImageModel
from cnnlab.models.mlp import LECUN_1998, make_activation
from cnnlab.models.registry import ParamCount, Reported, register_model

POOLS: dict[str, type[nn.Module]] = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


class LeNet5(ImageModel):
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


# ---------------------------------------------------------------------------------------------
# The paper's LeNet-5

# Table I: the S2 maps each C3 map takes. Maps 0-5: three neighbours; 6-11: four neighbours;
# 12-14: four, non-contiguous; 15: all six.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)  # fmt: skip

# Our 7x12 drawings of the digits 0-9 ('#' = +1, '.' = -1), side by side, one row per line.
DIGIT_BITMAPS = """
....... ....... ....... ....... ....... ....... ....... ....... ....... .......
..###.. ...#... ..###.. .#####. ....#.. ####### ..###.. ####### ..###.. ..###..
.#...#. ..##... .#...#. ......# ...##.. #...... .#..... ......# .#...#. .#...#.
#.....# .#.#... .....#. .....#. ..#.#.. #...... #...... .....#. .#...#. #.....#
#.....# ...#... ....#.. ...##.. .#..#.. #####.. #.###.. ....#.. ..###.. #.....#
#.....# ...#... ...#... .....#. #...#.. .....#. ##...#. ...#... .#...#. .#...##
#.....# ...#... ..#.... ......# ####### ......# #.....# ...#... #.....# ..###.#
#.....# ...#... .#..... ......# ....#.. ......# #.....# ..#.... #.....# ......#
.#...#. ...#... #...... #....#. ....#.. #....#. .#...#. ..#.... .#...#. .....#.
..###.. .#####. ####### .####.. ....#.. .####.. ..###.. ..#.... ..###.. ..###..
....... ....... ....... ....... ....... ....... ....... ....... ....... .......
....... ....... ....... ....... ....... ....... ....... ....... ....... .......
"""


def rbf_codes(num_classes: int) -> Tensor:
    """(num_classes, 84) fixed +-1 codes: the digit bitmaps, then seeded random codes."""
    rows = [line.split() for line in DIGIT_BITMAPS.strip().splitlines()]  # 12 rows x 10 glyphs
    digits = torch.tensor([[1.0 if ch == "#" else -1.0 for row in rows for ch in row[d]] for d in range(10)])
    if num_classes <= 10:
        return digits[:num_classes]
    extra = torch.randint(0, 2, (num_classes - 10, 84), generator=torch.Generator().manual_seed(1998))
    return torch.cat([digits, extra.float() * 2 - 1])


class ScaledTanh(nn.Module):
    """f(a) = A tanh(S a), A = 1.7159, S = 2/3 (Appendix A): f(+-1) = +-1, unit gain at 0."""

    def forward(self, x: Tensor) -> Tensor:
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


class TrainableSubsampling(nn.Module):
    """S2/S4: the sum of each 2x2 block, times a trainable coefficient, plus a bias, per map."""

    def __init__(self, chans: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(chans))
        self.bias = nn.Parameter(torch.zeros(chans))

    def forward(self, x: Tensor) -> Tensor:
        s = F.avg_pool2d(x, 2) * 4  # the sum of the four inputs
        return s * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class PartialConv2d(nn.Module):
    """A convolution where output map o sees only the input maps ``table[o]``.

    One k x k kernel per link (input map, output map): a depthwise convolution over the
    gathered inputs, then each output map sums its links' responses.
    """

    def __init__(self, table: tuple[tuple[int, ...], ...], kernel_size: int) -> None:
        super().__init__()
        self.table = table
        links = [(o, i) for o, inputs in enumerate(table) for i in inputs]
        self.register_buffer("out_index", torch.tensor([o for o, _ in links]), persistent=False)
        self.register_buffer("in_index", torch.tensor([i for _, i in links]), persistent=False)
        self.weight = nn.Parameter(torch.empty(len(links), 1, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(len(table)))

    def forward(self, x: Tensor) -> Tensor:
        y = F.conv2d(x[:, self.in_index], self.weight, groups=self.weight.shape[0])  # (B, links, h, w)
        out = y.new_zeros(y.shape[0], len(self.table), *y.shape[2:])
        out = out.index_add(1, self.out_index, y)  # (B, maps, h, w)
        return out + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"maps={len(self.table)}, links={self.weight.shape[0]}, kernel_size={self.weight.shape[-1]}"


class RBFOutput(nn.Module):
    """Euclidean RBF units with fixed codes; returns -||x - w_i||^2 as logits (higher = better)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("codes", torch.empty(num_classes, 84))  # fixed, not trained
        with torch.no_grad():
            self.codes.copy_(rbf_codes(num_classes))

    def forward(self, x: Tensor) -> Tensor:
        # ||x - w||^2 = ||x||^2 - 2 x.w + ||w||^2, the middle term as one matmul.
        penalty = x.pow(2).sum(1, keepdim=True) - 2 * x @ self.codes.T + self.codes.pow(2).sum(1)
        return -penalty  # (B, num_classes)


class LeNet5Paper(ImageModel):
    def __init__(self, *, num_classes: int = 10, in_chans: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("c1", nn.Conv2d(in_chans, 6, 5))  # (B, 6, 28, 28)
        self.features.add_module("act1", ScaledTanh())
        self.features.add_module("s2", TrainableSubsampling(6))  # (B, 6, 14, 14)
        self.features.add_module("act2", ScaledTanh())
        self.features.add_module("c3", PartialConv2d(C3_TABLE, 5))  # (B, 16, 10, 10)
        self.features.add_module("act3", ScaledTanh())
        self.features.add_module("s4", TrainableSubsampling(16))  # (B, 16, 5, 5)
        self.features.add_module("act4", ScaledTanh())
        self.features.add_module("c5", nn.Conv2d(16, 120, 5))  # (B, 120, 1, 1)
        self.features.add_module("act5", ScaledTanh())
        self.classifier = nn.Sequential()
        self.classifier.add_module("f6", nn.Linear(120, 84))
        self.classifier.add_module("act6", ScaledTanh())
        self.classifier.add_module("output", RBFOutput(num_classes))
        self._init_paper()

    def _init_paper(self) -> None:
        # Appendix A: uniform in (-2.4/F, 2.4/F), F = the fan-in of the unit being fed.
        def uniform_(t: Tensor, fan_in: Tensor) -> None:
            with torch.no_grad():
                t.uniform_(-1.0, 1.0).mul_(2.4 / fan_in.to(t.device))

        f = self.features
        for layer in (f.c1, f.c5, self.classifier.f6):
            fan_in = torch.tensor(float(layer.weight[0].numel()))
            uniform_(layer.weight, fan_in)
            uniform_(layer.bias, fan_in)
        for layer in (f.s2, f.s4):  # four inputs per subsampling unit
            uniform_(layer.weight, torch.tensor(4.0))
            uniform_(layer.bias, torch.tensor(4.0))
        # C3: a map's fan-in is 25 times its number of input maps (3, 4 or 6).
        k2 = f.c3.weight[0].numel()
        map_fan_in = [float(len(inputs) * k2) for inputs in f.c3.table]
        link_fan_in = [map_fan_in[o] for o, inputs in enumerate(f.c3.table) for _ in inputs]
        uniform_(f.c3.weight, torch.tensor(link_fan_in, device="cpu").view(-1, 1, 1, 1))
        uniform_(f.c3.bias, torch.tensor(map_fan_in, device="cpu"))

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (B, 120, 1, 1)
        return self.classifier(x.flatten(1))  # (B, num_classes): minus the RBF penalties


@register_model(
    paper=LECUN_1998,
    input_size=(1, 32, 32),
    reported=Reported(top1=99.05, dataset="MNIST", source="LeCun et al. 1998, Fig. 9: LeNet-5, no distortions"),
    params=61_706,
    params_variants=(
        ParamCount(60_000, {"paper": True}, "as published (partial C3 table, trainable subsampling)",
                   source="LeCun et al. 1998, Section II-B"),
    ),
)
def lenet5(
    *, num_classes: int = 10, in_chans: int = 1, activation: str = "tanh", pool: str = "avg", paper: bool = False
) -> LeNet5 | LeNet5Paper:
    """LeNet-5 with full C3 connections; ``paper=True``: as published."""
    if paper:
        if (activation, pool) != ("tanh", "avg"):
            raise ValueError(
                f"paper=True fixes the activation (scaled tanh) and pooling (trainable subsampling); "
                f"got activation={activation!r}, pool={pool!r}"
            )
        return LeNet5Paper(num_classes=num_classes, in_chans=in_chans)
    return LeNet5(num_classes=num_classes, in_chans=in_chans, activation=activation, pool=pool)
