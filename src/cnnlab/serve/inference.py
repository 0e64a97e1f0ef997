"""Everything the server asks of the library, in one module.

The rest of ``serve`` speaks HTTP and PNG; only this module imports cnnlab's training, data,
model, analysis and viz code, so when those move, this is the one file to change.

- :class:`ServedRun`: one run folder, loaded once (on first use, under a lock) and shared by
  every request: the model from :func:`cnnlab.training.run.load_run`, the layer table from
  :func:`cnnlab.analysis.summary` (shape, parameters, MACs, receptive field per layer), the
  registry's :class:`~cnnlab.models.registry.ModelInfo`, the test split
  (:func:`cnnlab.training.evaluate.run_dataset`) for "random test image".
- :meth:`ServedRun.analyse`: one image through the image policy
  (:func:`cnnlab.data.image.to_model_input`) and one forward pass that records every shown
  layer's output, read as channel maps the way the attribution module reads a layer as a
  grid (conv maps, Swin's channels-last maps, ViT's token sequences).
- :meth:`ServedRun.unit`: a unit's receptive field on the input and, for a convolution, the
  input window, the kernel and the dot product that gave its value.
- :meth:`ServedRun.attribution`: Grad-CAM and occlusion from
  :mod:`cnnlab.analysis.attribution`.
- :class:`ServedWeights`: the same for a registered model with weights and no run folder,
  loaded and fed as ``cnnlab predict MODEL --weights W`` does.

A model is not safe to share between threads while hooks are attached to it, so each run has
a lock: requests for one run compute one after another; the app's gate bounds the total.
"""

from __future__ import annotations

import copy
import math
import os
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.analysis import Field, summary
from cnnlab.analysis.attribution import GridLayer, as_grid, attribute, to_maps
from cnnlab.data.drawing import prepare_digit
from cnnlab.data.files import safe_name
from cnnlab.data.image import DEFAULT_MAX_PIXELS, Decoded, ImageTooLarge, dark_background, decode_upload, prepare_upload, to_model_input
from cnnlab.data.stream import file_split
from cnnlab.errors import CnnlabError
from cnnlab.models import get_model_info, main_output
from cnnlab.training.config import TrainConfig
from cnnlab.training.evaluate import dataset_outputs, run_dataset
from cnnlab.training.predict import WeightsCrop, open_predictor
from cnnlab.training.run import Run, load_run
from cnnlab.viz.activations import first_conv, padded_image

__all__ = ["DEFAULT_MAX_PIXELS", "Analysis", "ImageTooLarge", "LayerView", "RunUnavailable", "ServedRun", "ServedWeights",
           "find_runs", "unique_ids", "weights_id"]

# Layers whose output is their input at inference: shown in the table, not as maps again.
PASS_THROUGH = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
MAX_VECTOR = 65_536  # a layer's output drawn as a vector of units only up to this many values
TOP_CHANNELS = 8  # a convolution's dot product shown in full for this many input channels


@dataclass(frozen=True)
class LayerView:
    """One row of the layer table and, when it can be drawn, how its output reads as maps."""

    index: int
    name: str  # the module's name in model.named_modules() ("" for the model itself)
    label: str  # the summary's row name
    type: str
    output_shape: tuple[int, ...] | None
    params: int
    macs: int
    field: Field | None
    layout: str | None  # "channels_first", "channels_last", "tokens", "vector"; None: not drawn
    channels: int = 0
    grid: tuple[int, int] = (0, 0)  # (rows, columns) of one channel's map
    extra_tokens: int = 0  # tokens layout: class/distillation tokens left out of the map
    units: int = 0  # vector layout: real units (the last row of the wrapped map may be short)
    note: str = ""  # why a layer is not drawn, or how it is drawn

    @property
    def is_conv(self) -> bool:
        return self.type == "Conv2d" and self.layout == "channels_first"

    def table_row(self) -> dict:
        f = self.field
        return {
            "index": self.index, "name": self.label, "type": self.type,
            "output_shape": list(self.output_shape) if self.output_shape else None,
            "params": self.params, "macs": self.macs,
            "receptive_field": None if f is None else ("global" if f.is_global else f.describe("size")),
            "jump": None if f is None else f.describe("jump"),
            "maps": self.layout is not None, "layout": self.layout, "channels": self.channels,
            "grid": list(self.grid), "units": self.units, "note": self.note, "conv": self.is_conv,
        }


