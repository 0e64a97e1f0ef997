"""Checkpoints: one transaction per epoch, so that a crash never loses or mixes a run's state.

A checkpoint is the set of files a resumed run needs, written into a folder of its own and
committed by one atomic rename of a manifest::

    checkpoints/epoch-0003/last.safetensors   the weights after epoch 3
    checkpoints/epoch-0003/best.safetensors   the best weights so far (a hard link to the
                                              previous checkpoint's when epoch 3 was not better)
    checkpoints/epoch-0003/state.pt           optimizer, schedule, RNG, history; tensors and
                                              plain containers only (torch.load weights_only=True)
    checkpoints/epoch-0003/ema.safetensors    with an EMA of the weights (``ema_decay``): the
                                              average after epoch 3, its counters in the metadata
    checkpoints/epoch-0003/manifest.json      the epoch, and each file's size and SHA-256

Writing (:func:`save_checkpoint`): the three files are written and fsynced into a fresh
folder, then ``manifest.json.tmp`` is written, fsynced and renamed to ``manifest.json``: that
rename is the commit. A folder without a manifest is an unfinished write; it is never read and
is removed on the next start (:func:`remove_unfinished`). The previous checkpoint is kept until
the new one is committed, and one previous checkpoint is kept after it as the fallback; older
ones are removed. ``last.safetensors``, ``best.safetensors`` and ``state.pt`` at the top of the
run folder are hard links to the newest committed files, for tools that read a file by name;
resuming and :func:`weights_file` go through the manifest.

Reading (:func:`load_checkpoint`, :func:`latest_checkpoint`): the newest committed checkpoint
whose files match their manifest (sizes, hashes) and agree on the epoch (the manifest, the
folder name, the weights' metadata, ``state.pt``) is used; a damaged one is skipped with a
one-line :class:`~cnnlab.errors.CheckpointWarning` naming what is wrong, and the one before it
is used. Run folders written before manifests existed (the files at the top only) are read
too, with the epochs of weights and state checked against each other.

Every file operation of the writer passes through :func:`fault_point`, so tests can kill the
process or fail the write (disk full) at each one (tests/reliability).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save as safetensors_bytes
from torch import nn

from cnnlab.data.files import atomic_write_bytes
from cnnlab.errors import CheckpointError, CheckpointWarning
from cnnlab.models import model_label

CHECKPOINTS = "checkpoints"  # the folder of checkpoints inside a run folder
MANIFEST = "manifest.json"
FILES = ("last.safetensors", "best.safetensors", "state.pt")
KEEP = 2  # committed checkpoints kept: the newest and the one before it (the fallback)
FORMAT = 1  # manifest format
_EPOCH_FOLDER = re.compile(r"^epoch-(\d{4,})$")

class UnsafeCheckpoint(CheckpointError):
    """A state file holding Python objects besides tensors: refused, never loaded or skipped."""


class WrongModel(CheckpointError):
    """Weights of another model: an error of the command, not damage to fall back from."""


# --- fault injection -------------------------------------------------------------------------

FaultHook = Callable[[str], None]
_fault_hook: FaultHook | None = None


def set_fault_hook(hook: FaultHook | None) -> FaultHook | None:
    """Call ``hook(label)`` before every file operation of the checkpoint writer (labels like
    ``"epoch 3: rename manifest.json"``); returns the previous hook. For tests: a hook that
    kills the process or raises OSError(ENOSPC) at one label simulates a crash or a full disk
    exactly there. ``None`` removes it."""
    global _fault_hook
    previous, _fault_hook = _fault_hook, hook
    return previous


def fault_point(label: str) -> None:
    """A file operation of the writer is about to happen (see :func:`set_fault_hook`)."""
    if _fault_hook is not None:
        _fault_hook(label)


# --- single files ------------------------------------------------------------------------------


def save_weights(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    atomic_write_bytes(path, weights_bytes(model, metadata))


def weights_bytes(model: nn.Module, metadata: dict[str, str] | None = None) -> bytes:
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    return safetensors_bytes(tensors, metadata=metadata)


def load_weights(model: nn.Module, path: Path) -> None:
    """Load safetensors weights into ``model``; a file from another model fails clearly."""
    try:
        tensors = load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint: {e}") from None
    own = model.state_dict()
    name = model_label(model)
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise WrongModel(
            f"{path} does not fit model {name}: {what} ({len(missing)} missing, {len(unexpected)} unexpected keys)"
        )
    for key, value in tensors.items():
        if value.shape != own[key].shape:
            raise WrongModel(
                f"{path} does not fit model {name}: {key} has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}"
            )
    model.load_state_dict(tensors, strict=True)


def weights_epoch(path: Path) -> int | None:
    """The epoch recorded in a weights file's metadata (None when it has none)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint: {e}") from None
    try:
        return int(meta["epoch"])
    except (KeyError, ValueError):
        return None


