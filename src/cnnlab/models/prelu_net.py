"""PReLU-nets: He, Zhang, Ren, Sun 2015, "Delving Deep into Rectifiers: Surpassing
Human-Level Performance on ImageNet Classification", ICCV. https://arxiv.org/abs/1502.01852

Two contributions, both here:
- PReLU (Section 2.1): f(y_i) = max(0, y_i) + a_i min(0, y_i), with a learned slope a_i per
  channel ("channel-wise"), initialised to 0.25. It follows every conv and hidden FC layer.
- The initialisation for rectifier networks (Section 2.2, Eq. 15): zero-mean Gaussian
  weights with std sqrt(2 / ((1 + a^2) n_l)), n_l = k^2 c the layer's fan-in, a = 0.25;
  biases 0. As the paper allows, the same rule is used for the first layer (whose input is
  not rectified) and, since its input is rectified, for the last.

Models A, B, C of Table 3 (input 224x224). Model A, the one the paper compares with VGG-19:

    conv1     7x7, 96, /2                     (B, 96, 112, 112)
    pool1     3x3 max, /2                     (B, 96, 56, 56)
    conv2_x   3x3, 256, x5                    (B, 256, 56, 56)
    pool2     2x2 max, /2                     (B, 256, 28, 28)
    conv3_x   3x3, 512, x5                    (B, 512, 28, 28)
    pool3     2x2 max, /2                     (B, 512, 14, 14)
    conv4_x   3x3, 512, x5                    (B, 512, 14, 14)
    spp       {7x7, 3x3, 2x2, 1x1} max bins   (B, 512 * 63)
    fc1, fc2  4096, PReLU, dropout 0.5;  fc3 1000

19 weight layers, about 19.1 GMACs (Table 3: 1.90e10). Model B adds a sixth conv to each of
the three stages (22 layers, 2.32e10); model C widens B to 384/768/896 (5.30e10).

Choices where the paper is silent:
- Padding: 3 for conv1 and 1 for the 3x3 convs, so that maps are 112, 56, 28, 14 as the
  paper describes (the deep stages run on the 56/28/14 scales).
- pool1 is 3x3 with stride 2 and rounds up (``ceil_mode=True``, Caffe's convention):
  112 -> 56, the scale the paper names for conv2_x.
- Spatial pyramid pooling (He et al. 2014, SPP-net) is built from ``AdaptiveMaxPool2d``
  per level; its bin edges (floor/ceil of i * H / n) can differ by a pixel from SPP-net's
  window/stride formula. The bins are concatenated level by level, channel-major.
- Dropout after the PReLUs of fc1 and fc2.
- No reported accuracy is attached: the paper's Table 4/6 figures are multi-scale,
  multi-view results that could not be re-checked here.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from cnnlab.models.features import ImageModel
from cnnlab.models.registry import register_model

PAPER = "He, Zhang, Ren, Sun 2015, Delving Deep into Rectifiers (PReLU)"
PRELU_INIT = 0.25  # Section 2.1: initial slope a_i of every PReLU


@dataclass(frozen=True)
class Stage:
    pool_kernel: int  # max pool before the stage's convs (pool1 precedes conv2_x)
    pool_stride: int
    depth: int  # 3x3 convs in the stage
    width: int  # their filters


@dataclass(frozen=True)
class PReLUNetConfig:
    stem_width: int  # conv1: 7x7 stride 2
    stages: tuple[Stage, ...]
    spp_levels: tuple[int, ...]  # an n x n grid of max-pooling bins per level
    fc_width: int = 4096  # fc1 and fc2


# Table 3 of the paper.
MODEL_A = PReLUNetConfig(96, (Stage(3, 2, 5, 256), Stage(2, 2, 5, 512), Stage(2, 2, 5, 512)), (7, 3, 2, 1))
MODEL_B = PReLUNetConfig(96, (Stage(3, 2, 6, 256), Stage(2, 2, 6, 512), Stage(2, 2, 6, 512)), (7, 3, 2, 1))
MODEL_C = PReLUNetConfig(96, (Stage(3, 2, 6, 384), Stage(2, 2, 6, 768), Stage(2, 2, 6, 896)), (7, 3, 2, 1))


class SpatialPyramidPool(nn.Module):
    """Max-pool a (B, C, H, W) map into n x n bins for each level n; any H, W -> fixed length."""

    def __init__(self, levels: tuple[int, ...]) -> None:
        super().__init__()
        self.levels = levels
        self.pools = nn.ModuleList(nn.AdaptiveMaxPool2d(n) for n in levels)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([pool(x).flatten(1) for pool in self.pools], dim=1)  # (B, C * sum n^2)

    def extra_repr(self) -> str:
        return f"levels={self.levels}"


class PReLUNet(ImageModel):
    def __init__(
        self, config: PReLUNetConfig, *, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5
    ) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv1"] = nn.Conv2d(in_chans, config.stem_width, 7, stride=2, padding=3)
        layers["prelu1"] = nn.PReLU(config.stem_width, init=PRELU_INIT)
        chans = config.stem_width
        for s, stage in enumerate(config.stages, start=2):
            # Pools round up (Caffe's convention): pool1, 3x3/2 over 112, needs it to give 56;
            # the 2x2/2 pools divide 56 and 28 evenly.
            layers[f"pool{s - 1}"] = nn.MaxPool2d(stage.pool_kernel, stage.pool_stride, ceil_mode=True)
            for i in range(1, stage.depth + 1):
                layers[f"conv{s}_{i}"] = nn.Conv2d(chans, stage.width, 3, padding=1)
                layers[f"prelu{s}_{i}"] = nn.PReLU(stage.width, init=PRELU_INIT)
                chans = stage.width
        self.features = nn.Sequential(layers)
        self.spp = SpatialPyramidPool(config.spp_levels)
        width = config.fc_width
        self.classifier = nn.Sequential(OrderedDict(
            fc1=nn.Linear(chans * sum(n * n for n in config.spp_levels), width),
            prelu_fc1=nn.PReLU(width, init=PRELU_INIT),
            drop1=nn.Dropout(dropout),
            fc2=nn.Linear(width, width),
            prelu_fc2=nn.PReLU(width, init=PRELU_INIT),
            drop2=nn.Dropout(dropout),
            fc3=nn.Linear(width, num_classes),
        ))  # fmt: skip
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                # Eq. 15: std = sqrt(2 / ((1 + a^2) n_l)), n_l = fan-in; kaiming_normal_ with the
                # leaky_relu gain sqrt(2 / (1 + a^2)) is exactly that.
                nn.init.kaiming_normal_(m.weight, a=PRELU_INIT, mode="fan_in", nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (B, 512, 14, 14) for model A at 224
        x = self.spp(x)  # (B, 512 * 63)
        return self.classifier(x)  # (B, num_classes)


# SPP takes any map size; at 32x32 every stage still has more than one pixel (16, 8, 4, 2).
_prelu_net = partial(register_model, paper=PAPER, input_size=(3, 224, 224), test_input_size=(3, 32, 32))


@_prelu_net(params=178_032_072)
def prelu_net_a(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> PReLUNet:
    """Model A of Table 3: 19 layers, PReLU, He init, spatial pyramid pooling."""
    return PReLUNet(MODEL_A, num_classes=num_classes, in_chans=in_chans, dropout=dropout)


@_prelu_net(params=183_343_048)
def prelu_net_b(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> PReLUNet:
    """Model B of Table 3: model A with a sixth conv in each stage (22 layers)."""
    return PReLUNet(MODEL_B, num_classes=num_classes, in_chans=in_chans, dropout=dropout)


@_prelu_net(params=330_623_944)
def prelu_net_c(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> PReLUNet:
    """Model C of Table 3: model B widened to 384/768/896 filters (22 layers)."""
    return PReLUNet(MODEL_C, num_classes=num_classes, in_chans=in_chans, dropout=dropout)
