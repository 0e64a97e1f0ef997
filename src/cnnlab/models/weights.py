"""Weights in: torchvision checkpoints, safetensors files and cnnlab run folders, into our models.

A weights *source* is one of

- a torchvision-format ``.pth``/``.pt`` file: a pickled state dict (zip archive, or the legacy
  pre-1.6 format some 2017 torchvision files still use), read with
  ``torch.load(weights_only=True)``, so a pickle that would call anything is refused unread;
- a ``.safetensors`` file;
- a cnnlab run folder (``config.json``, ``data.json``, ``best.safetensors``/``last.safetensors``):
  its best weights, else its last;
- an ``http(s)://`` or ``file://`` URL of either file kind, downloaded once into the cache
  (``$CNNLAB_WEIGHTS_CACHE``, default ``~/.cache/cnnlab/weights``; a copy torch.hub already has
  in ``<torch hub dir>/checkpoints`` is used as it is) and verified by SHA-256: against the hash
  given, else the hash prefix torchvision puts in its file names (``resnet50-0676ba61.pth``:
  the digest starts with ``0676ba61``). A name without a prefix and no hash given is not checked.

:data:`TORCHVISION` lists, for each registered model, the torchvision weight files that fit it:
file, URL, the builder options the file needs, the preprocessing it was evaluated with and its
published ImageNet-1k accuracy (the facts of torchvision 0.28's ``Weights`` enums).

Every failure is one :class:`~cnnlab.errors.CheckpointError` line that names the file: a state
dict for another model (its first mismatching keys and shapes, and the registered model whose
keys fit it best), a truncated or non-PyTorch file, a refused pickle, a hash mismatch.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import pickle
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from cnnlab.errors import CheckpointError
from cnnlab.models.registry import create_model, get_model_info, list_models, model_label

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TORCHVISION",
    "Preprocess",
    "WeightFile",
    "cache_dir",
    "closest_models",
    "download",
    "find_weights",
    "fit_problems",
    "load_weights",
    "read_weights",
    "weights_for",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # per-channel mean of ImageNet-1k train images, RGB in [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_URL = "https://download.pytorch.org/models/"
# torch.hub's naming rule: "<name>-<first 8 or more hex digits of the SHA-256>.<ext>".
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Preprocess:
    """How a weight file's evaluation images were prepared (torchvision's ImageClassification)."""

    resize: int  # the shorter side is resized to this many pixels ...
    crop: int  # ... then the centre crop x crop is kept
    interpolation: str = "bilinear"  # resampling filter of the resize: "bilinear" or "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN  # subtracted after scaling pixels to [0, 1]
    std: tuple[float, float, float] = IMAGENET_STD  # divided by afterwards


@dataclass(frozen=True)
class WeightFile:
    """One published weight file that fits one of our models."""

    tag: str  # torchvision's Weights enum member, e.g. "IMAGENET1K_V2"
    url: str
    preprocess: Preprocess
    top1: float  # ImageNet-1k validation accuracy in %, single crop at `preprocess`, as published
    top5: float
    default: bool = False  # torchvision's DEFAULT for the model (what `--weights torchvision` picks)
    # Builder options the file needs beyond the defaults (ResNet-50's stride on the 3x3 conv).
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    num_classes: int = 1000

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def sha256_prefix(self) -> str | None:
        return _hash_from_name(self.file_name)


_V1 = Preprocess(256, 224)  # torchvision's original recipe: resize 256, crop 224, bilinear
_V2 = Preprocess(232, 224)  # its 2021 "new training recipe" evaluation size
_V1_5 = {"stride_in_3x3": True}  # torchvision's ResNet-50/101/152 stride the 3x3 conv ("v1.5")


def _tv(file: str, tag: str, pre: Preprocess, top1: float, top5: float, **kw: Any) -> WeightFile:
    return WeightFile(tag, TORCHVISION_URL + file, pre, top1, top5, **kw)


def _bicubic(resize: int, crop: int) -> Preprocess:
    return Preprocess(resize, crop, interpolation="bicubic")


# Our model name -> the torchvision files that fit it (torchvision 0.28, torchvision/models/*.py
# Weights enums). Not listed on purpose: vgg16's IMAGENET1K_FEATURES (features only, NaN
# classifier), regnet_y_8gf (other widths than our pycls regnety_8gf), resnext101_64x4d and
# the families we do not have.
TORCHVISION: dict[str, tuple[WeightFile, ...]] = {
    # torchvision's AlexNet is Krizhevsky's 2014 "one weird trick" single-tower variant.
    "alexnet_onetower": (_tv("alexnet-owt-7be5be79.pth", "IMAGENET1K_V1", _V1, 56.522, 79.066, default=True),),
    "vgg11": (_tv("vgg11-8a719046.pth", "IMAGENET1K_V1", _V1, 69.020, 88.628, default=True),),
    "vgg11_bn": (_tv("vgg11_bn-6002323d.pth", "IMAGENET1K_V1", _V1, 70.370, 89.810, default=True),),
    "vgg13": (_tv("vgg13-19584684.pth", "IMAGENET1K_V1", _V1, 69.928, 89.246, default=True),),
    "vgg13_bn": (_tv("vgg13_bn-abd245e5.pth", "IMAGENET1K_V1", _V1, 71.586, 90.374, default=True),),
    "vgg16": (_tv("vgg16-397923af.pth", "IMAGENET1K_V1", _V1, 71.592, 90.382, default=True),),
    "vgg16_bn": (_tv("vgg16_bn-6c64b313.pth", "IMAGENET1K_V1", _V1, 73.360, 91.516, default=True),),
    "vgg19": (_tv("vgg19-dcbb9e9d.pth", "IMAGENET1K_V1", _V1, 72.376, 90.876, default=True),),
    "vgg19_bn": (_tv("vgg19_bn-c79401a0.pth", "IMAGENET1K_V1", _V1, 74.218, 91.842, default=True),),
    "resnet18": (_tv("resnet18-f37072fd.pth", "IMAGENET1K_V1", _V1, 69.758, 89.078, default=True),),
    "resnet34": (_tv("resnet34-b627a593.pth", "IMAGENET1K_V1", _V1, 73.314, 91.420, default=True),),
    "resnet50": (
        _tv("resnet50-0676ba61.pth", "IMAGENET1K_V1", _V1, 76.130, 92.862, options=_V1_5),
        _tv("resnet50-11ad3fa6.pth", "IMAGENET1K_V2", _V2, 80.858, 95.434, options=_V1_5, default=True),
    ),
    "resnet101": (
        _tv("resnet101-63fe2227.pth", "IMAGENET1K_V1", _V1, 77.374, 93.546, options=_V1_5),
        _tv("resnet101-cd907fc2.pth", "IMAGENET1K_V2", _V2, 81.886, 95.780, options=_V1_5, default=True),
    ),
    "resnet152": (
        _tv("resnet152-394f9c45.pth", "IMAGENET1K_V1", _V1, 78.312, 94.046, options=_V1_5),
        _tv("resnet152-f82ba261.pth", "IMAGENET1K_V2", _V2, 82.284, 96.002, options=_V1_5, default=True),
    ),
    "resnext50_32x4d": (
        _tv("resnext50_32x4d-7cdf4587.pth", "IMAGENET1K_V1", _V1, 77.618, 93.698),
        _tv("resnext50_32x4d-1a0047aa.pth", "IMAGENET1K_V2", _V2, 81.198, 95.340, default=True),
    ),
    "resnext101_32x8d": (
        _tv("resnext101_32x8d-8ba56ff5.pth", "IMAGENET1K_V1", _V1, 79.312, 94.526),
        _tv("resnext101_32x8d-110c445d.pth", "IMAGENET1K_V2", _V2, 82.834, 96.228, default=True),
    ),
    # Saved before torchvision renamed "norm.1" to "norm1": read_weights renames the keys.
    "densenet121": (_tv("densenet121-a639ec97.pth", "IMAGENET1K_V1", _V1, 74.434, 91.972, default=True),),
    "densenet161": (_tv("densenet161-8d451a50.pth", "IMAGENET1K_V1", _V1, 77.138, 93.560, default=True),),
    "densenet169": (_tv("densenet169-b2777c0a.pth", "IMAGENET1K_V1", _V1, 75.600, 92.806, default=True),),
    "densenet201": (_tv("densenet201-c1103571.pth", "IMAGENET1K_V1", _V1, 76.896, 93.370, default=True),),
    # Ported from TensorFlow: torchvision's model rescales ImageNet-normalised input to
    # (x - 0.5) / 0.5 itself ("transform_input"); ours has no such step, so the mean and std
    # the weights expect of our model are 0.5 (tests/models/test_torchvision_oracle.py).
    "googlenet": (
        _tv(
            "googlenet-1378be20.pth", "IMAGENET1K_V1",
            Preprocess(256, 224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)), 69.778, 89.530,
            options={"variant": "torchvision"}, default=True,
        ),
    ),
    "efficientnet_b0": (
        _tv("efficientnet_b0_rwightman-7f5810bc.pth", "IMAGENET1K_V1", _bicubic(256, 224), 77.692, 93.532, default=True),
    ),
    "efficientnet_b3": (
        _tv("efficientnet_b3_rwightman-b3899882.pth", "IMAGENET1K_V1", _bicubic(320, 300), 82.008, 96.054, default=True),
    ),
    "efficientnet_b4": (
        _tv("efficientnet_b4_rwightman-23ab8bcd.pth", "IMAGENET1K_V1", _bicubic(384, 380), 83.384, 96.594, default=True),
    ),
    "efficientnet_b5": (
        _tv("efficientnet_b5_lukemelas-1a07897c.pth", "IMAGENET1K_V1", _bicubic(456, 456), 83.444, 96.628, default=True),
    ),
    "efficientnet_b6": (
        _tv("efficientnet_b6_lukemelas-24a108a5.pth", "IMAGENET1K_V1", _bicubic(528, 528), 84.008, 96.916, default=True),
    ),
    "efficientnet_b7": (
        _tv("efficientnet_b7_lukemelas-c5b4e57e.pth", "IMAGENET1K_V1", _bicubic(600, 600), 84.122, 96.908, default=True),
    ),
    "regnety_16gf": (
        _tv("regnet_y_16gf-9e6ed7dd.pth", "IMAGENET1K_V1", _V1, 80.424, 95.240),
        _tv("regnet_y_16gf-3e4a00f9.pth", "IMAGENET1K_V2", _V2, 82.886, 96.328, default=True),
        _tv("regnet_y_16gf_swag-43afe44d.pth", "IMAGENET1K_SWAG_E2E_V1", _bicubic(384, 384), 86.012, 98.054),
        _tv("regnet_y_16gf_lc_swag-f3ec0043.pth", "IMAGENET1K_SWAG_LINEAR_V1", _bicubic(224, 224), 83.976, 97.244),
    ),
    "convnext_t": (_tv("convnext_tiny-983f1562.pth", "IMAGENET1K_V1", Preprocess(236, 224), 82.520, 96.146, default=True),),
    "convnext_s": (_tv("convnext_small-0c510722.pth", "IMAGENET1K_V1", Preprocess(230, 224), 83.616, 96.650, default=True),),
    "convnext_b": (_tv("convnext_base-6075fbad.pth", "IMAGENET1K_V1", Preprocess(232, 224), 84.062, 96.870, default=True),),
    "vit_b_16": (
        _tv("vit_b_16-c867db91.pth", "IMAGENET1K_V1", _V1, 81.072, 95.318, default=True),
        _tv("vit_b_16_swag-9ac1b537.pth", "IMAGENET1K_SWAG_E2E_V1", _bicubic(384, 384), 85.304, 97.650,
            options={"image_size": 384}),
        _tv("vit_b_16_lc_swag-4e70ced5.pth", "IMAGENET1K_SWAG_LINEAR_V1", _bicubic(224, 224), 81.886, 96.180),
    ),
    "vit_l_16": (
        _tv("vit_l_16-852ce7e3.pth", "IMAGENET1K_V1", Preprocess(242, 224), 79.662, 94.638, default=True),
        _tv("vit_l_16_swag-4f3808c9.pth", "IMAGENET1K_SWAG_E2E_V1", _bicubic(512, 512), 88.064, 98.512,
            options={"image_size": 512}),
        _tv("vit_l_16_lc_swag-4d563306.pth", "IMAGENET1K_SWAG_LINEAR_V1", _bicubic(224, 224), 85.146, 97.422),
    ),
    "swin_t": (_tv("swin_t-704ceda3.pth", "IMAGENET1K_V1", _bicubic(232, 224), 81.474, 95.776, default=True),),
    "swin_s": (_tv("swin_s-5e29d889.pth", "IMAGENET1K_V1", _bicubic(246, 224), 83.196, 96.360, default=True),),
    "swin_b": (_tv("swin_b-68c6b09e.pth", "IMAGENET1K_V1", _bicubic(238, 224), 83.582, 96.640, default=True),),
}


def weights_for(name: str) -> tuple[WeightFile, ...]:
    """The published weight files that fit registered model ``name`` (empty when none do)."""
    return TORCHVISION.get(name, ())


def find_weights(name: str, which: str = "torchvision") -> WeightFile:
    """One of ``name``'s weight files: ``"torchvision"`` (its default), a tag or a file name."""
    files = weights_for(name)
    if not files:
        have = ", ".join(n for n in TORCHVISION)
        raise CheckpointError(f"no published weights fit model {name!r}; models with some: {have}")
    for f in files:
        if (which == "torchvision" and f.default) or which in (f.tag, f.file_name):
            return f
    choices = ", ".join(["torchvision", *(f.tag for f in files)])
    raise CheckpointError(f"model {name!r} has no weights {which!r}; expected one of {choices}")


