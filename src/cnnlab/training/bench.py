"""`cnnlab bench`: inference and training images/s of one model under named settings, in one process.

Each row of :data:`SETTINGS` turns a :class:`BenchInput` into a function from a batch to logits
(or says why it cannot run here); :func:`bench` times every one on the same batch and checks
its top-1 agreement with the first row (eager fp32) on real test images.

Each row of :data:`TRAINING_SETTINGS` builds a function that trains a fresh copy of the model
for ``steps`` batches: a plain PyTorch loop (float tensors made once, SGD, cross-entropy: the
few lines a tutorial writes) and cnnlab's own :func:`~cnnlab.training.loop.train_one_epoch`
over in-memory uint8 images (batch preparation, learning rate per step, statistics per step)
under eager fp32, channels-last, bf16 (where native), torch.compile, and what ``--amp auto``
picks. The plain loop is timed again with every trainer row, the two called alternately, and
each row's ratio is to that neighbour, so load from other processes weighs on both alike. A training image costs
3x its forward FLOPs (the backward pass computes two products per forward one).

Timing: one warm-up call, then calls until ``min_time`` seconds have passed (at least 3);
the median call counts. Throughput is also shown as GFLOP/s (2 x the model's multiply-adds,
counted by torch's FlopCounterMode, per image) and as a share of the machine's measured peak:
the median of a few square float32 (or bfloat16, for bf16 rows) matrix multiplications, the
fastest thing these cores do, measured just before each row. The machine's load average is
recorded with the figures, since other processes on the same cores slow every row.
"""

from __future__ import annotations

import copy
import functools
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.errors import CnnlabError
from cnnlab.models.registry import main_output
from cnnlab.training.device import (
    PRECISION_NAMES,
    choose_precision,
    cpu_flags,
    machine_name,
    native_precision,
)
from cnnlab.training.export import DEFAULT_OPSET, OnnxModel, export_onnx
from cnnlab.training.inference import (
    Target,
    agreement,
    load_target,
    prepare_inference,
    sample_images,
)

__all__ = ["SETTINGS", "TRAINING_SETTINGS", "BenchInput", "BenchReport", "Row", "Setting", "TrainInput",
           "TrainSetting", "bench", "cpu_name", "matmul_gflops"]

Runner = Callable[[Tensor], Tensor]


@dataclass
class BenchInput:
    """What a setting may use to build its runner."""

    target: Target
    batch: Tensor  # the timing batch, (B, C, H, W), on the CPU
    device: torch.device
    workdir: Path  # scratch space (the ONNX file)
    opset: int = DEFAULT_OPSET


@dataclass(frozen=True)
class Setting:
    """One row of the table: a name, what it is, and how to build its runner."""

    name: str
    what: str
    # A runner and the details of how it was set up, or a reason string: not available here.
    build: Callable[[BenchInput], tuple[Runner, str, bool] | str]  # (runner, details, uses bf16)


def _eager(inp: BenchInput) -> tuple[Runner, str, bool]:
    model = inp.target.model.to(inp.device).eval()

    def run(x: Tensor) -> Tensor:
        with torch.inference_mode():
            return main_output(model(x.to(inp.device)))

    return run, "NCHW, float32", False


def _inference_path(inp: BenchInput, *, bf16: bool | None = None) -> tuple[Runner, str, bool]:
    prepared = prepare_inference(inp.target.model, inp.batch.to(inp.device), device=inp.device, bf16=bf16)
    return prepared, prepared.describe(), prepared.bf16


def _onnxruntime(inp: BenchInput) -> tuple[Runner, str, bool] | str:
    if inp.device.type != "cpu":
        return "onnxruntime runs on the CPU here"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime is not installed (pip install 'cnnlab[onnx]')"
    path = export_onnx(inp.target.model, inp.workdir / "model.onnx", input_size=inp.target.input_size,
                       dynamic_batch=True, opset=inp.opset)
    return OnnxModel(path), f"opset {inp.opset}, CPU execution provider", False


SETTINGS: tuple[Setting, ...] = (
    Setting("eager fp32", "the model as built, torch eager mode", _eager),
    Setting("inference path", "BN folded, channels-last if faster, bf16 where native", _inference_path),
    # The same without bf16: what folding and the memory layout give on their own.
    Setting("inference path fp32", "BN folded, channels-last if faster, float32",
            functools.partial(_inference_path, bf16=False)),
    Setting("onnxruntime", "torch's ONNX export run by onnxruntime", _onnxruntime),
)


