"""Feature extraction: each stage's output of any registered model, as timm's ``features_only``.

Data, then one rule. Each family names its *trunk* in :data:`TRUNKS`: the modules, in the order
its ``forward`` calls them, that carry the image from the input to the last feature map
(``"features.*"`` means every child of ``features``), and how their outputs are laid out:
``"nchw"`` (CNNs), ``"nhwc"`` (Swin keeps channels last), or ``"tokens"`` (ViT: (B, 1 + N, D),
the class token first, the N patch tokens reshaped to the patch grid of the last 4-D output
before them). The rule: a *stage* is a run of consecutive trunk modules whose outputs have the
same spatial size, and its output is that of the run's last module (so VGG's stages end
before each max-pool, ResNet's are ``relu`` (stride 2), ``layer1`` .. ``layer4``, as in timm's
``feature_info``). Each stage's channels and *reduction* (input side / output side, the
nearest power of two: 227 / 13 is AlexNet's 16) at the model's input size are
:func:`feature_stages`, also ``get_model_info(name).feature_stages``.

:func:`features` runs the model with forward hooks on the trunk's modules (so every model's own
``forward`` runs unchanged), keeps the stages asked for (as NCHW tensors), and stops the
forward pass after the last of them: the classifier never runs, so inputs of any size the
trunk accepts work. :func:`forward_features` is the last stage's output: the unpooled feature
map the classifier reads.

:class:`ImageModel` is the base class of every registered network: an ``nn.Module`` whose one
addition is timm's ``model.forward_features(x)`` method, which calls :func:`forward_features`.
A base class rather than a ``forward_features`` written into each family: the trunk stays data
(one :data:`TRUNKS` row per family, one rule), every family gets the method by inheriting, and
a model without feature maps (the MLPs) gets the same one-line error as the function gives.
The base class holds no parameters or buffers, so state-dict keys are those of ``nn.Module``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cnnlab.errors import CnnlabError
from cnnlab.models.registry import create_model, get_model_info, model_label

__all__ = ["TRUNKS", "FeatureStage", "ImageModel", "Trunk", "feature_stages", "features", "forward_features"]

_RESNET_TRUNK = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


@dataclass(frozen=True)
class Trunk:
    """The modules of a family that compute its feature maps, in call order."""

    modules: tuple[str, ...]  # module paths; "name.*" = every child of name, in order
    layout: str = "nchw"  # "nchw", "nhwc" (channels last) or "tokens" ((B, prefix + N, D))


@dataclass(frozen=True)
class FeatureStage:
    """One stage of a model's trunk (see the module docstring)."""

    name: str  # the module whose output is the stage's, e.g. "layer3"
    channels: int
    reduction: int  # input side / output side at the model's input size, nearest power of two


# Family (the module a builder lives in) -> its trunk. A family missing here (the MLPs) has no
# feature maps.
TRUNKS: dict[str, Trunk] = {
    "airbench": Trunk(("whiten", "act", "layers.*")),
    "alexnet": Trunk(("features.*",)),
    "bit": Trunk(("root", "body.*")),  # root: conv, pad, pool (its pad would be a stage of its own)
    "bn_inception": Trunk(("stem.*", "inception3.*", "inception4.*", "inception5.*")),
    "convnext": Trunk(("features.*",)),
    "densenet": Trunk(("features.*",)),
    "efficientnet": Trunk(("features.*",)),
    "googlenet": Trunk((
        "conv1", "maxpool1", "lrn1", "conv2", "conv3", "lrn2", "maxpool2", "inception3a", "inception3b", "maxpool3",
        "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4", "inception5a", "inception5b",
    )),
    "inception_resnet": Trunk(("stem", "blocks_a", "reduction_a", "blocks_b", "reduction_b", "blocks_c", "head")),
    "inception_v4": Trunk(("stem", "inception_a", "reduction_a", "inception_b", "reduction_b", "inception_c")),
    "lenet": Trunk(("features.*",)),
    "nin": Trunk(("features.*",)),  # its last stage is the class maps (NIN has no other head)
    "prelu_net": Trunk(("features.*",)),
    "regnet": Trunk(("stem", "trunk_output.*")),
    "resnet": Trunk(_RESNET_TRUNK),
    "resnet_cifar": Trunk(("conv1", "bn1", "relu", "layer1", "layer2", "layer3")),
    "resnext": Trunk(_RESNET_TRUNK),
    "senet": Trunk(_RESNET_TRUNK),
    "swin": Trunk(("features.*",), layout="nhwc"),
    "vgg": Trunk(("features.*",)),
    "vit": Trunk(("conv_proj", "encoder"), layout="tokens"),
    "zfnet": Trunk(("features.*",)),
}


class _Done(Exception):
    """Raised by the hook of the last stage asked for: the rest of the forward pass is not needed."""


def _trunk(model: nn.Module) -> tuple[Trunk, list[tuple[str, nn.Module]]]:
    info = get_model_info(model)
    trunk = TRUNKS.get(info.family)
    if trunk is None:
        have = ", ".join(sorted(TRUNKS))
        raise CnnlabError(f"model {info.name} ({info.family}) has no feature maps to extract; families with some: {have}")
    modules = dict(model.named_modules())
    out: list[tuple[str, nn.Module]] = []
    for path in trunk.modules:
        parent = path.removesuffix(".*")
        if parent not in modules:
            raise CnnlabError(f"model {info.name}: trunk module {parent!r} of family {info.family} not found")
        if path.endswith(".*"):
            out += [(f"{parent}.{n}", m) for n, m in modules[parent].named_children()]
        else:
            out.append((path, modules[parent]))
    return trunk, out