# --- reading a source ------------------------------------------------------------------------


def _hash_from_name(name: str) -> str | None:
    match = _HASH_IN_NAME.search(name)
    return match.group(1) if match else None


def _is_url(source: str | os.PathLike) -> bool:
    return isinstance(source, str) and urllib.parse.urlparse(source).scheme in ("http", "https", "file")


def cache_dir() -> Path:
    """Where downloaded weights are kept: ``$CNNLAB_WEIGHTS_CACHE``, else ~/.cache/cnnlab/weights."""
    env = os.environ.get("CNNLAB_WEIGHTS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "cnnlab" / "weights"


def _check_hash(digest: str, expected: str, what: str) -> None:
    expected = expected.lower()
    if not re.fullmatch(r"[0-9a-f]{1,64}", expected):
        raise CheckpointError(f"sha256 {expected!r} for {what} is not a hexadecimal digest or prefix")
    if not digest.startswith(expected):
        raise CheckpointError(
            f"{what} failed its hash check: sha256 {digest[:16]}... does not start with {expected}"
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def download(
    url: str, *, sha256: str | None = None, cache: Path | None = None, progress: bool = True
) -> Path:
    """The cached copy of ``url``, downloading it first if needed; verified as the module says.

    The file is written as ``<name>.part`` and renamed only after its hash checked out, so the
    cache never holds a partial or unverified download; a failed check deletes the part file.
    """
    name = Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise CheckpointError(f"URL {url!r} names no file")
    expected = sha256 or _hash_from_name(name)
    folder = cache or cache_dir()
    target = folder / name
    if target.is_file():
        return target
    hub = Path(torch.hub.get_dir()) / "checkpoints" / name
    if hub.is_file():  # a copy torch.hub downloaded before: verify it, then use it where it is
        if expected:
            _check_hash(_sha256(hub), expected, str(hub))
        return hub
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"cannot create the weights cache {folder}: {e.strerror}") from None
    part = folder / f"{name}.{os.getpid()}.part"
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with _progress_bar(name, total, enabled=progress) as advance:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    h.update(chunk)
                    advance(len(chunk))
        if total is not None and part.stat().st_size != total:
            raise CheckpointError(f"download of {url} stopped after {part.stat().st_size:,} of {total:,} bytes")
        if expected:
            _check_hash(h.hexdigest(), expected, f"download of {url}")
        os.replace(part, target)
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        raise CheckpointError(f"cannot download {url}: {reason}") from None
    finally:
        part.unlink(missing_ok=True)
    return target


class _progress_bar:
    """A rich progress bar on stderr (nothing when disabled): ``with ... as advance: advance(n)``."""

    def __init__(self, label: str, total: int | None, *, enabled: bool) -> None:
        self.label, self.total, self.enabled = label, total, enabled

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        self.bar = Progress(
            "{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            console=Console(file=sys.stderr), transient=True,
        )
        self.bar.start()
        task = self.bar.add_task(f"downloading {self.label}", total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.stop()


def _refusal(path: Path, error: Exception) -> CheckpointError:
    text = str(error)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        what = f"calls {found.group(1)} when unpickled"
    else:
        op = re.search(r"Unsupported operand \d+|Unsupported class \S+", text)
        what = f"holds pickle instructions weights-only loading does not allow ({op.group(0) if op else 'see torch.load'})"
    return CheckpointError(
        f"refused to load {path}: it {what}; only tensors and plain containers are read "
        "(torch.load(weights_only=True)) and nothing in the file was run"
    )


def _read_pth(path: Path) -> Any:
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:2] == b"PK" and not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is a truncated or corrupt zip archive, not a readable .pth file")
    if head[:2] != b"PK" and head[:1] != b"\x80":
        raise CheckpointError(
            f"{path} is not a PyTorch weights file: neither a zip archive nor a legacy torch.save pickle "
            f"(it starts with {head!r})"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise _refusal(path, e) from None
    except (RuntimeError, EOFError, KeyError, ValueError) as e:
        first = str(e).split(". ")[0]
        raise CheckpointError(f"{path} is truncated or corrupt: {first}") from None


def _run_folder_file(folder: Path) -> Path:
    for name in ("best.safetensors", "last.safetensors"):
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"run folder {folder} has no best.safetensors or last.safetensors (did training finish an epoch?)")


# torchvision's DenseNet files predate its "norm1"/"conv2" module names: "denselayer1.norm.1.weight".
_DENSENET_LEGACY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var))$")


