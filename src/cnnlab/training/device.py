"""Device and precision policy: which device a run uses, which precision, memory layout and
thread count it trains with (chosen for the machine, :func:`choose_precision`), the RNG state.

``DEVICES`` is the one list of device names; the CLI's ``--device`` choices come from it, and
``AMP_MODES`` those of ``--amp``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import CnnlabError

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA, else Apple's MPS, else the CPU; a named device that is absent fails clearly."""
    if name not in DEVICES:
        raise CnnlabError(f"unknown device {name!r}; expected one of {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CnnlabError("--device cuda was asked for, but no CUDA device is available; use --device auto or cpu")
    if name == "mps" and not _mps_available():
        raise CnnlabError("--device mps was asked for, but no MPS device is available; use --device auto or cpu")
    return torch.device(name)


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def autocast(device: torch.device, enabled: bool | torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast on ``device`` to ``enabled`` when it is a dtype (a run's ``Precision.dtype``),
    to bf16 when it is True; a no-op for False or None (fp32).

    bf16 by default rather than fp16: same exponent range as fp32, so no loss scaling is needed."""
    if enabled is None or enabled is False:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if enabled is True else enabled)


def seed_everything(seed: int, *, deterministic: bool = False, threads: int | None = None) -> torch.Generator:
    """Seed torch's global RNG (initialisation, dropout) and return the data generator
    (shuffling, augmentation), both from ``seed``; optionally deterministic kernels and a
    thread count."""
    if threads is not None:
        torch.set_num_threads(threads)
    if deterministic:
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def rng_state(generator: torch.Generator) -> dict:
    """Every RNG a training step draws from: torch's global one, the data generator, CUDA's."""
    state = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    """Restore what :func:`rng_state` saved (a resumed run then draws the same numbers)."""
    torch.set_rng_state(state["torch"])
    generator.set_state(state["data"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- precision, memory layout and threads chosen for the machine (issue 16) -------------------
#
# Reduced precision pays only where the hardware computes it: bf16 on CPUs with AVX512_BF16
# (native bf16 dot products) or AMX, and on CUDA GPUs of compute capability 8.0 or newer; fp16
# with loss scaling on older tensor-core GPUs (7.x). Elsewhere bf16 is emulated through fp32 and
# far slower (measured 9x slower for ResNet-20 training on an AVX2-only EPYC), so `--amp auto`
# keeps fp32 there. Where it is native, the choice between fp32 and bf16, and between NCHW and
# channels-last, is made by timing a few training steps of the actual model (:func:`probe`):
# which is faster depends on the model's layer sizes (LeNet-5's tiny convolutions run slower in
# bf16 NCHW than in fp32 on an AVX512_BF16 EPYC, ResNet-20's 2.9x faster in bf16 channels-last).

AMP_MODES = ("auto", "on", "off")  # --amp: measured choice, reduced precision forced, fp32
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
PROBE_PIXELS = 128 * 32 * 32  # pixels per probe step: a CIFAR batch of 128, or 2 ImageNet images
PROBE_STEPS = 2  # timed steps per variant, after one warm-up step; the faster one counts
PRECISION_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}  # autocast dtype (None: none)
PROBE_MARGIN = 0.05  # a variant must be this much faster than fp32 NCHW to be chosen (timing noise)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags the kernel reports (Linux ``/proc/cpuinfo``); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def machine_name(device: torch.device) -> str:
    """The GPU's or the CPU's model name (as lscpu shows it)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class Support:
    """The reduced precision a device computes natively, and how we know."""

    dtype: torch.dtype | None  # bfloat16 or float16; None: only fp32 runs at full speed
    why: str


def native_precision(device: torch.device, *, flags: frozenset[str] | None = None,
                     capability: tuple[int, int] | None = None) -> Support:
    """What ``device`` runs natively (``flags``/``capability`` stand in for the hardware's in tests)."""
    if device.type == "cuda":
        major, minor = capability if capability is not None else torch.cuda.get_device_capability(device)
        if (major, minor) >= (8, 0):
            return Support(torch.bfloat16, f"CUDA compute capability {major}.{minor} has bf16 tensor cores")
        if (major, minor) >= (7, 0):
            return Support(torch.float16, f"CUDA compute capability {major}.{minor}: fp16 tensor cores, no bf16")
        return Support(None, f"CUDA compute capability {major}.{minor} has no tensor cores")
    if device.type == "cpu":
        flags = cpu_flags() if flags is None else flags
        found = [f for f in BF16_CPU_FLAGS if f in flags]
        kernels = torch.backends.cpu.get_cpu_capability()  # the vector ISA torch's kernels use
        if found:
            return Support(torch.bfloat16, f"the CPU has {' and '.join(f.upper() for f in found)} (native bf16), torch kernels {kernels}")
        return Support(None, f"the CPU has no AVX512_BF16 or AMX (bf16 would be emulated), torch kernels {kernels}")
    return Support(None, f"reduced precision is not probed on {device.type}")


@dataclass(frozen=True)
class Precision:
    """What a run trains with: the autocast dtype, the memory layout, and why."""

    dtype: torch.dtype | None  # autocast dtype; None: fp32
    channels_last: bool
    why: str
    warning: str = ""  # set when --amp on asks for a precision this device emulates
    step_ms: dict[str, float] = field(default_factory=dict)  # the probe's figures, when it ran

    @property
    def name(self) -> str:
        return PRECISION_NAMES[self.dtype]

    @property
    def scaled(self) -> bool:
        """Whether the loss needs scaling (fp16's narrow exponent range; Micikevicius et al. 2018)."""
        return self.dtype == torch.float16

    def describe(self) -> str:
        layout = "channels-last" if self.channels_last else "NCHW"
        return f"{self.name} {layout} ({self.why})"


def _variant(dtype: torch.dtype | None, channels_last: bool) -> str:
    return f"{PRECISION_NAMES[dtype]}/{'channels-last' if channels_last else 'nchw'}"


def probe_images(input_shape: tuple[int, ...]) -> int:
    """Images per probe step: :data:`PROBE_PIXELS` worth (at least 2, for BN). Not the run's
    batch, so that runs of one model at any batch size and number of ranks share one decision."""
    return max(2, PROBE_PIXELS // math.prod(input_shape[1:]))


def probe(model: nn.Module, device: torch.device, *, input_shape: tuple[int, ...], num_classes: int,
          variants: list[tuple[torch.dtype | None, bool]], images: int, steps: int = PROBE_STEPS) -> dict[str, float]:
    """Milliseconds per training step (forward, cross-entropy, backward, SGD step) of a copy of
    ``model`` on random ``images`` x ``input_shape`` inputs, for each (dtype, channels_last).

    The model, its BN statistics and every RNG a run draws from are left as they were, so a
    probed run trains exactly like an unprobed one with the same choice."""
    # Imported here: cnnlab.models imports every family, which config.py's users need not pay for.
    from cnnlab.models import split_outputs

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(images, *input_shape, generator=generator).to(device)
    y = torch.randint(0, num_classes, (images,), generator=generator).to(device)
    times: dict[str, float] = {}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for dtype, channels_last in variants:
            layout = torch.channels_last if channels_last else torch.contiguous_format
            copy_ = copy.deepcopy(model).to(device=device, memory_format=layout).train()
            inputs = x.contiguous(memory_format=layout)
            optimizer = torch.optim.SGD(copy_.parameters(), lr=1e-3)
            best = math.inf
            for i in range(steps + 1):
                start = time.perf_counter()
                with autocast(device, dtype):
                    logits, _ = split_outputs(copy_(inputs))
                    loss = nn.functional.cross_entropy(logits.float(), y)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if i:  # the first step pays for allocation and kernel selection
                    best = min(best, time.perf_counter() - start)
            times[_variant(dtype, channels_last)] = best * 1e3
            del copy_, optimizer
    return times


def probe_cache_path() -> Path:
    """``$CNNLAB_CACHE/probe.json`` (the data caches' folder), else ``~/.cache/cnnlab/probe.json``."""
    env = os.environ.get("CNNLAB_CACHE", "").strip()
    return (Path(env) if env else Path("~/.cache/cnnlab")).expanduser() / "probe.json"


def probe_key(device: torch.device, family: str, input_shape: tuple[int, ...], images: int) -> str:
    """What a probe result depends on: the machine, torch, the thread count, the model and input."""
    shape = "x".join(map(str, (images, *input_shape)))
    return f"{machine_name(device)}|{device.type}|torch {torch.__version__}|{torch.get_num_threads()} threads|{family}|{shape}"


def cached_probe(key: str, run: Callable[[], dict[str, float]], *, path: Path | None = None) -> tuple[dict[str, float], bool]:
    """The probe result stored under ``key``, else ``run()`` stored there; and whether it was cached.

    A variant missing from the stored result (a new --amp mode) reruns the probe. The cache is
    a convenience: an unreadable or unwritable file only means probing again."""
    path = probe_cache_path() if path is None else path
    try:
        stored = json.loads(path.read_text())
        stored = stored if isinstance(stored, dict) else {}
    except (OSError, ValueError):
        stored = {}
    if key in stored and isinstance(stored[key], dict):
        return {k: float(v) for k, v in stored[key].items()}, True
    result = run()
    stored[key] = result
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass
    return result, False


def choose_precision(
    amp: str, channels_last: bool | None, device: torch.device, model: nn.Module, *, input_shape: tuple[int, ...],
    num_classes: int, family: str, support: Support | None = None,
    measure: Callable[[list[tuple[torch.dtype | None, bool]]], dict[str, float]] | None = None,
) -> Precision:
    """The precision and layout a run trains ``model`` (registered as ``family``) with.

    ``amp``: "off" fp32; "on" the device's reduced precision (bf16 where there is none native,
    with a warning giving the measured cost); "auto" the faster of fp32 and the native reduced
    precision, by :func:`probe` (cached per machine and model). ``channels_last``: None picks
    the faster layout the same way (convolutional models only); True/False force it.
    ``measure`` replaces the cached probe (tests)."""
    if amp not in AMP_MODES:
        raise CnnlabError(f"unknown amp mode {amp!r}; expected one of {', '.join(AMP_MODES)}")
    support = native_precision(device) if support is None else support
    reduced = support.dtype or torch.bfloat16  # what "on" means where nothing is native
    dtypes: list[torch.dtype | None] = {"off": [None], "on": [reduced], "auto": [None, support.dtype]}[amp]
    dtypes = list(dict.fromkeys(dtypes))  # auto with nothing native: [None]
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    layouts = [channels_last] if channels_last is not None else [False, True] if has_conv else [False]
    emulated = amp == "on" and support.dtype is None
    if measure is None:
        images = probe_images(input_shape)
        run = functools.partial(probe, model, device, input_shape=input_shape, num_classes=num_classes, images=images)

        def measure(variants):
            key = probe_key(device, family, input_shape, images)
            times, _ = cached_probe(key, lambda: run(variants=_all_variants(support, has_conv)))
            missing = [v for v in variants if _variant(*v) not in times]  # --amp on where bf16 is emulated
            return {**times, **(run(variants=missing) if missing else {})}
    variants = [(d, c) for d in dtypes for c in layouts]
    if len(variants) == 1 and not emulated:  # nothing to measure
        (dtype, layout), = variants
        return Precision(dtype, layout, _forced_why(amp, channels_last, support))
    # --amp on where nothing is native: measure what it costs against fp32 in the same layout.
    timed = variants + ([(None, v[1]) for v in variants] if emulated else [])
    times = measure(timed)
    best = min(variants, key=lambda v: times[_variant(*v)])
    first = variants[0]  # fp32 (or the forced dtype) in NCHW: kept unless another is clearly faster
    if times[_variant(*best)] > (1 - PROBE_MARGIN) * times[_variant(*first)]:
        best = first
    figures = ", ".join(f"{_variant(*v)} {times[_variant(*v)]:.1f} ms" for v in timed)
    why = f"{_forced_why(amp, channels_last, support)}; measured step time {figures}"
    warning = ""
    cost = times[_variant(*best)] / times[_variant(None, best[1])] if emulated else 1.0
    if emulated and cost > 1:
        warning = (f"--amp on: {support.why}; a training step measured {cost:.1f}x the time of fp32 "
                   f"({times[_variant(*best)]:.1f} ms vs {times[_variant(None, best[1])]:.1f} ms); --amp auto would use fp32")
    return Precision(best[0], best[1], why, warning=warning, step_ms={_variant(*v): times[_variant(*v)] for v in timed})


def _all_variants(support: Support, has_conv: bool) -> list[tuple[torch.dtype | None, bool]]:
    """What one probe measures: fp32 and the native reduced precision, in each layout that applies."""
    dtypes = [None] + ([support.dtype] if support.dtype is not None else [])
    return [(d, c) for d in dtypes for c in ([False, True] if has_conv else [False])]


def _forced_why(amp: str, channels_last: bool | None, support: Support) -> str:
    parts = {"off": "--amp off", "on": "--amp on", "auto": f"--amp auto: {support.why}"}[amp]
    if channels_last is not None:
        parts += f", --channels-last {'on' if channels_last else 'off'}"
    return parts


BUSY_WINDOW_S = 0.2  # how long busy_cores watches /proc/stat


def busy_cores(window: float = BUSY_WINDOW_S) -> float | None:
    """How many cores other processes keep busy now: the machine's non-idle CPU time over
    ``window`` seconds (``/proc/stat``), in cores. None where there is no /proc/stat.

    Why not the load average: it is a 1-minute moving average, so for a minute after a job
    ends it still counts that job (a run started right after ``pip install`` took one thread
    of two idle cores and trained at half speed)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])  # busy, total (guest time is inside user)

    try:
        busy0, total0 = sample()
        time.sleep(window)
        busy1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (os.cpu_count() or 1) * (busy1 - busy0) / (total1 - total0)


def choose_threads(requested: int | None, *, cores: int | None = None, load: float | None = None,
                   current: int | None = None) -> tuple[int, str]:
    """The CPU thread count of a run, and why.

    Given: that. Else one thread per idle core: torch's default (one per core) less the
    cores other processes keep busy (``load``; measured by :func:`busy_cores`, or the
    1-minute load average where that cannot be read), at least one. On a busy machine extra
    threads only wait for each other: on 2 shared EPYC cores at load 2.6, ResNet-20 trained
    at 148 images/s on one thread and 38 on two (measured side by side)."""
    if requested is not None:
        return requested, f"{requested} thread{'s' if requested > 1 else ''} (--threads)"
    cores = (os.cpu_count() or 1) if cores is None else cores
    current = torch.get_num_threads() if current is None else current
    if load is not None:
        reason = f"{cores} cores, {load:.1f} busy"
    elif (load := busy_cores()) is not None:
        reason = f"{cores} cores, {load:.1f} busy over the last {BUSY_WINDOW_S:g} s"
    else:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        reason = f"{cores} cores, load average {load:.1f}"
    idle = max(1, min(current, math.floor(cores - load + 0.5)))
    if idle == current:
        return idle, f"{idle} thread{'s' if idle > 1 else ''} ({reason})"
    return idle, f"{idle} thread{'s' if idle > 1 else ''} of {current} ({reason}: one per idle core)"