def state_bytes(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def save_state(state: dict[str, Any], path: Path) -> None:
    atomic_write_bytes(path, state_bytes(state))


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def load_state(path: Path) -> dict[str, Any]:
    """``state.pt`` with ``torch.load(weights_only=True)``: tensors and plain containers only.
    A file that holds anything else (code to run on unpickling) is refused, never loaded."""
    try:
        with warnings.catch_warnings():  # torch's advice on foreign pickles: the refusal below says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no training state at {path}") from None
    except pickle.UnpicklingError as e:
        found = _GLOBAL.search(str(e))
        what = f" ({found.group(1)})" if found else ""
        raise UnsafeCheckpoint(
            f"{path} refused: it holds Python objects{what} besides tensors and plain containers, which cnnlab "
            "never writes; nothing in it was run. Delete it or take the state from a copy you trust"
        ) from None
    except Exception as e:  # truncated or corrupt files fail in many types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable training state: {first}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a training state: it holds a {type(state).__name__}, not a dict")
    return state


# --- the checkpoint transaction ------------------------------------------------------------------


@dataclass
class TrainingState:
    """Everything besides the weights that a resumed run needs to continue exactly."""

    epoch: int = 0  # completed epochs
    history: list[dict] = field(default_factory=list)  # one metrics row per completed epoch
    best_val: float = float("-inf")  # best validation (else training) accuracy so far
    optimizer: dict = field(default_factory=dict)  # optimizer.state_dict()
    plateau: dict = field(default_factory=dict)  # Plateau.state_dict()
    rng: dict = field(default_factory=dict)  # cnnlab.training.device.rng_state()
    extra: dict = field(default_factory=dict)  # more state of the loop's (a GradScaler's); tensors and plain containers


@dataclass(frozen=True)
class Checkpoint:
    """A committed checkpoint: its folder and manifest."""

    epoch: int
    folder: Path
    manifest: dict

    def file(self, name: str) -> Path:
        return self.folder / name

    @property
    def best_epoch(self) -> int:
        return int(self.manifest.get("best_epoch", self.epoch))


def epoch_folder(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"epoch-{epoch:04d}"


def _epoch_folders(run_dir: Path) -> list[tuple[int, Path]]:
    """(epoch, folder) of every epoch folder, committed or not, newest first."""
    base = Path(run_dir) / CHECKPOINTS
    if not base.is_dir():
        return []
    found = []
    for p in base.iterdir():
        m = _EPOCH_FOLDER.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found, reverse=True)


def committed(run_dir: Path) -> list[Path]:
    """The folders of committed checkpoints (with a manifest), newest first; unverified."""
    return [p for _, p in _epoch_folders(run_dir) if (p / MANIFEST).is_file()]


def has_checkpoint(run_dir: Path) -> bool:
    """Whether the folder holds a committed checkpoint (or an old-style one, files at the top)."""
    return bool(committed(run_dir)) or (Path(run_dir) / "last.safetensors").is_file()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path, label: str) -> None:
    fault_point(label)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes, label: str) -> dict:
    """Write ``data`` to a new file and fsync it; its manifest entry."""
    fault_point(f"{label}: write {path.name}")
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        fault_point(f"{label}: fsync {path.name}")
        os.fsync(f.fileno())
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        shutil.copyfile(source, target)  # a file system without hard links
        with open(target, "rb+") as f:
            os.fsync(f.fileno())


def _newest_manifest(run_dir: Path, before: int) -> Checkpoint | None:
    """The newest committed checkpoint of an epoch before ``before``, by its manifest alone
    (no hashing), or None."""
    for folder in committed(run_dir):
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
            checkpoint = Checkpoint(int(manifest["epoch"]), folder, manifest)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if checkpoint.epoch < before:
            return checkpoint
    return None


