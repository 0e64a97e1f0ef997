"""Distributed data-parallel training through PyTorch's own torch.distributed: one process per
device, started by torchrun (or ``cnnlab train --nproc N``, which calls torchrun's launcher),
gradients averaged by DistributedDataParallel (NCCL on CUDA, gloo on CPU).

The same loop runs on one CPU and on 64 GPUs: a process that torchrun did not start is a
world of one (:data:`SINGLE`), every helper here is then a no-op, and no process group is
made. In a world of several:

- rank 0 alone writes the run folder, logs, progress, checkpoints and TensorBoard files;
  whatever it decides (the run folder, a resumed state, "stop now") reaches the others by
  :func:`from_writer`, an error included, so every rank stops with the same message;
- each rank trains on a disjoint, epoch-seeded part of every epoch (``cnnlab.data.sharding``);
- evaluation is sharded by whole batches and gathered (:func:`evaluate_sharded`), so its
  numbers are exactly the single-process ones;
- a rank that dies or stops answering ends the others within ``timeout_s`` with one line
  (:class:`RankLostError`) instead of a hang.

Global batch = per-rank batch x world size x accumulation steps; the linear scaling rule
(Goyal et al. 2017, "Accurate, Large Minibatch SGD", Sec. 2.1-2.2) adapts the learning rate
when that differs from the batch the recipe states (:func:`scale_lr`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.training.device import resolve_device
from cnnlab.training.evaluate import EvalResult, metrics_from_probs, predict_probs

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 600.0  # how long a rank waits for the others at a collective before giving up
# Goyal et al. 2017, Sec. 2.2: "gradual warmup" over the first 5 epochs when the batch grows.
SCALING_WARMUP_EPOCHS = 5.0
# Rank r > 0 seeds its augmentation and dropout with seed + RANK_SEED_STRIDE * r (a prime, so
# nearby seeds of different runs do not line up); rank 0 keeps the seed of a 1-rank run.
RANK_SEED_STRIDE = 7919
# torchrun's environment (https://pytorch.org/docs/stable/elastic/run.html#environment-variables).
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


class RankLostError(CnnlabError):
    """Another rank died or stopped answering; this one stops too."""


@dataclass(frozen=True)
class World:
    """This process's place in the run."""

    rank: int = 0  # 0 .. world_size - 1 over all nodes; rank 0 writes
    world_size: int = 1  # processes in the run (one per device)
    local_rank: int = 0  # index on this node: the CUDA device it drives
    local_world_size: int = 1  # processes on this node
    backend: str | None = None  # "nccl" or "gloo"; None: one process, no process group
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        if self.backend is None:
            return "1 process"
        nodes = self.world_size // max(1, self.local_world_size)
        return f"{self.world_size} ranks ({self.backend}, {nodes} node(s) x {self.local_world_size})"


SINGLE = World()


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def exit_worker(code: int | str | None) -> None:
    """End a torchrun worker with ``code`` (as ``sys.exit`` takes it) without the
    interpreter's shutdown: the process group that DDP keeps alive has gloo threads that may
    still need the GIL then, and one that does aborts the process with SIGABRT, turning a
    finished run (or cnnlab's one-line error, exit status 1) into "killed by SIGABRT".
    Files are closed by then; the standard streams are flushed here."""
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more to say on it
            pass
    os._exit(code or 0)


def is_writer_process() -> bool:
    """Whether this process is rank 0 (or not part of a distributed run), from torchrun's
    environment: for callers outside :func:`join_world` (the CLI drawing curves)."""
    return os.environ.get("RANK", "0") == "0"


def _env_int(name: str) -> int:
    text = os.environ[name]
    try:
        return int(text)
    except ValueError:
        raise CnnlabError(f"environment variable {name}={text!r} is not an integer (set by torchrun)") from None


def device_capacity(device: torch.device) -> int:
    """How many processes a node can give a device of this type: CUDA devices, else CPU cores."""
    if device.type == "cuda":
        return torch.cuda.device_count()
    if device.type == "cpu":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 1