def _normalise_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Undo the usual wrappings: DDP's "module." prefix and DenseNet's legacy dotted names."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return {
        (m.group(1) + m.group(2) if (m := _DENSENET_LEGACY.match(k)) else k): v for k, v in state.items()
    }


def _as_state_dict(obj: Any, path: Path) -> dict[str, Tensor]:
    # Training checkpoints of other tools wrap the state dict: {"state_dict": ...}, {"model": ...}.
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict (a mapping of names to tensors)")
    bad = next((k for k, v in obj.items() if not isinstance(v, Tensor)), None)
    if bad is not None:
        raise CheckpointError(
            f"{path} is not a state dict: entry {bad!r} is a {type(obj[bad]).__name__}, not a tensor "
            f"(keys: {', '.join(list(map(str, obj))[:5])})"
        )
    return _normalise_keys(dict(obj))


def read_weights(
    source: str | os.PathLike,
    *,
    sha256: str | None = None,
    cache: Path | None = None,
    progress: bool = True,
) -> dict[str, Tensor]:
    """The state dict in ``source`` (a file, a run folder or a URL: see the module docstring)."""
    if _is_url(source):
        path = download(str(source), sha256=sha256, cache=cache, progress=progress)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise CheckpointError(f"no weights at {path}")
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise CheckpointError(f"{path} is a folder but not a run folder (no config.json)")
            path = _run_folder_file(path)
        if sha256:
            _check_hash(_sha256(path), sha256, str(path))
    if path.suffix == ".safetensors" or _looks_like_safetensors(path):
        try:
            state: Any = load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from None
    else:
        state = _read_pth(path)
    return _as_state_dict(state, path)