def save_checkpoint(
    run_dir: Path,
    model: nn.Module,
    state: TrainingState,
    *,
    model_name: str,
    is_best: bool,
    extra_weights: dict[str, nn.Module | tuple[nn.Module, dict[str, str]]] | None = None,
) -> Checkpoint:
    """Write and commit the checkpoint of epoch ``state.epoch`` (see the module docstring).
    ``extra_weights`` (``{"ema.safetensors": averaged_model}``, or ``(model, metadata)`` for
    counters a resume reads back, such as the EMA's) are written, hashed and committed with
    the rest; :func:`checkpoint_file` finds them again.

    A failure before the commit (disk full, permission) removes the unfinished folder, keeps
    the previous checkpoint as it was and raises CheckpointError in one line."""
    run_dir = Path(run_dir)
    epoch = state.epoch
    label = f"epoch {epoch}"
    folder = epoch_folder(run_dir, epoch)
    previous = _newest_manifest(run_dir, before=epoch)  # whose best weights carry over; kept until the commit
    meta = {"model": model_name, "epoch": str(epoch)}
    committed_now = False
    try:
        if folder.exists():  # left by a process that died, or a damaged checkpoint skipped on resume
            fault_point(f"{label}: remove stale {folder.name}")
            shutil.rmtree(folder)
        fault_point(f"{label}: mkdir {folder.name}")
        folder.mkdir(parents=True)
        files = {"last.safetensors": _write_new(folder / "last.safetensors", weights_bytes(model, meta), label)}
        best_epoch = epoch
        old_best = _previous_best(run_dir, previous)
        if is_best or old_best is None:
            fault_point(f"{label}: link best.safetensors")
            _link_or_copy(folder / "last.safetensors", folder / "best.safetensors")
            files["best.safetensors"] = dict(files["last.safetensors"])
        else:
            source, entry, best_epoch = old_best
            fault_point(f"{label}: link best.safetensors")
            _link_or_copy(source, folder / "best.safetensors")
            files["best.safetensors"] = entry
        saved = {
            "epoch": epoch,
            "optimizer": state.optimizer,
            "plateau": state.plateau,
            "rng": state.rng,
            "history": state.history,
            "best_val": state.best_val,
            "extra": state.extra,
        }
        files["state.pt"] = _write_new(folder / "state.pt", state_bytes(saved), label)
        for name, module in (extra_weights or {}).items():
            if name in FILES or not name.endswith(".safetensors") or "/" in name:
                raise ValueError(f"extra weights need a new name ending in .safetensors, got {name!r}")
            module, own = module if isinstance(module, tuple) else (module, {})
            files[name] = _write_new(folder / name, weights_bytes(module, {**own, **meta}), label)  # the epoch is the checkpoint's
        _fsync_dir(folder, f"{label}: fsync {folder.name}")
        manifest = {
            "format": FORMAT,
            "epoch": epoch,
            "model": model_name,
            "best_epoch": best_epoch,
            "files": files,
            "written_by": {"pid": os.getpid(), "host": socket.gethostname()},
        }
        _write_new(folder / f"{MANIFEST}.tmp", (json.dumps(manifest, indent=2) + "\n").encode(), label)
        fault_point(f"{label}: rename {MANIFEST}")
        os.replace(folder / f"{MANIFEST}.tmp", folder / MANIFEST)  # the commit
        committed_now = True
        _fsync_dir(folder, f"{label}: fsync {folder.name} after commit")
    except OSError as e:
        if not committed_now:
            shutil.rmtree(folder, ignore_errors=True)
            kept = f"the checkpoint of epoch {previous.epoch} is intact" if previous else "no earlier checkpoint exists"
            why = "the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (e.strerror or str(e))
            raise CheckpointError(
                f"could not write the checkpoint of epoch {epoch} in {run_dir}: {why}; {kept}"
                + (f"; free space and continue with: cnnlab train --resume {run_dir}" if previous else "")
            ) from None
        warnings.warn(f"checkpoint of epoch {epoch} committed, but syncing {folder} failed: {e.strerror}", CheckpointWarning)
    except BaseException:  # Ctrl-C or a bug mid-write: the unfinished folder goes (a kill -9 leaves it to remove_unfinished)
        if not committed_now:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    checkpoint = Checkpoint(epoch, folder, manifest)
    _update_views(run_dir, checkpoint)
    _prune(run_dir, epoch)
    return checkpoint


def _previous_best(run_dir: Path, previous: Checkpoint | None) -> tuple[Path, dict, int] | None:
    """(file, manifest entry, epoch) of the best weights before this epoch, or None."""
    if previous is not None:
        entry = previous.manifest.get("files", {}).get("best.safetensors")
        if entry and previous.file("best.safetensors").is_file():
            return previous.file("best.safetensors"), entry, previous.best_epoch
        return None
    legacy = Path(run_dir) / "best.safetensors"  # a run folder from before manifests
    if legacy.is_file():
        epoch = weights_epoch(legacy)
        return legacy, {"bytes": legacy.stat().st_size, "sha256": _sha256(legacy)}, epoch or 0
    return None