@dataclass
class Analysis:
    """One input as the model saw it, and what every drawn layer made of it."""

    image: torch.Tensor  # uint8 (C, H, W) as the network sees it, padding included
    x: torch.Tensor  # (1, C, H, W) float32 model input
    probs: torch.Tensor  # (classes,)
    maps: dict[int, torch.Tensor]  # layer index -> (channels, rows, cols) float16
    source: dict  # where the input came from, for the page: kind, index, label, notes

    @property
    def nbytes(self) -> int:
        tensors = [self.image, self.x, self.probs, *self.maps.values()]
        return sum(t.numel() * t.element_size() for t in tensors)


def _wrap(units: int) -> tuple[int, int]:
    """A vector of ``units`` drawn as rows of about sqrt(units), at least 10 wide: (rows, cols)."""
    cols = min(units, max(10, math.ceil(math.sqrt(units))))
    return math.ceil(units / cols), cols


def _first_tensor(output) -> torch.Tensor | None:
    """A hooked module's output tensor (the models' one rule), or None for outputs that are not tensors."""
    if isinstance(output, (tuple, list)) and not output:
        return None
    t = main_output(output)
    return t if isinstance(t, torch.Tensor) else None


class RunUnavailable(CnnlabError):
    """A run folder that cannot be loaded (weights missing or corrupt): the server's fault, not the request's."""


