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

The published files that fit each model are listed in :mod:`cnnlab.models.weight_files`.

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
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from cnnlab.errors import CheckpointError
from cnnlab.models.registry import (
    create_model,
    get_model_info,
    list_models,
    model_label,
)
from cnnlab.models.weight_files import (
    WeightFile,
    find_weights,
    hash_from_name,
    weights_for,
)

_CHUNK = 1 << 20  # bytes per read while downloading and hashing

__all__ = [
    "cache_dir",
    "check_fit",
    "closest_models",
    "download",
    "fit_problems",
    "head_keys",
    "load_weights",
    "new_head",
    "pretrained",
    "read_weights",
    "resolve_weights",
    "weight_options",
]

# --- reading a source ------------------------------------------------------------------------


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
    expected = sha256 or hash_from_name(name)
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
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TransferSpeedColumn,
        )

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


def fit_problems(
    model: nn.Module, state: Mapping[str, Tensor], *, limit: int = 3, ignore: frozenset[str] | set[str] = frozenset()
) -> list[str]:
    """The first ``limit`` ways ``state`` does not fit ``model``, each one phrase; [] when it fits.
    Keys in ``ignore`` (a classifier being replaced) are left out on both sides."""
    own = {k: v for k, v in _signature(model.state_dict()).items() if k not in ignore}
    theirs = {k: v for k, v in _signature(state).items() if k not in ignore}
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


def head_keys(model: nn.Module) -> frozenset[str]:
    """The state-dict keys of a registry-built model's classifier(s): those whose shape depends
    on ``num_classes`` (found by building the model twice on the meta device, with 2 and 3
    classes). ResNet: ``fc.weight``, ``fc.bias``; GoogLeNet adds its auxiliary heads' last layers."""
    info = get_model_info(model)
    options = {k: v for k, v in info.build_options.items() if k != "num_classes"}
    with torch.device("meta"):
        two = _signature(create_model(info.name, num_classes=2, **options).state_dict())
        three = _signature(create_model(info.name, num_classes=3, **options).state_dict())
    return frozenset(k for k in two if two[k] != three.get(k))


def new_head(model: nn.Module, keys: frozenset[str]) -> None:
    """Zero the classifier parameters ``keys`` (:func:`head_keys`) of a model about to be fine-tuned.

    Zero, as Big Transfer does (Kolesnikov et al. 2020, Sec. 3.3): the new head starts at
    uniform predictions, and no random head sends random gradients into pretrained features.
    A head holding anything but ``nn.Linear`` layers (NIN's class-map conv, followed by a ReLU,
    would never leave zero) keeps the builder's own initialisation instead.
    """
    owners = {k.rsplit(".", 1)[0] for k in keys}
    modules = dict(model.named_modules())
    if all(isinstance(modules.get(o), nn.Linear) for o in owners):
        state = model.state_dict()
        with torch.no_grad():
            for k in keys:
                state[k].zero_()


def load_weights(
    model: nn.Module,
    source: str | os.PathLike | Mapping[str, Tensor],
    *,
    sha256: str | None = None,
    cache: Path | None = None,
    progress: bool = True,
    replace_head: bool = False,
) -> nn.Module:
    """Load ``source`` (see :func:`read_weights`, or a state dict) into ``model``, all keys or nothing.

    A source that does not fit raises one :class:`CheckpointError` line naming its first
    mismatching keys and shapes and the registered model whose keys it fits best; the model
    is left untouched then. ``replace_head``: load everything but the classifier
    (:func:`head_keys`, whatever its size in the file), which gets :func:`new_head`.
    """
    state = dict(source) if isinstance(source, Mapping) else read_weights(source, sha256=sha256, cache=cache, progress=progress)
    origin = "the state dict" if isinstance(source, Mapping) else str(source)
    return _load_state(model, state, origin, replace_head=replace_head)


def _check_fits(model: nn.Module, state: dict[str, Tensor], origin: str, label: str, *,
                ignore: frozenset[str] = frozenset()) -> None:
    """Raise the one-line error naming how ``state`` does not fit ``model`` (and the closest
    registered models), after filling in what old files lack."""
    for key, value in model.state_dict().items():
        # Files saved before PyTorch 0.4.1 (torchvision's 2017 ones) lack BN's step counter,
        # which only momentum=None uses: it starts at 0, as load_state_dict would set it.
        stem = key.rsplit(".", 1)[0]
        if key.endswith("num_batches_tracked") and key not in state and f"{stem}.running_mean" in state:
            state[key] = torch.zeros_like(value, device="cpu")
    problems = fit_problems(model, state, ignore=ignore)
    if problems:
        close = ", ".join(f"{name} ({score:.0%})" for name, score in closest_models(state))
        hint = f"; closest registered models by keys and shapes: {close}" if close else ""
        raise CheckpointError(f"{origin} does not fit model {label}: {'; '.join(problems)}{hint}")