def _update_views(run_dir: Path, checkpoint: Checkpoint) -> None:
    """Point the top-level file names at the committed files (hard links, each atomic)."""
    label = f"epoch {checkpoint.epoch}"
    try:
        for name in checkpoint.manifest["files"]:
            tmp = Path(run_dir) / f".{name}.view-{os.getpid()}"
            tmp.unlink(missing_ok=True)
            fault_point(f"{label}: link view {name}")
            _link_or_copy(checkpoint.file(name), tmp)
            fault_point(f"{label}: rename view {name}")
            os.replace(tmp, Path(run_dir) / name)
    except OSError as e:
        warnings.warn(
            f"checkpoint of epoch {checkpoint.epoch} committed, but {run_dir}/{name} could not be updated "
            f"({e.strerror}); `cnnlab eval` and --resume read the checkpoint itself", CheckpointWarning,
        )


def _prune(run_dir: Path, epoch: int) -> None:
    """After committing ``epoch``: remove the checkpoints older than the KEEP newest (a file
    still linked from a newer checkpoint lives on through the link)."""
    for older, folder in _epoch_folders(run_dir):
        if older <= epoch - KEEP:
            fault_point(f"epoch {epoch}: remove {folder.name}")
            shutil.rmtree(folder, ignore_errors=True)