class ServedRun:
    """A run folder served by id; the model is loaded on first use and kept."""

    def __init__(self, run_id: str, path: Path, *, run: Run | None = None) -> None:
        """``run``: an already loaded Run (a model built in a test, say) instead of reading ``path``."""
        config = run.config if run is not None else TrainConfig.load(path / "config.json")
        self._setup(run_id, path, config.model, config.data)
        if run is not None:
            self.layers = self._layer_views(run)
            self._run = run

    def _setup(self, run_id: str, path: Path, model_name: str, data_name: str) -> None:
        self.id = run_id
        self.path = path
        self.model_name = model_name
        self.data_name = data_name
        self.lock = threading.RLock()  # one computation on this model at a time
        self._run: Run | None = None
        self._error: str | None = None
        self.layers: list[LayerView] = []
        self._test = None

    # --- loading ----------------------------------------------------------------------------
    @property
    def state(self) -> str:
        return "error" if self._error else ("loaded" if self._run is not None else "not loaded")

    def brief(self) -> dict:
        return {"id": self.id, "folder": self.path.name, "model": self.model_name, "data": self.data_name,
                "state": self.state, "error": self._error}

    def load(self) -> Run:
        with self.lock:
            if self._run is not None:
                return self._run
            if self._error is not None:
                raise RunUnavailable(self._error)
            try:
                run = self._open()
                self.layers = self._layer_views(run)
            except (CnnlabError, OSError, ValueError, RuntimeError) as e:
                self._error = f"cannot load {self._what}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                raise RunUnavailable(self._error) from None
            self._run = run
            return run

    def _open(self) -> Run:
        return load_run(self.path)

    @property
    def _what(self) -> str:
        return f"run {self.path.name}"

    @property
    def input_size(self) -> tuple[int, int, int]:
        info = self.load().data_info
        c, h, w = info["image_size"]
        pad = int(info.get("pad", 0))
        return (c, h + 2 * pad, w + 2 * pad)

    def _layer_views(self, run: Run) -> list[LayerView]:
        info = run.data_info
        c, h, w = info["image_size"]
        pad = int(info.get("pad", 0))
        size = (c, h + 2 * pad, w + 2 * pad)
        rows = summary(run.model, size).rows
        modules = dict(run.model.named_modules())
        # Shapes as the hooks will see them (batch of one), from one forward pass of zeros.
        shapes: dict[str, tuple[int, ...]] = {}
        calls: dict[str, int] = {}
        names = [("" if r.name == "(model)" else r.name) for r in rows]

        def watch(name):
            def hook(module, inputs, output):
                calls[name] = calls.get(name, 0) + 1
                t = _first_tensor(output)
                if t is not None and name not in shapes:
                    shapes[name] = tuple(t.shape)
            return hook

        handles = [modules[n].register_forward_hook(watch(n)) for n in set(names) if n in modules]
        try:
            with torch.no_grad():
                run.model(torch.zeros(1, *size, device=_device(run.model)))
        finally:
            for hdl in handles:
                hdl.remove()
        views = []
        for i, (row, name) in enumerate(zip(rows, names)):
            base = dict(index=i, name=name, label=row.name, type=row.type, output_shape=row.output_shape,
                        params=row.params, macs=row.macs, field=row.field)
            later = any(n.startswith(name + ".") for n in names[i + 1:]) if name else True
            module = modules.get(name)
            shape = shapes.get(name)
            if not name or later:
                views.append(LayerView(**base, layout=None, note="a block's own operations; its output is drawn where the block ends" if name else "the network's output: see the class probabilities"))
            elif isinstance(module, PASS_THROUGH) or type(module).__name__ == "DropPath":
                views.append(LayerView(**base, layout=None, note="passes its input on unchanged at inference"))
            elif calls.get(name, 0) != 1 or shape is None:
                views.append(LayerView(**base, layout=None, note=f"runs {calls.get(name, 0)} times in one pass; each output is drawn after the layer that uses it"))
            elif shape[0] != 1:
                views.append(LayerView(**base, layout=None, note=f"works on {shape[0]} windows at once (output {tuple(shape)})"))
            else:
                views.append(self._drawable(base, shape, (size[1], size[2]), name))
        return views

    @staticmethod
    def _drawable(base: dict, shape: tuple[int, ...], image: tuple[int, int], name: str) -> LayerView:
        grid = as_grid(name, shape, image, 1)
        if grid is not None:
            channels = shape[1] if grid.layout == "channels_first" else shape[-1]
            note = {"channels_first": "", "channels_last": "channels-last maps (B, H, W, C) shown per channel",
                    "tokens": f"tokens as a {grid.grid[0]}x{grid.grid[1]} patch grid per feature"
                              + {0: "", 1: " (the class token left out)"}.get(grid.extra_tokens,
                                                                            " (class and distillation tokens left out)")}[grid.layout]
            return LayerView(**base, layout=grid.layout, channels=channels, grid=grid.grid,
                             extra_tokens=grid.extra_tokens, note=note)
        units = math.prod(shape[1:])
        if units <= MAX_VECTOR:
            rows, cols = _wrap(units)
            return LayerView(**base, layout="vector", channels=1, grid=(rows, cols), units=units,
                             note=f"{units} units in rows of {cols}")
        return LayerView(**base, layout=None, note=f"output {tuple(shape[1:])} does not read as maps")

    # --- inputs ----------------------------------------------------------------------------
    @property
    def data_info(self) -> dict:
        return self.load().data_info

    @property
    def is_digit_like(self) -> bool:
        """Light strokes on a dark, square, one-channel field (MNIST): drawings get MNIST's preparation."""
        info = self.data_info
        c, h, w = info["image_size"]
        return c == 1 and h == w and dark_background(info["mean"])

    def test_set(self):
        with self.lock:
            if self._test is None:
                self._test = run_dataset(self.load(), "test")
            return self._test

    def sample(self, index: int) -> tuple[torch.Tensor, dict]:
        test = self.test_set()
        if not 0 <= index < len(test):
            raise CnnlabError(f"sample {index} out of range: the test split of {self.data_name} has {len(test):,} images (0..{len(test) - 1})")
        label = int(test.labels[index])
        return test.images[index], {"kind": "sample", "index": index, "label": test.classes[label], "label_index": label}

    def upload(self, data: bytes, *, max_pixels: int) -> tuple[torch.Tensor, dict]:
        info = self.data_info
        image, decoded = prepare_upload(data, info["image_size"], dark_background=dark_background(info["mean"]),
                                        max_pixels=max_pixels)
        return image, _source("upload", decoded)

    def drawing(self, data: bytes, *, max_pixels: int) -> tuple[torch.Tensor, dict]:
        """A canvas (light ink on black). Digit-like datasets get MNIST's preparation (box 20/28
        of the field, centred by centre of mass); others take it as an image."""
        info = self.data_info
        c, h, w = info["image_size"]
        if not self.is_digit_like:
            image, _ = prepare_upload(data, info["image_size"], invert="no", max_pixels=max_pixels)
            return image, {"kind": "drawing", "notes": [f"resized to the network's {h}x{w} input"]}
        decoded = decode_upload(data, 1, max_pixels=max_pixels)
        ink = torch.from_numpy(np.asarray(decoded.image).copy())
        box = max(1, round(h * 20 / 28))  # MNIST: 20 of 28
        image = prepare_digit(ink, box=box, size=h)
        # The decoder's notes (the canvas's alpha channel, its colour channels) say nothing to the person who drew.
        notes = [f"prepared as MNIST digits were: ink's box scaled to {box}x{box}, centred by centre of mass in {h}x{w}"]
        return image, {"kind": "drawing", "notes": notes}

    # --- the forward pass -------------------------------------------------------------------
    def analyse(self, image: torch.Tensor, source: dict) -> Analysis:
        """uint8 (C, H, W) of the dataset's size -> probabilities and every drawn layer's maps."""
        run = self.load()
        info = run.data_info
        pad = int(info.get("pad", 0))
        x = to_model_input(image[None], mean=info["mean"], std=info["std"], pad=pad)
        drawn = [v for v in self.layers if v.layout is not None]
        modules = dict(run.model.named_modules())
        captured: dict[int, torch.Tensor] = {}

        def keep(view: LayerView):
            def hook(module, inputs, output):
                t = _first_tensor(output)
                if t is not None and view.index not in captured:
                    captured[view.index] = _as_maps(t.detach(), view)
            return hook

        with self.lock:
            handles = [modules[v.name].register_forward_hook(keep(v)) for v in drawn]
            try:
                with torch.no_grad():
                    logits = main_output(run.model(x.to(_device(run.model))))
            finally:
                for hdl in handles:
                    hdl.remove()
        probs = F.softmax(logits.float(), dim=1)[0].cpu()
        return Analysis(padded_image(image, pad), x, probs, captured, source)

    # --- one unit ---------------------------------------------------------------------------
    def unit(self, analysis: Analysis, layer: int, channel: int, row: int, col: int) -> dict:
        """Where a unit looks in the input and, for a convolution, how its value was computed."""
        if not 0 <= layer < len(self.layers) or self.layers[layer].layout is None:
            raise CnnlabError(f"layer {layer} has no maps; choose one of the drawn layers")
        view = self.layers[layer]
        maps = analysis.maps[layer]
        rows, cols = view.grid
        if not 0 <= channel < maps.shape[0] or not 0 <= row < rows or not 0 <= col < cols:
            raise CnnlabError(f"unit ({channel}, {row}, {col}) out of range: layer {view.label} has "
                              f"{maps.shape[0]} channels of {rows}x{cols}")
        if view.layout == "vector" and row * cols + col >= view.units:
            raise CnnlabError(f"unit {row * cols + col} out of range: layer {view.label} has {view.units} units")
        out = {"layer": layer, "name": view.label, "channel": channel, "row": row, "col": col,
               "value": float(maps[channel, row, col]), "field": _field_box(view, row, col, self.input_size)}
        if view.is_conv:
            out["conv"] = self._conv_unit(analysis, view, channel, row, col)
        return out

    def _conv_unit(self, analysis: Analysis, view: LayerView, channel: int, row: int, col: int) -> dict:
        run = self.load()
        conv = dict(run.model.named_modules())[view.name]
        seen: list[tuple[torch.Tensor, torch.Tensor]] = []
        with self.lock:
            # clone: an in-place ReLU after the convolution would overwrite its output (AlexNet, VGG)
            handle = conv.register_forward_hook(lambda m, i, o: seen.append((i[0].detach().clone(), o.detach().clone())) if not seen else None)
            try:
                with torch.no_grad():
                    run.model(analysis.x.to(_device(run.model)))
            finally:
                handle.remove()
        inp, out = seen[0]
        return conv_dot_product(conv, inp[0].float().cpu(), channel, row, col, actual=float(out[0, channel, row, col]))

    # --- attribution -----------------------------------------------------------------------
    def attribution(self, analysis: Analysis, method: str, target: int | None,
                    progress: Callable[[int, int], None] | None = None) -> dict:
        """Grad-CAM or occlusion for ``target`` (None: the top class): the heat map (H, W) and its description."""
        run = self.load()
        with self.lock:
            result = attribute(run.model, analysis.x.to(_device(run.model)), method, target=target, progress=progress)
        classes = run.data_info["classes"]
        return {"heatmap": result.heatmap, "target": result.target, "class": classes[result.target],
                "description": result.describe(), "signed": result.signed, "layer": result.layer}

    def occlusion(self, analysis: Analysis, target: int, progress: Callable[[int, int], None]) -> dict:
        """Occlusion on a private copy of the model: it takes many forward passes, and other
        requests for this run should not wait for them behind the lock."""
        run = self.load()
        with self.lock:
            model = copy.deepcopy(run.model)
        result = attribute(model, analysis.x.to(_device(model)), "occlusion", target=target, progress=progress)
        classes = run.data_info["classes"]
        return {"heatmap": result.heatmap, "target": result.target, "class": classes[result.target],
                "description": result.describe(), "signed": result.signed, "params": result.params}

    # --- what the page shows once per run ---------------------------------------------------
    def info(self) -> dict:
        run = self.load()
        info = run.data_info
        model_info = get_model_info(run.model, None)
        reported = model_info.reported if model_info is not None else None
        history = run.history[-1] if run.history else {}
        try:
            conv_name, conv = first_conv(run.model)
            filters = {"layer": conv_name, "shape": list(conv.weight.shape)}
        except CnnlabError:
            filters = None
        return {
            **self.brief(),
            "paper": model_info.paper if model_info else "",
            "family": model_info.family if model_info else "",
            "reported": None if reported is None else {"top1": reported.top1, "dataset": reported.dataset, "source": reported.source},
            "classes": list(info["classes"]),
            "image_size": list(info["image_size"]),
            "pad": int(info.get("pad", 0)),
            "input_size": list(self.input_size),
            "mean": list(info["mean"]), "std": list(info["std"]),
            "digit_like": self.is_digit_like,
            "epochs": len(run.history),
            "test_top1_err": history.get("test_top1_err"),
            "params": sum(p.numel() for p in run.model.parameters()),
            "macs": sum(v.macs for v in self.layers),
            "layers": [v.table_row() for v in self.layers],
            "filters": filters,
        }

    def first_layer_weights(self) -> torch.Tensor:
        _, conv = first_conv(self.load().model)
        return conv.weight.detach().cpu()