def _as_grid(output: Tensor, layout: str, grid: tuple[int, int] | None) -> Tensor | None:
    """A trunk module's output as (B, C, H, W), or None when it is not a feature map."""
    if not isinstance(output, Tensor):
        return None
    if output.dim() == 4:
        return output.permute(0, 3, 1, 2) if layout == "nhwc" else output
    if output.dim() == 3 and layout == "tokens" and grid is not None:
        h, w = grid
        patches = output[:, output.shape[1] - h * w:]  # drop the class (and any other prefix) tokens
        return patches.transpose(1, 2).reshape(output.shape[0], output.shape[2], h, w)
    return None


def _run(model: nn.Module, x: Tensor, wanted: set[str] | None) -> list[tuple[str, Tensor]]:
    """Every trunk module's output as NCHW, in call order (stopping after the ``wanted`` ones)."""
    trunk, modules = _trunk(model)
    names = [n for n, _ in modules]
    last = max(names.index(n) for n in wanted) if wanted else len(names) - 1
    outputs: list[tuple[str, Tensor]] = []
    grid: list[tuple[int, int]] = []

    def hook(name: str, index: int):
        def record(_module, _inputs, output):
            mapped = _as_grid(output, trunk.layout, grid[-1] if grid else None)
            if mapped is not None:
                if output.dim() == 4:
                    grid.append(tuple(mapped.shape[-2:]))
                # A clone: a later in-place op (ReLU(inplace=True)) must not change a kept stage.
                outputs.append((name, mapped.clone() if wanted is None or name in wanted else mapped.detach()))
            if index == last:
                raise _Done

        return record

    handles = [m.register_forward_hook(hook(n, i)) for i, (n, m) in enumerate(modules[: last + 1])]
    try:
        model(x)
    except _Done:
        pass
    finally:
        for h in handles:
            h.remove()
    return outputs


def _stages(outputs: list[tuple[str, Tensor]]) -> list[tuple[str, Tensor]]:
    """The last output of each run of equal spatial sizes (the module docstring's rule)."""
    stages: list[tuple[str, Tensor]] = []
    for name, out in outputs:
        if stages and stages[-1][1].shape[-2:] == out.shape[-2:]:
            stages[-1] = (name, out)
        else:
            stages.append((name, out))
    return stages


def _reduction(side_in: int, side_out: int) -> int:
    return 2 ** round(math.log2(side_in / side_out))


@functools.cache
def _stages_of(name: str, options: tuple) -> tuple[FeatureStage, ...]:
    with torch.device("meta"):  # shapes only
        model = create_model(name, **dict(options)).eval()
        size = get_model_info(model).input_size
        x = torch.zeros(1, *size)
        with torch.no_grad():
            stages = _stages(_run(model, x, None))
    return tuple(FeatureStage(n, int(t.shape[1]), _reduction(size[1], int(t.shape[2]))) for n, t in stages)


def feature_stages(model_or_name: str | nn.Module) -> tuple[FeatureStage, ...]:
    """Each stage's module, channels and reduction, at the model's input size (meta device)."""
    info = get_model_info(model_or_name)
    options = tuple(sorted(info.build_options.items())) if isinstance(model_or_name, nn.Module) else ()
    return _stages_of(info.name, options)


def features(model: nn.Module, x: Tensor, stages: Sequence[int | str] | None = None) -> dict[str, Tensor]:
    """The output of each stage of ``model`` on ``x``, as (B, C, H, W) tensors keyed by stage name.

    ``stages``: indices into :func:`feature_stages` (negative ones count from the end) or stage
    names; None: all. The model runs as it is (train or eval mode, its device)."""
    declared = feature_stages(model)
    names = [s.name for s in declared]
    if stages is None:
        picked = names
    else:
        picked = []
        for s in stages:
            if isinstance(s, int) and -len(names) <= s < len(names):
                picked.append(names[s])
            elif isinstance(s, str) and s in names:
                picked.append(s)
            else:
                raise CnnlabError(f"model {model_label(model)} has no stage {s!r}; its stages are 0..{len(names) - 1}: {', '.join(names)}")
    found = dict(_stages(_run(model, x, set(picked))))
    missing = [n for n in picked if n not in found]
    if missing:  # at another input size, two stages may have merged (a 1x1 map)
        raise CnnlabError(f"model {model_label(model)}: stage {missing[0]} has no map of its own at input {tuple(x.shape[1:])}")
    return {n: found[n] for n in picked}


def forward_features(model: nn.Module, x: Tensor) -> Tensor:
    """The last stage's feature map (B, C, H, W): what the classifier pools and reads."""
    return next(iter(features(model, x, [-1]).values()))


class ImageModel(nn.Module):
    """The base of every registered network: an ``nn.Module`` with timm's ``forward_features``.

    Family modules import this module (not the other way round: it names families only as
    data, in :data:`TRUNKS`), so there is no import cycle."""

    def forward_features(self, x: Tensor) -> Tensor:
        """The last stage's feature map (B, C, H, W); see :func:`forward_features`."""
        return forward_features(self, x)
