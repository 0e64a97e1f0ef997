"""`cnnlab bench`: inference images/s of one model under several named settings, in one process.

Each row of :data:`SETTINGS` turns a :class:`BenchInput` into a function from a batch to logits
(or says why it cannot run here); :func:`bench` times every one on the same batch and checks
its top-1 agreement with the first row (eager fp32) on real test images. Adding a row (the
training measurements of a later issue, say) is adding a :class:`Setting` to the table.

Timing: one warm-up call, then calls until ``min_time`` seconds have passed (at least 3);
the median call counts. Throughput is also shown as GFLOP/s (2 x the model's multiply-adds,
counted by torch's FlopCounterMode, per image) and as a share of the machine's measured peak:
the median of a few square float32 (or bfloat16, for bf16 rows) matrix multiplications, the
fastest thing these cores do, measured just before each row. The machine's load average is
recorded with the figures, since other processes on the same cores slow every row.
"""

from __future__ import annotations

import functools
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.errors import CnnlabError
from cnnlab.models.registry import main_output
from cnnlab.training.export import DEFAULT_OPSET, OnnxModel, export_onnx
from cnnlab.training.inference import (
    Target,
    agreement,
    cpu_flags,
    load_target,
    prepare_inference,
    sample_images,
)

__all__ = ["SETTINGS", "BenchInput", "BenchReport", "Row", "Setting", "bench", "cpu_name", "matmul_gflops"]

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
    rows: list[Row] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def cpu_name() -> str:
    """The CPU's model name, as lscpu shows it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _flags() -> list[str]:
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
    return [f for f in wanted if f in cpu_flags()]


def _median_seconds(run: Callable[[], object], *, min_time: float, device: torch.device) -> float:
    def timed() -> float:
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    timed()  # warm-up
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - began < min_time:
        times.append(timed())
    return statistics.median(times)


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
    images: int = 64,
    min_time: float = 2.0,
    data_root: str | None = None,
) -> BenchReport:
    """Time ``run_or_model`` (a registered name or a run folder) under every setting.

    ``size``: input height = width (default: the model's own); ``images``: how many real test
    images the agreement check uses (:func:`cnnlab.training.inference.sample_images`).
    """
    if batch < 1 or images < 1:
        raise CnnlabError(f"batch and images must be >= 1, got {batch} and {images}")
    dev = torch.device(device)
    target = load_target(run_or_model)
    if size is not None:
        target.input_size = (target.input_size[0], size, size)
    real, source = sample_images(target.input_size, images, mean=target.mean, std=target.std, root=data_root)
    timing_batch = real[torch.arange(batch) % len(real)]  # real images, repeated to fill the batch
    macs = _macs_per_image(target)
    report = BenchReport(
        model=target.label, batch=batch, input_size=target.input_size, device=str(dev),
        machine=torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name(), flags=_flags(),
        threads=torch.get_num_threads(), load_average=os.getloadavg()[0], gmacs_per_image=macs / 1e9,
        peak_gflops={}, images=source,
    )
    reference: Tensor | None = None
    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-") as workdir:
        inp = BenchInput(target, timing_batch, dev, Path(workdir))
        for setting in settings:
            built = setting.build(inp)
            if isinstance(built, str):
                report.rows.append(Row(setting.name, built))
                continue
            runner, details, bf16 = built
            # The peak is measured next to the row, so that other load on the machine weighs on
            # both alike (the share of peak stays readable when the machine is busy).
            dtype = torch.bfloat16 if bf16 else torch.float32
            peak = matmul_gflops(dev, dtype)
            name = str(dtype).removeprefix("torch.")
            report.peak_gflops[name] = max(peak, report.peak_gflops.get(name, 0.0))
            seconds = _median_seconds(lambda: runner(timing_batch), min_time=min_time, device=dev)
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
    return report