class ServedWeights(ServedRun):
    """A registered model with weights and no run folder (``cnnlab serve --model M --weights W``),
    loaded as ``cnnlab predict M --weights W`` loads it (:func:`cnnlab.training.predict.open_predictor`):
    uploads are cut as the weights expect (their resize, crop and filter:
    :class:`~cnnlab.training.predict.WeightsCrop`) and normalised with their mean and std;
    1,000 outputs are named by ImageNet-1k's classes. Test images come from ``data`` (an
    image-folder dataset, cut the same way) when given; without it there are none."""

    def __init__(self, run_id: str, model: str, weights: str, *, data: str | None = None, data_root: str | None = None) -> None:
        self._setup(run_id, Path(str(weights)), model, data or "")
        self.weights = str(weights)
        self.data_root = data_root
        self.label = f"{model} with {Path(self.weights).name}"
        self.preprocessing = ""
        self._crop: WeightsCrop | None = None

    def _open(self) -> Run:
        predictor = open_predictor(self.model_name, weights=self.weights)
        pre, c = predictor.preprocess, predictor.channels
        self._crop = WeightsCrop(c, pre)
        self.preprocessing = predictor.note
        info = {"name": self.label, "image_size": [c, pre.crop, pre.crop], "mean": list(pre.mean[:c]),
                "std": list(pre.std[:c]), "pad": 0, "classes": list(predictor.classes)}
        config = TrainConfig(model=self.model_name, data=self.data_name or "none")
        return Run(self.path, config, [], info, predictor.model)  # type: ignore[arg-type]

    @property
    def _what(self) -> str:
        return self.label

    def brief(self) -> dict:
        return {**super().brief(), "folder": self.label, "weights": Path(self.weights).name}

    def info(self) -> dict:
        out = super().info()
        return {**out, "weights": Path(self.weights).name, "preprocessing": self.preprocessing, "samples": bool(self.data_name)}

    def upload(self, data: bytes, *, max_pixels: int) -> tuple[torch.Tensor, dict]:
        self.load()
        decoded = decode_upload(data, self._crop.channels, max_pixels=max_pixels)
        source = _source("upload", decoded)
        source["notes"].append(f"cut as {self.preprocessing}")
        return self._crop.image(decoded.image), source

    def test_set(self):
        """The test split of ``data`` as files, with each class's output index (None when the
        weights' outputs are not the dataset's classes)."""
        if not self.data_name:
            raise CnnlabError(f"{self.id} has no test images: it is served with --weights and no --data; upload or draw an image")
        info = self.data_info
        with self.lock:
            if self._test is None:
                files = file_split(self.data_name, self.data_root, "test", mean=tuple(info["mean"]), std=tuple(info["std"]),
                                   image_size=tuple(info["image_size"]))
                try:
                    indices, _ = dataset_outputs(len(info["classes"]), self.data_name, self.data_root, files.classes)
                    outputs = list(range(len(files.classes))) if indices is None else indices
                except CnnlabError:
                    outputs = [None] * len(files.classes)  # images to look at; the weights do not name their classes
                self._test = (files, outputs)
            return self._test[0]

    def sample(self, index: int) -> tuple[torch.Tensor, dict]:
        files = self.test_set()
        if not 0 <= index < len(files):
            raise CnnlabError(f"sample {index} out of range: the test split of {self.data_name} has {len(files):,} images (0..{len(files) - 1})")
        label = int(files.labels[index])
        return self._crop(files.path(index)), {"kind": "sample", "index": index, "label": files.classes[label],
                                               "label_index": self._test[1][label]}