# --- training rows ---------------------------------------------------------------------------

TRAIN_LR = 0.01  # small enough that a few steps from a fresh initialisation stay finite
PLAIN = "train plain"  # the reference row's name


@dataclass
class TrainInput:
    """What a training setting may use to build its function."""

    model: nn.Module  # the network as built (eval mode, CPU); every row trains its own copy
    input_size: tuple[int, int, int]
    num_classes: int
    batch: int
    steps: int  # training steps per timed call
    device: torch.device
    family: str  # the model's name, for the precision probe's cache


@dataclass(frozen=True)
class TrainSetting:
    """One training row: a name, what it is, and how to build its function."""

    name: str
    what: str
    # A function that trains ``steps`` batches, its details and whether it runs bf16; or a reason.
    build: Callable[[TrainInput], tuple[Callable[[], object], str, bool] | str]


def _plain_loop(inp: TrainInput) -> tuple[Callable[[], None], str, bool]:
    """The loop of a PyTorch tutorial: float batches made once, SGD with momentum, eager fp32."""
    model = copy.deepcopy(inp.model).to(inp.device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=TRAIN_LR, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(inp.batch, *inp.input_size, generator=g).to(inp.device) for _ in range(inp.steps)]
    ys = [torch.randint(0, inp.num_classes, (inp.batch,), generator=g).to(inp.device) for _ in range(inp.steps)]

    def run() -> None:
        for x, y in zip(xs, ys):
            loss = F.cross_entropy(main_output(model(x)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return run, "float batches made once, SGD, eager fp32 NCHW", False


def _trainer(inp: TrainInput, *, dtype: torch.dtype | None = None, channels_last: bool = False,
             compiled: bool = False, auto: bool = False) -> tuple[Callable[[], object], str, bool] | str:
    """cnnlab's :func:`train_one_epoch` over ``steps`` batches of in-memory uint8 images."""
    from cnnlab.data import Batches, ImageDataset
    from cnnlab.training.loop import train_one_epoch
    from cnnlab.training.optim import make_loss

    model = copy.deepcopy(inp.model).to(inp.device).train()
    details = []
    if auto:  # what `cnnlab train` does by default
        precision = choose_precision("auto", None, inp.device, model, input_shape=inp.input_size,
                                     num_classes=inp.num_classes, family=inp.family)
        dtype, channels_last = precision.dtype, precision.channels_last
        details.append(f"--amp auto chose {precision.name} {'channels-last' if channels_last else 'NCHW'}")
    elif dtype is not None and native_precision(inp.device).dtype != dtype:
        return f"not native here ({native_precision(inp.device).why})"
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    g = torch.Generator().manual_seed(0)
    c, h, w = inp.input_size
    images = torch.randint(0, 256, (inp.batch * inp.steps, c, h, w), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, inp.num_classes, (len(images),), generator=g)
    dataset = ImageDataset("bench", "train", images, labels, tuple(map(str, range(inp.num_classes))),
                           (0.5,) * c, (0.25,) * c)
    batches = Batches(dataset, inp.batch, device=inp.device, shuffle=True, generator=g, channels_last=channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=TRAIN_LR, momentum=0.9)
    loss_fn = make_loss("ce", num_classes=inp.num_classes)
    step_model = torch.compile(model) if compiled else model
    scaler = torch.amp.GradScaler(inp.device.type, enabled=dtype == torch.float16)
    epoch = [0]

    def run() -> object:
        epoch[0] += 1
        return train_one_epoch(step_model, batches, optimizer, loss_fn, lr=lambda step: TRAIN_LR, epoch=epoch[0],
                               amp=dtype, scaler=scaler)

    if not auto:
        details.append(f"{PRECISION_NAMES[dtype]} "
                       f"{'channels-last' if channels_last else 'NCHW'}{', torch.compile' if compiled else ''}")
    return run, "; ".join(details), dtype == torch.bfloat16


TRAINING_SETTINGS: tuple[TrainSetting, ...] = (
    TrainSetting(PLAIN, "a plain PyTorch loop on float tensors (the reference)", _plain_loop),
    TrainSetting("train eager fp32", "cnnlab's trainer, eager fp32 NCHW", _trainer),
    TrainSetting("train channels-last", "cnnlab's trainer, fp32 channels-last",
                 functools.partial(_trainer, channels_last=True)),
    TrainSetting("train bf16", "cnnlab's trainer, bf16 autocast, channels-last, where native",
                 functools.partial(_trainer, dtype=torch.bfloat16, channels_last=True)),
    TrainSetting("train compiled", "cnnlab's trainer, torch.compile, fp32 NCHW",
                 functools.partial(_trainer, compiled=True)),
    TrainSetting("train auto", "cnnlab's trainer as `cnnlab train` runs it (--amp auto)",
                 functools.partial(_trainer, auto=True)),
)


@dataclass
class Row:
    setting: str
    details: str  # how it was set up, or why it did not run
    images_per_s: float | None = None
    ms_per_batch: float | None = None
    gflops: float | None = None  # achieved: 2 x MACs x images/s
    peak_gflops: float | None = None  # the matmul peak of its dtype, measured just before it
    share_of_peak: float | None = None  # gflops / peak_gflops
    top1_agreement: float | None = None  # with the first row, on real images
    max_abs_diff: float | None = None
    ratio_to_plain: float | None = None  # training rows: images/s over the plain loop's, timed alternately with it
    warmup_s: float | None = None  # training rows: the first call (torch.compile compiles there)


@dataclass
class BenchReport:
    model: str
    batch: int
    input_size: tuple[int, int, int]
    device: str
    machine: str  # CPU (or GPU) model name
    flags: list[str]  # the vector/matrix extensions that matter here
    threads: int
    load_average: float  # 1-minute load average when the run started
    gmacs_per_image: float
    peak_gflops: dict[str, float]  # dtype -> best matmul GFLOP/s measured during the run
    images: str  # the real images of the agreement check
    rows: list[Row] = field(default_factory=list)  # inference
    training: list[Row] = field(default_factory=list)  # training, the plain loop first
    train_steps: int = 0  # training steps per timed call

    def to_dict(self) -> dict:
        return asdict(self)


def cpu_name() -> str:
    """The CPU's model name, as lscpu shows it."""
    return machine_name(torch.device("cpu"))


def _flags() -> list[str]:
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
    return [f for f in wanted if f in cpu_flags()]


def _median_seconds(run: Callable[[], object], *, min_time: float, device: torch.device, warm_up: bool = True) -> float:
    def timed() -> float:
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    if warm_up:
        timed()
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - began < min_time:
        times.append(timed())
    return statistics.median(times)


def _paired_medians(run: Callable[[], object], reference: Callable[[], object], *, min_time: float,
                    device: torch.device) -> tuple[float, float]:
    """Median seconds of ``run`` and of ``reference``, called alternately (at least 3 each, until
    ``min_time`` has passed), so that a change of load or clock during the measurement weighs on
    both: timed one after the other, the first of a pair ran measurably faster here."""
    times: tuple[list[float], list[float]] = ([], [])
    began = time.perf_counter()
    while len(times[0]) < 3 or time.perf_counter() - began < min_time:
        for fn, out in ((run, times[0]), (reference, times[1])):
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def matmul_gflops(device: torch.device, dtype: torch.dtype = torch.float32, *, n: int = 2048, min_time: float = 0.5) -> float:
    """Measured GFLOP/s of an n x n by n x n matrix product (2 n^3 flops) on ``device``."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    seconds = _median_seconds(lambda: torch.mm(a, b), min_time=min_time, device=device)
    return 2 * n**3 / seconds / 1e9


def _macs_per_image(target: Target) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        target.model(torch.zeros(1, *target.input_size))
    return counter.get_total_flops() / 2


def bench(
    run_or_model: str | os.PathLike,
    *,
    batch: int = 32,
    size: int | None = None,
    device: str = "cpu",
    settings: tuple[Setting, ...] = SETTINGS,
    training: tuple[TrainSetting, ...] = TRAINING_SETTINGS,
    steps: int = 4,
    images: int = 64,
    min_time: float = 2.0,
    data_root: str | None = None,
) -> BenchReport:
    """Time ``run_or_model`` (a registered name or a run folder) under every inference setting
    and every training setting (``steps`` training steps of ``batch`` images per timed call).

    ``size``: input height = width (default: the model's own); ``images``: how many real test
    images the agreement check uses (:func:`cnnlab.training.inference.sample_images`).
    """
    if batch < 1 or images < 1 or steps < 1:
        raise CnnlabError(f"batch, images and steps must be >= 1, got {batch}, {images} and {steps}")
    dev = torch.device(device)
    target = load_target(run_or_model)
    if size is not None:
        target.input_size = (target.input_size[0], size, size)
    macs = _macs_per_image(target)
    report = BenchReport(
        model=target.label, batch=batch, input_size=target.input_size, device=str(dev),
        machine=machine_name(dev), flags=_flags(),
        threads=torch.get_num_threads(), load_average=os.getloadavg()[0], gmacs_per_image=macs / 1e9,
        peak_gflops={}, images="", train_steps=steps if training else 0,
    )
    if settings:
        _bench_inference(report, target, settings, dev, batch=batch, images=images, min_time=min_time, data_root=data_root)
    if training:
        _bench_training(report, target, training, dev, steps=steps, min_time=min_time)
    return report


def _peak(report: BenchReport, device: torch.device, bf16: bool) -> float:
    """The matmul peak of the row's dtype, measured now, so that other load on the machine
    weighs on the row and its peak alike (the share of peak stays readable when it is busy)."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    peak = matmul_gflops(device, dtype)
    name = str(dtype).removeprefix("torch.")
    report.peak_gflops[name] = max(peak, report.peak_gflops.get(name, 0.0))
    return peak


def _bench_inference(report: BenchReport, target: Target, settings: tuple[Setting, ...], dev: torch.device, *,
                     batch: int, images: int, min_time: float, data_root: str | None) -> None:
    real, report.images = sample_images(target.input_size, images, mean=target.mean, std=target.std, root=data_root)
    timing_batch = real[torch.arange(batch) % len(real)]  # real images, repeated to fill the batch
    macs = report.gmacs_per_image * 1e9
    reference: Tensor | None = None
    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-") as workdir:
        inp = BenchInput(target, timing_batch, dev, Path(workdir))
        for setting in settings:
            built = setting.build(inp)
            if isinstance(built, str):
                report.rows.append(Row(setting.name, built))
                continue
            runner, details, bf16 = built
            peak = _peak(report, dev, bf16)
            seconds = _median_seconds(functools.partial(runner, timing_batch), min_time=min_time, device=dev)
            outputs = torch.cat([runner(part).float().cpu() for part in real.split(batch)])
            reference = outputs if reference is None else reference
            agree = agreement(reference, outputs)
            rate = batch / seconds
            gflops = 2 * macs * rate / 1e9
            report.rows.append(Row(
                setting.name, details, images_per_s=rate, ms_per_batch=seconds * 1e3, gflops=gflops,
                peak_gflops=peak, share_of_peak=gflops / peak,
                top1_agreement=agree.top1, max_abs_diff=agree.max_abs_diff,
            ))


def _bench_training(report: BenchReport, target: Target, training: tuple[TrainSetting, ...], dev: torch.device, *,
                    steps: int, min_time: float) -> None:
    with torch.no_grad():
        num_classes = main_output(target.model(torch.zeros(1, *target.input_size))).shape[-1]
    inp = TrainInput(target.model, target.input_size, num_classes, report.batch, steps, dev,
                     family=Path(target.label).name)
    flops_per_image = 3 * 2 * report.gmacs_per_image * 1e9  # forward, and backward at twice its cost
    images_per_call = report.batch * steps
    plain_run, _, _ = _plain_loop(inp)
    plain_run()  # warm-up: the reference is timed next to every row
    for setting in training:
        built = setting.build(inp)
        if isinstance(built, str):
            report.training.append(Row(setting.name, built))
            continue
        run, details, bf16 = built
        peak = _peak(report, dev, bf16)
        start = time.perf_counter()
        run()  # warm-up (and compilation)
        warmup = time.perf_counter() - start
        if setting.name == PLAIN:
            seconds = plain_seconds = _median_seconds(run, min_time=min_time, device=dev, warm_up=False)
        else:
            seconds, plain_seconds = _paired_medians(run, plain_run, min_time=min_time, device=dev)
        rate = images_per_call / seconds
        gflops = flops_per_image * rate / 1e9
        report.training.append(Row(
            setting.name, details, images_per_s=rate, ms_per_batch=seconds * 1e3 / steps, gflops=gflops,
            peak_gflops=peak, share_of_peak=gflops / peak, ratio_to_plain=plain_seconds / seconds, warmup_s=warmup,
        ))