def check_process_count(nproc: int, device: torch.device) -> None:
    """One line when ``nproc`` processes per node cannot each have a device of their own."""
    available = device_capacity(device)
    if nproc > available:
        what = "CUDA devices" if device.type == "cuda" else f"{device.type} cores" if device.type == "cpu" else f"{device.type} devices"
        raise CnnlabError(
            f"{nproc} processes per node asked for, but this node has {available} {what}; use at most --nproc {available}"
        )


@contextlib.contextmanager
def join_world(device_name: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[tuple[World, torch.device]]:
    """``with join_world(config.device) as (world, device):`` the process group of a torchrun
    worker (NCCL on CUDA, gloo on CPU; each rank on CUDA device ``local_rank``), or
    :data:`SINGLE` and the resolved device when torchrun did not start this process. A group
    made here is destroyed on the way out; one the caller made already is used as it is."""
    device = resolve_device(device_name)
    if not launched_by_torchrun():
        yield SINGLE, device
        return
    rank, world_size = _env_int("RANK"), _env_int("WORLD_SIZE")
    local_rank, local_world_size = _env_int("LOCAL_RANK"), _env_int("LOCAL_WORLD_SIZE")
    if device.type == "cuda":
        check_process_count(local_world_size, device)
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise CnnlabError(f"torch.distributed has no backend for {device.type}; use --device cuda or cpu with several processes")
    world = World(rank, world_size, local_rank, local_world_size, backend, timeout_s)
    made = not dist.is_initialized()
    if made:
        with collective(world, "joining the process group"):
            dist.init_process_group(
                backend, timeout=timedelta(seconds=timeout_s), device_id=device if backend == "nccl" else None
            )
    failed = False
    try:
        yield world, device
    except BaseException:
        # Tearing the group down could wait on a dead rank, or meet the others mid-collective;
        # the process is about to exit, which closes it. A group of one has no one to wait for.
        failed = world_size > 1
        raise
    finally:
        if made and not failed and dist.is_initialized():
            # A barrier first: gloo's worker threads release each finished collective's
            # tensors under the GIL, and DDP keeps the group (and those threads) alive to the
            # interpreter's exit, where a thread that still has to take the GIL aborts the
            # process ("terminate called without an active exception"; seen after the last
            # epoch's broadcast). While this rank waits here, with the GIL released, they finish.
            dist.barrier()
            dist.destroy_process_group()


def _reason(error: BaseException) -> str:
    """The useful part of a gloo/NCCL message: '[.../pair.cc:537] Read error ...: Connection
    reset by peer. This is typically ...' -> 'Read error ...: Connection reset by peer'."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if text.startswith("[") and "] " in text:
        text = text.split("] ", 1)[1]
    return text.split(". ", 1)[0].rstrip(".")[:200]


def is_communication_error(error: BaseException) -> bool:
    if isinstance(error, dist.DistError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        marker in text for marker in ("gloo", "NCCL", "Connection reset", "Connection closed", "Timed out", "timed out")
    )


def lost_rank(world: World, what: str, error: BaseException) -> RankLostError:
    return RankLostError(
        f"rank {world.rank} of {world.world_size} stopped while {what}: another rank died or did not answer "
        f"within {world.timeout_s:g} s ({_reason(error)}); its own message, if any, is above"
    )


@contextlib.contextmanager
def collective(world: World, what: str) -> Iterator[None]:
    """Turn a failed collective (dead peer, timeout) into one :class:`RankLostError` line."""
    try:
        yield
    except RankLostError:
        raise
    except (RuntimeError, dist.DistError) as e:
        if world.backend is not None and is_communication_error(e):
            raise lost_rank(world, what, e) from None
        raise


def from_writer(world: World, decide: Callable[[], T], *, what: str = "waiting for rank 0") -> T:
    """Rank 0 runs ``decide()``; every rank gets its result, or raises the CnnlabError it
    raised (so a refused run folder stops all ranks with the same line, none left waiting)."""
    if world.backend is None:
        return decide()
    message: list[Any] = [None]
    failure: CnnlabError | None = None
    if world.is_writer:
        try:
            message[0] = ("ok", decide())
        except CnnlabError as e:
            failure, message[0] = e, ("error", type(e), str(e))
    with collective(world, what):
        dist.broadcast_object_list(message, src=0)
    if failure is not None:
        raise failure
    kind, *rest = message[0]
    if kind == "error":
        error_type, text = rest
        error = (error_type if issubclass(error_type, CnnlabError) else CnnlabError)(text)
        error.reported_by_rank0 = True  # rank 0 prints it; the CLI keeps the other ranks quiet
        raise error
    return rest[0]


def all_sum(world: World, values: list[float]) -> list[float]:
    """Element-wise sum over ranks (float64); the values themselves in a world of one."""
    if world.backend is None:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device(world))
    with collective(world, "summing epoch statistics"):
        dist.all_reduce(t)
    return t.tolist()


def all_max(world: World, value: float) -> float:
    if world.backend is None:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_comm_device(world))
    with collective(world, "comparing ranks"):
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t)


def gather_objects(world: World, obj: T) -> list[T]:
    """Every rank's ``obj``, in rank order (picklable objects: RNG states)."""
    if world.backend is None:
        return [obj]
    out: list[Any] = [None] * world.world_size
    with collective(world, "gathering RNG states"):
        dist.all_gather_object(out, obj)
    return out


def check_equal_steps(world: World, steps: int) -> None:
    """DDP needs every rank to take the same number of steps (else an all-reduce waits for a
    rank that has finished); one line naming the counts when they differ."""
    if world.backend is None:
        return
    t = torch.tensor([steps, -steps], dtype=torch.int64, device=_comm_device(world))
    with collective(world, "counting steps"):
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    most, fewest = int(t[0]), -int(t[1])
    if most != fewest:
        raise CnnlabError(f"the ranks have between {fewest} and {most} training batches this epoch; every rank needs the same number")


def _comm_device(world: World) -> torch.device:
    # NCCL moves CUDA tensors only; gloo CPU ones.
    return torch.device("cuda", torch.cuda.current_device()) if world.backend == "nccl" else torch.device("cpu")


def _all_gather_rows(world: World, rows: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``rows`` (1-D, or 2-D of one width), in rank order. Ranks may
    hold different numbers of rows, none included (such a rank may not know the width: 0)."""
    device = _comm_device(world)
    width = rows.shape[1] if rows.ndim == 2 else 0
    shapes = [torch.zeros(2, dtype=torch.int64, device=device) for _ in range(world.world_size)]
    dist.all_gather(shapes, torch.tensor([len(rows), width], dtype=torch.int64, device=device))
    counts = [int(s[0]) for s in shapes]
    width = max(int(s[1]) for s in shapes)
    shape = (max(counts), width) if rows.ndim == 2 else (max(counts),)
    padded = torch.zeros(shape, dtype=rows.dtype, device=device)
    if len(rows):
        padded[: len(rows)] = rows.to(device)
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, counts)]).cpu()


def evaluate_sharded(model: nn.Module, batches, world: World, *, amp: bool = False) -> EvalResult:
    """Evaluate ``model`` on ``batches`` (this rank's whole batches, with ``indices()``) and
    return the metrics of the whole split on every rank.

    Each rank predicts its own batches, exactly as one process would cut them; the
    probabilities, labels and dataset positions of all ranks are gathered and put back in
    dataset order, and the metrics are computed once from them: the same numbers, to the
    last bit, as a single process evaluating the same weights with the same threads."""
    if len(batches):
        probs, labels = predict_probs(model, batches, amp=amp)
    else:  # fewer batches than ranks: this one has none (the width comes from the others)
        probs, labels = torch.zeros((0, 0)), torch.zeros(0, dtype=torch.int64)
    if world.backend is None:
        return metrics_from_probs(probs, labels)
    index = batches.indices()
    with collective(world, "gathering evaluation results"):
        probs, labels, index = (_all_gather_rows(world, t) for t in (probs, labels, index))
    order = index.argsort()
    return metrics_from_probs(probs[order], labels[order])


def wrap_model(model: nn.Module, world: World, device: torch.device, *, sync_bn: bool = False) -> nn.Module:
    """The module a training step calls: ``model`` itself in a world of one, else
    DistributedDataParallel over it (rank 0's weights are broadcast to every rank here), its
    BatchNorm layers first turned into SyncBatchNorm with ``sync_bn`` (batch statistics over
    the global batch instead of each rank's share; Ioffe & Szegedy's batch is then the global one)."""
    if world.backend is None:
        return model
    if sync_bn:
        # Replaces the children in place: same parameters, buffers and state-dict keys, so
        # ``model`` is still what checkpoints save, and they load into the plain network.
        nn.SyncBatchNorm.convert_sync_batchnorm(model)
    with collective(world, "broadcasting the initial weights"):
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def check_sync_bn(world: World, device: torch.device, sync_bn: bool) -> str:
    """What ``sync_bn`` does in this world (for the run header); one line where it cannot work."""
    if not sync_bn:
        return ""
    if world.backend is None:
        return "SyncBatchNorm: one process, nothing to synchronise"
    if device.type != "cuda":
        raise CnnlabError(
            "--sync-bn needs CUDA devices: PyTorch's SyncBatchNorm runs on GPUs only; "
            "on CPU ranks drop it (each rank then normalises over its own batch)"
        )
    return "SyncBatchNorm over the global batch"


@dataclass(frozen=True)
class Scaling:
    """The learning rate a run trains with after the linear scaling rule."""

    global_batch: int  # images per optimizer step over all ranks
    reference_batch: int  # the global batch the configured lr is given for
    lr: float  # the configured lr x global_batch / reference_batch
    warmup: float  # epochs of warmup (the config's, or Goyal's when the rule scales lr up)

    @property
    def factor(self) -> float:
        return self.global_batch / self.reference_batch

    def describe(self, *, per_rank: int, world_size: int, accum_steps: int, lr: float) -> str:
        batch = f"global batch {self.global_batch:,} = {per_rank:,} per rank x {world_size} rank(s)"
        if accum_steps > 1:
            batch += f" x {accum_steps} accumulation steps"
        if self.factor == 1:
            return f"{batch}, lr {lr:g}"
        return (
            f"{batch}; lr {self.lr:g} = {lr:g} x {self.global_batch:,}/{self.reference_batch:,} "
            f"(linear scaling rule, Goyal et al. 2017), warmup {self.warmup:g} epochs"
        )


def scale_lr(
    lr: float, *, batch_size: int, world_size: int, accum_steps: int, reference_batch: int | None, warmup: float,
    epochs: int, schedule: str = "constant",
) -> Scaling:
    """Goyal et al. 2017, Sec. 2.1: "when the minibatch size is multiplied by k, multiply the
    learning rate by k", with (Sec. 2.2) a gradual warmup over the first 5 epochs when k > 1.

    ``reference_batch``: the global batch the recipe's ``lr`` is given for; None means one
    process's batch (``batch_size x accum_steps``), so only a change of world size scales lr.
    The warmup is the config's when it has one, else 5 epochs, capped at a quarter of the run
    (none for "onecycle", which rises from lr / 25 by itself).
    NOTE: our warmup starts at lr / warmup_steps, not at the unscaled lr as in the paper."""
    global_batch = batch_size * world_size * accum_steps
    reference = reference_batch if reference_batch is not None else batch_size * accum_steps
    factor = global_batch / reference
    if factor > 1 and warmup == 0 and schedule != "onecycle":
        warmup = min(SCALING_WARMUP_EPOCHS, epochs / 4)
    return Scaling(global_batch, reference, lr * factor, warmup)


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank ``rank``'s augmentation and dropout (rank 0: ``seed`` itself)."""
    return seed + RANK_SEED_STRIDE * rank
