"""Models out: ONNX files from torch's exporter, checked with onnxruntime.

``export_onnx`` runs torch's ONNX exporter (``torch.onnx.export(..., dynamo=True)``: the model
is captured with ``torch.export`` and translated by onnxscript's torchlib) and writes one
self-contained ``.onnx`` file (weights inside, as long as they fit protobuf's 2 GiB; larger
models get a ``<name>.onnx.data`` file beside it). The file also carries what a reader needs to
use it: the input size and the preprocessing (mean, std, a run's padding) and class names, as
``cnnlab.*`` metadata properties, which :class:`OnnxModel` and ``cnnlab predict`` read back.

``check_onnx`` then runs the file in onnxruntime on real test images and compares with
PyTorch (:class:`OnnxCheck`: max |logit difference| and top-1 agreement, the worst over the
batch sizes tried). A file with a free batch dimension is run at two batch sizes, all the
images at once and one at a time, since ``torch.export`` traces the free dimension at size 2
and a graph that silently depended on the batch (a shape baked in, statistics over the batch)
would pass at one size and fail at another.

An operator the exporter cannot translate is named in one :class:`~cnnlab.errors.CnnlabError`
line; nothing is written then, and an existing file at the target path is left as it was (the
file is written beside it and renamed into place).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from cnnlab.errors import CnnlabError
from cnnlab.models.registry import main_output, model_label
from cnnlab.training.inference import Agreement, agreement

__all__ = ["DEFAULT_OPSET", "OPSETS", "OnnxCheck", "OnnxModel", "check_onnx", "export_onnx"]

DEFAULT_OPSET = 20  # torch 2.13's default for its exporter
OPSETS = range(18, 24)  # the opsets torch's exporter writes directly (18 .. 23)
_PROTOBUF_LIMIT = 2**31 - 1  # bytes: a larger model cannot hold its weights inside the file
_METADATA_PREFIX = "cnnlab."


def _writable(path: Path) -> None:
    parent = path.parent
    if not parent.is_dir():
        raise CnnlabError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise CnnlabError(f"cannot write {path}: folder {parent} is not writable")
    if path.is_dir():
        raise CnnlabError(f"cannot write {path}: it is a folder")


def _unsupported(model: nn.Module, opset: int, error: Exception) -> CnnlabError:
    text = str(error)
    op = re.search(r"No ONNX function found for <OpOverload\(op='([^']+)'", text)
    if op:
        return CnnlabError(
            f"cannot export {model_label(model)} to ONNX: operator {op.group(1)} has no ONNX translation (opset {opset})"
        )
    summary = re.findall(r"<class '[^']+'>: ([^\n]+)", text)
    reason = summary[0] if summary else text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return CnnlabError(f"cannot export {model_label(model)} to ONNX (opset {opset}): {reason}")


class _SlicedAdaptiveMaxPool(nn.Module):
    """``nn.AdaptiveMaxPool2d`` written as slices and maxima, which ONNX can express.

    ONNX has no adaptive max pooling (torch's exporter has no translation for it: PReLU-net's
    spatial pyramid pooling). Bin i of n over a side of h pixels is rows floor(i h / n) to
    ceil((i + 1) h / n), PyTorch's own bin edges, so the outputs are identical. The loops run at
    export time over the (static) map size and unroll into the graph.
    """

    def __init__(self, output_size: int | tuple[int | None, int | None]) -> None:
        super().__init__()
        self.output_size = output_size if isinstance(output_size, tuple) else (output_size, output_size)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        oh, ow = (size or side for size, side in zip(self.output_size, (h, w)))
        rows = []
        for i in range(oh):
            top, bottom = i * h // oh, -(-(i + 1) * h // oh)
            cells = [x[..., top:bottom, j * w // ow: -(-(j + 1) * w // ow)].amax(dim=(-2, -1)) for j in range(ow)]
            rows.append(torch.stack(cells, dim=-1))
        return torch.stack(rows, dim=-2)  # (B, C, oh, ow)


def _exportable(model: nn.Module) -> nn.Module:
    """``model``, or a copy with the layers ONNX cannot express replaced by equivalents."""
    targets = [name for name, m in model.named_modules() if isinstance(m, nn.AdaptiveMaxPool2d) and not m.return_indices]
    if not targets:
        return model
    model = copy.deepcopy(model)
    for name in targets:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child,
                _SlicedAdaptiveMaxPool(model.get_submodule(name).output_size))
    return model


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    input_size: Sequence[int],
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    metadata: Mapping[str, object] | None = None,
) -> Path:
    """Write ``model`` (eval mode, on the CPU) as an ONNX file taking (B, *input_size) images.

    ``dynamic_batch``: the batch dimension is free (named "batch"); otherwise it is fixed at 1.
    ``metadata``: stored as ``cnnlab.<key>`` properties, JSON-encoded (mean, std, classes, ...).
    """
    path = Path(path)
    if opset not in OPSETS:
        raise CnnlabError(f"opset {opset} is not one torch's ONNX exporter writes; expected {OPSETS.start}..{OPSETS.stop - 1}")
    _writable(path)
    model = model.eval().to("cpu")
    # torch.export specialises a dimension of size 1, so a free batch is traced with 2.
    example = torch.zeros(2 if dynamic_batch else 1, *input_size)
    shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    exporter_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # "torchvision is not installed" notes: not ours to show
    try:
        with warnings.catch_warnings():
            # torch.export's own deprecation notices about its internals: nothing a user can act on.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            program = torch.onnx.export(
                _exportable(model), (example,), None, dynamo=True, opset_version=opset, dynamic_shapes=shapes,
                input_names=["images"], output_names=["logits"], verbose=False,
            )
    except Exception as e:  # the exporter raises many types; each becomes one line
        raise _unsupported(model, opset, e) from None
    finally:
        exporter_log.setLevel(level)
    props = {"input_size": list(input_size), "model": model_label(model), **(metadata or {})}
    for key, value in props.items():
        program.model.metadata_props[_METADATA_PREFIX + key] = json.dumps(value)
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    if size >= _PROTOBUF_LIMIT:
        program.save(path, external_data=True)  # weights in path.onnx.data, named inside the file
        return path
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        program.save(partial, external_data=False)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


class OnnxModel:
    """An ONNX file run by onnxruntime on the CPU; call it with a (B, C, H, W) float tensor."""

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise CnnlabError(f"no ONNX file at {self.path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own exception types
            raise CnnlabError(f"{self.path} is not a loadable ONNX model: {str(e).splitlines()[0]}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata: dict[str, object] = {
            k[len(_METADATA_PREFIX):]: json.loads(v) for k, v in meta.items() if k.startswith(_METADATA_PREFIX)
        }
        self.input_name = self.session.get_inputs()[0].name
        self.batch = self.session.get_inputs()[0].shape[0]  # an int when fixed, a name when free

    def __call__(self, x: Tensor) -> Tensor:
        feed = x.detach().to("cpu", torch.float32).contiguous()
        if isinstance(self.batch, int) and len(feed) != self.batch:
            # A fixed-batch file: run the images in batches of its size.
            return torch.cat([self(part) for part in feed.split(self.batch)])
        return torch.from_numpy(self.session.run(None, {self.input_name: feed.numpy()})[0])


@dataclasses.dataclass(frozen=True)
class OnnxCheck(Agreement):
    """:class:`Agreement` of an ONNX file with PyTorch: the worst over ``batch_sizes``."""

    batch_sizes: tuple[int, ...] = ()  # the batch sizes onnxruntime ran the images at

    def describe(self) -> str:
        sizes = " and ".join(map(str, self.batch_sizes))
        return f"{super().describe()}, at batch size{'s' if len(self.batch_sizes) > 1 else ''} {sizes}"


def check_onnx(path: str | os.PathLike, model: nn.Module, images: Tensor) -> OnnxCheck:
    """Run ``images`` through the ONNX file and through ``model``; how closely they agree. A
    free-batch file runs at two batch sizes (all at once, then one at a time; the worse counts),
    a fixed-batch file at its own."""
    with torch.inference_mode():
        reference = main_output(model.eval().to("cpu")(images))
    onnx = OnnxModel(path)
    if isinstance(onnx.batch, int):
        sizes = (onnx.batch,)
    else:
        sizes = (len(images), 1) if len(images) > 1 else (1,)
    runs = [agreement(reference, torch.cat([onnx(part) for part in images.split(size)])) for size in sizes]
    return OnnxCheck(max(r.max_abs_diff for r in runs), runs[0].scale, min(r.top1 for r in runs), len(images), sizes)