def _load_state(model: nn.Module, state: dict[str, Tensor], origin: str, *, replace_head: bool = False) -> nn.Module:
    heads = head_keys(model) if replace_head else frozenset()
    if heads and not all(k in state for k in heads):
        missing = next(k for k in sorted(heads) if k not in state)
        raise CheckpointError(f"{origin} has no classifier {missing} to replace; is it a state dict of {model_label(model)}?")
    _check_fits(model, state, origin, model_label(model), ignore=heads)
    if heads:
        model.load_state_dict({k: v for k, v in state.items() if k not in heads}, strict=False)
        new_head(model, heads)
    else:
        model.load_state_dict(state, strict=True)
    return model



def resolve_weights(name: str, weights: str | os.PathLike) -> tuple[str | Path, WeightFile | None]:
    """Where ``weights`` for registered model ``name`` come from, and their table row if any.

    ``"torchvision"`` is the model's default published file; a tag (``"IMAGENET1K_V1"``) or a
    file name of its table rows is that file (downloaded, unless a file of that name is in the
    current folder); anything else is a path or URL as given (its table row too when its file
    name is one of the model's published files).
    """
    text = str(weights)
    files = weights_for(name)
    local = not _is_url(text) and Path(text).expanduser().is_file()  # a file here wins over a download
    if text == "torchvision" or any(text == f.tag or (text == f.file_name and not local) for f in files):
        row = find_weights(name, text)
        return row.url, row
    if not _is_url(text) and not Path(text).expanduser().exists() and re.fullmatch(r"[A-Z][A-Z0-9_]*", text):
        find_weights(name, text)  # looks like a tag ("IMAGENET1K_V9"), not a file: say which tags there are
    base = Path(urllib.parse.urlparse(text).path).name if _is_url(text) else Path(text).name
    row = next((f for f in files if f.file_name == base), None)
    return (text if _is_url(text) else Path(text)), row


def weight_options(name: str, weights: str | os.PathLike, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``options`` plus the builder options that ``weights`` need when they are a published
    file of model ``name`` (``stride_in_3x3=True`` for torchvision's ResNet-50); an option
    given that contradicts them fails. A run records these, so that it is rebuilt the same way."""
    options = dict(options or {})
    _, row = resolve_weights(name, weights)
    needed = dict(row.options) if row else {}
    clash = {k: v for k, v in options.items() if k in needed and needed[k] != v}
    if clash:
        key = next(iter(clash))
        raise CheckpointError(
            f"{row.file_name} needs {key}={needed[key]!r} for model {name!r}, got {key}={clash[key]!r}"  # type: ignore[union-attr]
        )
    return {**needed, **options}


def pretrained(
    name: str,
    weights: str | os.PathLike,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    progress: bool = True,
    **options: Any,
) -> nn.Module:
    """Registered model ``name`` built with the options its weights need, the weights loaded.

    ``weights``: see :func:`resolve_weights`; a published file's row says which builder
    options it needs (:func:`weight_options`). A ``num_classes`` other than the file's head
    size (fine-tuning on other classes) loads everything but the classifier, which is new
    (:func:`new_head`: zero).
    """
    source, _ = resolve_weights(name, weights)
    model = create_model(name, num_classes=num_classes, in_chans=in_chans, **weight_options(name, weights, options))
    state = read_weights(source, progress=progress)
    own = model.state_dict()
    replace = num_classes is not None and any(
        k in state and tuple(state[k].shape) != tuple(own[k].shape) for k in head_keys(model)
    )
    return _load_state(model, state, str(source), replace_head=replace)


def check_fit(name: str, weights: str | os.PathLike, *, progress: bool = True) -> tuple[int, WeightFile | None]:
    """Check that ``weights`` fit registered model ``name`` (built on the meta device with the
    options they need) without loading them: (tensors in the file, its table row or None).
    Raises the one-line :class:`CheckpointError` that :func:`load_weights` would."""
    source, row = resolve_weights(name, weights)
    with torch.device("meta"):
        model = create_model(name, **weight_options(name, weights))
    state = read_weights(source, progress=progress)
    count = len(state)  # as in the file, before the BN counters an old file lacks are filled in
    _check_fits(model, state, str(source), name)
    return count, row