def _source(kind: str, decoded: Decoded) -> dict:
    return {"kind": kind, "format": decoded.format, "original_size": list(decoded.original_size), "notes": list(decoded.notes)}


def _device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _as_maps(t: torch.Tensor, view: LayerView) -> torch.Tensor:
    """A layer's output (batch of one) as (channels, rows, cols) float16 on the CPU."""
    if view.layout == "vector":
        flat = t.reshape(-1).float()
        rows, cols = view.grid
        # the cells past the last unit repeat it (inside the layer's range); the page hides them
        padded = torch.empty(rows * cols)
        padded[: flat.numel()] = flat.cpu()
        padded[flat.numel():] = flat[-1].item()
        return padded.view(1, rows, cols).half()
    grid = GridLayer(view.name, view.layout, view.grid, view.extra_tokens)
    return to_maps(t, grid)[0].float().cpu().half()


def _field_box(view: LayerView, row: int, col: int, input_size: tuple[int, int, int]) -> dict:
    """The unit's receptive field as a box in input pixels (pixel i covers [i, i + 1))."""
    _, h, w = input_size
    f = view.field
    whole = {"top": 0.0, "left": 0.0, "height": float(h), "width": float(w)}
    if view.layout == "vector" or f is None or f.is_global or len(f.size) != 2:
        return {**whole, "global": True, "text": "the whole input" + ("" if f is not None and f.is_global or view.layout == "vector" else " (not tracked)")}
    if tuple(f.grid) != tuple(view.grid):
        return {**whole, "global": True, "text": "not tracked for this map"}
    size_h, size_w = f.size
    top = f.start[0] + f.jump[0] * row - (size_h - 1) / 2
    left = f.start[1] + f.jump[1] * col - (size_w - 1) / 2
    return {"top": float(top), "left": float(left), "height": float(size_h), "width": float(size_w), "global": False,
            "text": f"{f.describe('size')} pixels centred on ({f.start[0] + f.jump[0] * row:g}, {f.start[1] + f.jump[1] * col:g})"}