def discard_newer(run_dir: Path, epoch: int) -> list[Path]:
    """Remove the epoch folders after ``epoch`` (damaged ones skipped by a resume from
    ``epoch``; training writes those epochs again)."""
    removed = []
    for newer, folder in _epoch_folders(run_dir):
        if newer > epoch:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def remove_unfinished(run_dir: Path) -> list[Path]:
    """Remove what a process that died left half-written: epoch folders without a manifest,
    ``manifest.json.tmp`` files, the atomic writer's ``.NAME.tmp-PID`` files and view links.
    Call it only while holding the run folder's lock (then no live process is writing)."""
    run_dir = Path(run_dir)
    removed = []
    for _, folder in _epoch_folders(run_dir):
        if not (folder / MANIFEST).is_file():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        elif (folder / f"{MANIFEST}.tmp").exists():
            (folder / f"{MANIFEST}.tmp").unlink(missing_ok=True)
            removed.append(folder / f"{MANIFEST}.tmp")
    if run_dir.is_dir():
        for p in run_dir.iterdir():
            if p.name.startswith(".") and (".tmp-" in p.name or ".view-" in p.name or p.name.startswith(".write-test-")):
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def verify(folder: Path, names: Iterable[str] | None = None) -> Checkpoint:
    """The committed checkpoint in ``folder`` if its manifest is whole and the files
    ``names`` (default: all it lists) match it (size, SHA-256, the epoch in the weights'
    metadata); else CheckpointError saying what is wrong."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        epoch = int(manifest["epoch"])
        entries = manifest["files"]
    except FileNotFoundError:
        raise CheckpointError("no manifest (the write never finished)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"its manifest is unreadable ({type(e).__name__})") from None
    m = _EPOCH_FOLDER.match(folder.name)
    if m and int(m.group(1)) != epoch:
        raise CheckpointError(f"its manifest says epoch {epoch}, the folder epoch {int(m.group(1))}")
    checkpoint = Checkpoint(epoch, folder, manifest)
    for name in (FILES + tuple(n for n in entries if n not in FILES)) if names is None else names:
        entry, path = entries.get(name), folder / name
        if not isinstance(entry, dict):
            raise CheckpointError(f"its manifest lists no {name}")
        if not path.is_file():
            raise CheckpointError(f"{name} is missing")
        if path.stat().st_size != entry.get("bytes") or _sha256(path) != entry.get("sha256"):
            raise CheckpointError(f"{name} does not match its manifest (changed or damaged after it was written)")
        if name.endswith(".safetensors"):
            expected = checkpoint.best_epoch if name == "best.safetensors" else epoch
            found = weights_epoch(path)
            if found is not None and found != expected:
                raise CheckpointError(f"{name} is from epoch {found}, the manifest says epoch {expected}")
    return checkpoint


def latest_checkpoint(run_dir: Path, names: Iterable[str] | None = None) -> Checkpoint | None:
    """The newest committed checkpoint whose files ``names`` (default: all) verify; damaged
    ones are skipped with one CheckpointWarning. None when there is none."""
    names = None if names is None else tuple(names)
    skipped: list[tuple[Path, str]] = []
    for folder in committed(run_dir):
        try:
            checkpoint = verify(folder, names)
        except CheckpointError as e:
            skipped.append((folder, str(e)))
            continue
        _warn_skipped(run_dir, skipped, checkpoint.folder)
        return checkpoint
    if skipped:
        raise CheckpointError(_damaged(run_dir, skipped) + "; no undamaged checkpoint is left")
    return None


def _damaged(run_dir: Path, skipped: list[tuple[Path, str]]) -> str:
    what = ", ".join(f"{folder.name} ({reason})" for folder, reason in skipped)
    return f"checkpoint{'s' if len(skipped) > 1 else ''} {what} in {run_dir} {'are' if len(skipped) > 1 else 'is'} damaged"


def _warn_skipped(run_dir: Path, skipped: list[tuple[Path, str]], used: Path) -> None:
    """One warning line for the checkpoints skipped in favour of ``used``."""
    if skipped:
        warnings.warn(f"{_damaged(run_dir, skipped)}; using {used.name}", CheckpointWarning)


def weights_file(run_dir: Path, which: str = "best") -> Path:
    """The verified ``best`` or ``last`` (or an extra: ``ema``) weights of a run folder,
    through its manifest (an old-style folder's top-level file; ``best`` falls back to
    ``last``)."""
    run_dir = Path(run_dir)
    name = f"{which}.safetensors"
    checkpoint = latest_checkpoint(run_dir, (name,))
    if checkpoint is not None:
        return checkpoint.file(name)
    for candidate in (name, "last.safetensors"):
        if (run_dir / candidate).is_file():
            return run_dir / candidate
    raise CheckpointError(f"{run_dir} has no completed epoch: no checkpoint was committed (train it with `cnnlab train`)")


def checkpoint_file(run_dir: Path, epoch: int, name: str) -> Path | None:
    """File ``name`` of the committed checkpoint of epoch ``epoch``, verified against its
    manifest; None when that checkpoint does not list it or does not verify (a resume then
    restarts what the file held, with a warning of its own). A run folder from before
    manifests (no committed checkpoint at all): its top-level file, whose epoch the caller
    checks."""
    folder = epoch_folder(Path(run_dir), epoch)
    if not committed(Path(run_dir)):
        legacy = Path(run_dir) / name
        return legacy if legacy.is_file() else None
    try:
        return verify(folder, (name,)).file(name)
    except CheckpointError:
        return None


def _state_from(saved: dict, path: Path) -> TrainingState:
    try:
        return TrainingState(
            epoch=int(saved["epoch"]),
            history=list(saved["history"]),
            best_val=float(saved["best_val"]),
            optimizer=saved["optimizer"],
            plateau=saved["plateau"],
            rng=saved["rng"],
            extra=dict(saved.get("extra", {})),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} is not a cnnlab training state (missing or bad {e})") from None


def load_checkpoint(run_dir: Path, model: nn.Module) -> TrainingState | None:
    """Load the newest good checkpoint's ``last`` weights into ``model`` and return the state
    saved with them; None when the folder has no committed checkpoint (start from epoch 0).

    Checkpoints that fail verification, or whose ``state.pt`` disagrees with the manifest's
    epoch, are skipped with a warning; when all fail, CheckpointError."""
    run_dir = Path(run_dir)
    folders = committed(run_dir)
    skipped: list[tuple[Path, str]] = []
    for folder in folders:
        try:
            checkpoint = verify(folder)
            load_weights(model, checkpoint.file("last.safetensors"))
            state = _state_from(load_state(checkpoint.file("state.pt")), checkpoint.file("state.pt"))
            if state.epoch != checkpoint.epoch:
                raise CheckpointError(f"state.pt is from epoch {state.epoch}, the manifest says epoch {checkpoint.epoch}")
        except (WrongModel, UnsafeCheckpoint):
            raise  # not damage: the wrong model, or a hostile file; falling back would hide it
        except CheckpointError as e:
            skipped.append((folder, str(e)))
            continue
        _warn_skipped(run_dir, skipped, folder)
        return state
    if skipped:
        raise CheckpointError(_damaged(run_dir, skipped) + "; no undamaged checkpoint is left to resume from")
    if not (run_dir / "last.safetensors").is_file():
        return None
    # A run folder from before manifests: the files at the top, each written atomically but
    # not as a set; the epochs they record must agree, or the run would resume silently wrong.
    load_weights(model, run_dir / "last.safetensors")
    state = _state_from(load_state(run_dir / "state.pt"), run_dir / "state.pt")
    found = weights_epoch(run_dir / "last.safetensors")
    if found is not None and found != state.epoch:
        raise CheckpointError(
            f"{run_dir} holds a torn checkpoint: last.safetensors is from epoch {found}, state.pt from epoch "
            f"{state.epoch}; it cannot be resumed exactly"
        )
    return state