def _looks_like_safetensors(path: Path) -> bool:
    # 8-byte little-endian header length, then the JSON header.
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


# --- checking a state dict against a model ---------------------------------------------------


def _signature(state: Mapping[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def fit_problems(model: nn.Module, state: Mapping[str, Tensor], *, limit: int = 3) -> list[str]:
    """The first ``limit`` ways ``state`` does not fit ``model``, each one phrase; [] when it fits."""
    own = _signature(model.state_dict())
    theirs = _signature(state)
    problems = [f"{k} {theirs[k]} vs {own[k]} in the model" for k in own if k in theirs and own[k] != theirs[k]]
    problems += [f"missing {k} {own[k]}" for k in own if k not in theirs]
    problems += [f"unexpected {k} {theirs[k]}" for k in theirs if k not in own]
    more = [f"{len(problems) - limit} more"] if len(problems) > limit else []
    return problems[:limit] + more


@functools.cache
def _registered_signature(name: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        return _signature(create_model(name).state_dict())


def _roots(signature: Mapping[str, Any]) -> set[str]:
    return {k.split(".", 1)[0] for k in signature}


@functools.cache
def _family_roots() -> dict[str, set[str]]:
    # The top-level module names of each family's smallest member: a cheap first filter.
    smallest: dict[str, str] = {}
    for name in list_models():
        info = get_model_info(name)
        best = smallest.get(info.family)
        if best is None or (info.params or math.inf) < (get_model_info(best).params or math.inf):
            smallest[info.family] = name
    return {family: _roots(_registered_signature(name)) for family, name in smallest.items()}


_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
_CANDIDATES = 5  # models compared key by key: building one, even on the meta device, takes ~0.3 s


def closest_models(state: Mapping[str, Tensor], *, n: int = 3) -> list[tuple[str, float]]:
    """Up to ``n`` registered models whose (key, shape) pairs overlap ``state``'s most, best first.

    Overlap = shared (key, shape) pairs / the larger of the two key counts (0..1), so a model
    with extra layers does not win by containing every key. Searched: the families sharing at
    least half of their top-level module names with ``state``, and of those the
    ``_CANDIDATES`` models nearest to it in parameter count; models sharing nothing are left out.
    """
    theirs = set(_signature(state).items())
    mine = _roots(state)
    families = {f for f, roots in _family_roots().items() if len(roots & mine) >= len(roots | mine) / 2}
    size = max(1, sum(v.numel() for k, v in state.items() if not k.endswith(_BUFFERS)))

    def distance(name: str) -> float:
        params = get_model_info(name).params
        return abs(math.log(params / size)) if params else math.inf

    names = sorted((m for m in list_models() if get_model_info(m).family in families), key=distance)
    scores = []
    for name in names[:_CANDIDATES]:
        own = set(_registered_signature(name).items())
        scores.append((name, len(own & theirs) / max(len(own), len(theirs))))
    scores.sort(key=lambda item: -item[1])  # stable: equal scores stay in parameter-count order
    return [item for item in scores[:n] if item[1] > 0]


def load_weights(
    model: nn.Module,
    source: str | os.PathLike | Mapping[str, Tensor],
    *,
    sha256: str | None = None,
    cache: Path | None = None,
    progress: bool = True,
) -> nn.Module:
    """Load ``source`` (see :func:`read_weights`, or a state dict) into ``model``, all keys or nothing.

    A source that does not fit raises one :class:`CheckpointError` line naming its first
    mismatching keys and shapes and the registered model whose keys it fits best; the model
    is left untouched then.
    """
    state = dict(source) if isinstance(source, Mapping) else read_weights(source, sha256=sha256, cache=cache, progress=progress)
    origin = "the state dict" if isinstance(source, Mapping) else str(source)
    for key, value in model.state_dict().items():
        # Files saved before PyTorch 0.4.1 (torchvision's 2017 ones) lack BN's step counter,
        # which only momentum=None uses: it starts at 0, as load_state_dict would set it.
        stem = key.rsplit(".", 1)[0]
        if key.endswith("num_batches_tracked") and key not in state and f"{stem}.running_mean" in state:
            state[key] = torch.zeros_like(value, device="cpu")
    problems = fit_problems(model, state)
    if problems:
        close = ", ".join(f"{name} ({score:.0%})" for name, score in closest_models(state))
        hint = f"; closest registered models by keys and shapes: {close}" if close else ""
        raise CheckpointError(f"{origin} does not fit model {model_label(model)}: {'; '.join(problems)}{hint}")
    model.load_state_dict(state, strict=True)
    return model