def conv_dot_product(conv: nn.Conv2d, inp: torch.Tensor, channel: int, row: int, col: int, *, actual: float) -> dict:
    """How output (``channel``, ``row``, ``col``) of ``conv`` came from its input ``inp``
    (C_in, H, W): the padded input window, the kernel, the products summed per input channel,
    plus the bias. ``actual`` is the value the layer produced, for the page to show they agree."""
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    dh, dw = conv.dilation
    if isinstance(conv.padding, str):  # "valid" or "same"
        ph = pw = 0
        pads = (0, 0, 0, 0)
        if conv.padding == "same":
            th, tw = dh * (kh - 1), dw * (kw - 1)
            pads = (tw // 2, tw - tw // 2, th // 2, th - th // 2)
            ph, pw = th // 2, tw // 2
    else:
        ph, pw = conv.padding
        pads = (pw, pw, ph, ph)
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    padded = F.pad(inp[None], pads, mode=mode)[0] if any(pads) else inp
    per_group = conv.in_channels // conv.groups
    group = channel // (conv.out_channels // conv.groups)
    first = group * per_group
    y0, x0 = row * sh, col * sw
    window = padded[first : first + per_group, y0 : y0 + dh * (kh - 1) + 1 : dh, x0 : x0 + dw * (kw - 1) + 1 : dw]
    kernel = conv.weight[channel].detach().float().cpu()
    partial = (window * kernel).sum(dim=(1, 2))
    bias = float(conv.bias[channel].detach()) if conv.bias is not None else 0.0
    total = float(partial.sum()) + bias
    shown = sorted(partial.abs().topk(min(TOP_CHANNELS, per_group)).indices.tolist())
    return {
        "kernel_size": [kh, kw], "stride": [sh, sw], "padding": [ph, pw], "dilation": [dh, dw], "groups": conv.groups,
        "input_channels": list(range(first, first + per_group)),
        "window_top_left": [y0 - ph, x0 - pw],  # in the conv's input, before padding (negative: in the padding)
        "partial_sums": [float(v) for v in partial],
        "shown": [{"channel": first + i, "window": window[i].tolist(), "kernel": kernel[i].tolist(), "sum": float(partial[i])}
                  for i in shown],
        "bias": bias, "total": total, "actual": actual,
    }


# --- finding run folders ------------------------------------------------------------------------
def _is_run(path: Path) -> bool:
    return (path / "config.json").is_file()


def find_runs(paths: list[str | os.PathLike], runs_dir: str | os.PathLike) -> tuple[list[Path], list[str]]:
    """The run folders to serve and warnings about what was left out.

    Named ``paths`` are served wherever they are (the user chose them). Without them, each
    folder directly under ``runs_dir`` with a config.json, except a link that leads outside
    ``runs_dir`` (so a link planted in the runs folder cannot expose another folder)."""
    warnings: list[str] = []
    if paths:
        found = []
        for p in paths:
            path = Path(p)
            if not _is_run(path):
                raise CnnlabError(f"{path} is not a run folder (no config.json); train one with `cnnlab train`")
            found.append(path.resolve())
        return found, warnings
    root = Path(runs_dir)
    if not root.is_dir():
        return [], warnings
    real_root = root.resolve()
    found = []
    for child in sorted(root.iterdir()):
        if not child.is_dir() or not _is_run(child):
            continue
        real = child.resolve()
        if real_root not in real.parents:
            warnings.append(f"skipped {child}: it links outside {root} (to {real})")
            continue
        found.append(real)
    return found, warnings


def unique_ids(paths: list[Path], *, taken: tuple[str, ...] = ()) -> list[str]:
    """URL-safe ids from the folder names (``safe_name``), made unique with -2, -3, ...
    (also against ``taken``: ids already given out)."""
    ids: list[str] = []
    for p in paths:
        base = safe_name(p.name) or "run"
        candidate, n = base, 2
        while candidate in ids or candidate in taken:
            candidate, n = f"{base}-{n}", n + 1
        ids.append(candidate)
    return ids


def weights_id(model: str, weights: str) -> str:
    """The served name of ``model`` with ``weights``: the weight file's name without its suffix
    when it starts with the model's name (``resnet18-f37072fd``), else ``<model>-<name>``
    (``resnet18-torchvision``)."""
    stem = Path(urllib.parse.urlparse(weights).path if "://" in weights else weights).stem or "weights"
    return safe_name(stem if stem.startswith(model) else f"{model}-{stem}")
