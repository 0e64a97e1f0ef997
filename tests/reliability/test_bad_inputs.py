"""Bad input through the real command line: one line, no traceback, nothing changed.

Each case runs ``cnnlab ARGS`` as its own process (see conftest.run_cnnlab) in a workspace
holding a trained run, copies of it damaged in various ways, image files good and bad,
image-folder datasets a model cannot use, and recipe files with mistakes. Each must answer
with a non-zero exit status (or exit 0 with a stated ``warning:`` where the input is
acceptable), exactly one line on stderr that names the problem, no "Traceback", and leave
every file of the workspace as it was (SHA-256 of each, before and after; no new files: a
refused command creates no folder).
"""

from __future__ import annotations

import os
import pickle
import shlex
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import TINY, file_hashes, run_cnnlab, tiny_args

T = f"train lenet5 --data {TINY} --device cpu -q --out {{new}}"  # a new run (that must never appear)
ERROR, WARNING = "error", "warning"

# (id, arguments with {w} for the workspace, what the one line must start with, text it must contain, env)
CASES: list[tuple[str, str, str, str, dict]] = [
    # names
    ("unknown-model", "train lenet5x --out {new}", ERROR, "unknown model 'lenet5x'; did you mean", {}),
    ("unknown-dataset", "train lenet5 --data mnistt --out {new}", ERROR, "unknown dataset 'mnistt'", {}),
    ("unknown-option", f"{T} -o depth=3", ERROR, "has no option 'depth'", {}),
    ("bad-option-value", f"{T} -o activation=nonsense", ERROR, "unknown activation 'nonsense'", {}),
    ("bad-option-type", f"{T} -o pool=3", ERROR, "option pool expects str, got 3", {}),
    ("unknown-setting", f"{T} --set gama=0.5", ERROR, "did you mean gamma?", {}),
    ("unknown-recipe", f"{T} --recipe nope", ERROR, "unknown recipe 'nope'", {}),
    ("unknown-command", "trian lenet5", ERROR, "No such command 'trian'", {}),
    ("unknown-flag", f"{T} --epoch 3", ERROR, "No such option '--epoch'. (Did you mean one of: '--epochs'", {}),
    ("unknown-schedule", f"{T} --set schedule=linear", ERROR, "unknown schedule 'linear'", {}),
    # numbers out of range or of the wrong type
    ("lr-nan", f"{T} --lr nan", ERROR, "setting lr must be a finite number, got nan", {}),
    ("lr-negative", f"{T} --lr -1", ERROR, "setting lr must be > 0, got -1", {}),
    ("lr-infinite", f"{T} --lr inf", ERROR, "setting lr must be a finite number", {}),
    ("momentum-5", f"{T} --momentum 5", ERROR, "setting momentum must be in [0, 1), got 5", {}),
    ("weight-decay-negative", f"{T} --weight-decay -1", ERROR, "setting weight_decay must be >= 0", {}),
    ("milestones-text", f"{T} --milestones abc", ERROR, "setting milestones expects comma-separated numbers", {}),
    ("milestones-range", f"{T} --schedule multistep --milestones 0.5,2", ERROR, "setting milestones must be in [0, 1]", {}),
    ("val-size-negative", f"{T} --val-size -5", ERROR, "setting val_size must be >= 0, got -5", {}),
    ("val-size-too-big", f"{T} --val-size 60000", ERROR, "val_size must be in [0, 512)", {}),
    ("threads-0", f"{T} --threads 0", ERROR, "setting threads must be >= 1, got 0", {}),
    ("epochs-0", f"{T} --epochs 0", ERROR, "setting epochs must be >= 1", {}),
    ("batch-size-0", f"{T} --batch-size 0", ERROR, "setting batch_size must be >= 1", {}),
    ("epochs-text", f"{T} --set epochs=many", ERROR, "setting epochs expects an integer, got 'many'", {}),
    ("epochs-float-flag", f"{T} --epochs 2.5", ERROR, "'2.5' is not a valid integer", {}),
    ("label-smoothing-1", f"{T} --label-smoothing 1", ERROR, "setting label_smoothing must be in [0, 1)", {}),
    ("train-subset-too-big", f"{T} --train-subset 100000", ERROR, "train_subset must be in [1, 448]", {}),
    ("nan-loss", f"{T} --optimizer sgd --lr 1e6 --epochs 1 -o activation=relu -o pool=max", ERROR, "the loss became nan at epoch 1, step", {}),
    # recipes
    ("recipe-misspelt-table", f"{T} --recipe {{w}}/recipes/trian.toml", ERROR, "has no [train] table (found [trian]", {}),
    ("recipe-keys-outside", f"{T} --recipe {{w}}/recipes/outside.toml", ERROR, "holds 'epochs' outside its [train] table", {}),
    ("recipe-wrong-type", f"{T} --recipe {{w}}/recipes/ten.toml", ERROR, "setting epochs expects an integer, got 'ten'", {}),
    ("recipe-not-toml", f"{T} --recipe {{w}}/recipes/broken.toml", ERROR, "is not valid TOML", {}),
    ("recipe-options-not-a-table", f"{T} --recipe {{w}}/recipes/options.toml", ERROR, "setting model_options expects", {}),
    # data a model cannot use
    ("images-too-small", "train lenet5 --data folder:{w}/folder8 --device cpu -q --out {new}", ERROR,
     "lenet5 cannot take the images of folder:", {}),
    ("images-wrong-size-mlp", "train mlp --data folder:{w}/folder32 --device cpu -q --out {new}", ERROR,
     "use -o image_size=32", {}),
    ("empty-class-folder", "train lenet5 --data folder:{w}/emptyclass --device cpu -q --out {new}", ERROR,
     "no images (.jpg", {}),
    ("one-class", "train lenet5 --data folder:{w}/oneclass --device cpu -q --out {new}", ERROR,
     "has one class folder (a); a classifier needs at least two", {}),
    ("missing-folder", "train lenet5 --data folder:{w}/nothing --device cpu -q --out {new}", ERROR, "expected", {}),
    # output folders and run folders
    ("out-is-a-file", f"train lenet5 --data {TINY} --out {{w}}/recipes/ten.toml", ERROR, "exists and is not a folder", {}),
    ("out-under-a-file", f"train lenet5 --data {TINY} --out {{w}}/recipes/ten.toml/run", ERROR, "cannot write to output folder", {}),
    ("out-holds-a-run", f"train lenet5 --data {TINY} --device cpu -q --out {{w}}/run", ERROR, "already holds a run; pass --resume", {}),
    ("resume-with-settings", "train --resume {w}/run --epochs 5", ERROR, "--resume continues a run with its saved config", {}),
    ("resume-not-a-run", "train --resume {w}/metrics-only", ERROR, "is not a run folder (no config.json)", {}),
    ("resume-truncated-config", "train --resume {w}/truncated-config", ERROR, "config.json is not readable JSON", {}),
    ("resume-edited-config", "train --resume {w}/edited-config", ERROR, "setting epochs must be >= 1, got -3", {}),
    ("resume-malicious-state", "train --resume {w}/malicious", ERROR, "refused: it holds Python objects", {}),
    ("resume-malicious-committed", "train --resume {w}/malicious-committed", ERROR, "refused: it holds Python objects", {}),
    ("resume-torn-old-layout", "train --resume {w}/torn", ERROR, "holds a torn checkpoint: last.safetensors is from epoch 3, state.pt from epoch 2", {}),
    ("missing-model", "train", ERROR, "missing MODEL", {}),
    # eval
    ("eval-batch-size-0", "eval {w}/run --batch-size 0", ERROR, "0 is not in the range x>=1", {}),
    ("eval-confusion-unwritable", "eval {w}/run --confusion {w}/nothing/c.png", ERROR, "cannot write", {}),
    ("eval-confusion-is-a-folder", "eval {w}/run --confusion {w}/recipes", ERROR, "is a directory", {}),
    ("eval-truncated-config", "eval {w}/truncated-config", ERROR, "config.json is not readable JSON", {}),
    ("eval-metrics-only", "eval {w}/metrics-only", ERROR, "is not a run folder", {}),
    ("eval-no-checkpoint", "eval {w}/no-checkpoint", ERROR, "has no completed epoch", {}),
    ("eval-damaged-data-json", "eval {w}/bad-data-json", ERROR, "data.json is damaged", {}),
    ("eval-all-checkpoints-damaged", "eval {w}/all-damaged", ERROR, "no undamaged checkpoint is left", {}),
    ("eval-bad-split", "eval {w}/run --split nope", ERROR, "Invalid value for '--split'", {}),
    ("eval-newest-damaged", "eval {w}/newest-damaged", WARNING, "epoch-0003 (best.safetensors does not match its manifest", {}),
    # predict
    ("predict-top-0", "predict {w}/run {w}/img/digit.png --top 0", ERROR, "0 is not in the range x>=1", {}),
    ("predict-top-negative", "predict {w}/run {w}/img/digit.png --top -1", ERROR, "-1 is not in the range x>=1", {}),
    ("predict-bomb", "predict {w}/run {w}/img/bomb.png", ERROR, "10000x10000 = 100,000,000 pixels; the limit is 40,000,000", {}),
    ("predict-huge-bomb", "predict {w}/run {w}/img/bomb400.png", ERROR, "decompression bomb", {}),
    ("predict-pixel-limit", "predict {w}/run {w}/img/digit.png", ERROR, "28x28 = 784 pixels; the limit is 100", {"CNNLAB_MAX_PIXELS": "100"}),
    ("predict-pixel-limit-not-a-number", "predict {w}/run {w}/img/digit.png", ERROR, "CNNLAB_MAX_PIXELS must be a positive", {"CNNLAB_MAX_PIXELS": "lots"}),
    ("predict-truncated", "predict {w}/run {w}/img/truncated.png", ERROR, "cannot decode image", {}),
    ("predict-not-an-image", "predict {w}/run {w}/img/text.png", ERROR, "not an image file that Pillow can read", {}),
    ("predict-empty-file", "predict {w}/run {w}/img/empty.png", ERROR, "cannot decode image", {}),
    ("predict-missing-file", "predict {w}/run {w}/img/missing.png", ERROR, "no image at", {}),
    ("predict-a-folder", "predict {w}/run {w}/img", ERROR, "cannot decode image", {}),
    ("predict-not-a-run", "predict {w}/metrics-only {w}/img/digit.png", ERROR, "is not a run folder", {}),
    ("predict-rgb-photo", "predict {w}/run {w}/img/photo.jpg", WARNING, "converted from 3 channels to 1 and resized from 64x48 to 28x28", {}),
    ("predict-one-pixel", "predict {w}/run {w}/img/dot.png", WARNING, "resized from 1x1 to 28x28: the model was trained on 1x28x28 images", {}),
    # other commands
    ("summary-unknown-model", "summary lenet5x", ERROR, "unknown model 'lenet5x'", {}),
    ("models-bad-flag", "models --nope", ERROR, "No such option '--nope'", {}),
]


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels in a few dozen bytes (no pixel data)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _folder_dataset(root: Path, classes: dict[str, int], size: tuple[int, int], mode: str) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name, count in classes.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
                Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(root / split / name / f"{i}.png")


class Sentinel:
    """Unpickling this creates a file: the proof that code in a checkpoint ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.path)}",))


def _malicious_state(path: Path, sentinel: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump({"epoch": 3, "history": [], "payload": Sentinel(str(sentinel))}, f)


def _rehash(folder: Path, name: str) -> None:
    import hashlib
    import json

    manifest = json.loads((folder / "manifest.json").read_text())
    data = (folder / name).read_bytes()
    manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.unlink()  # the file is hard-linked from the top of the folder: break the link first
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny):
    base = tmp_path_factory.mktemp("bad-inputs")
    w = base / "w"
    w.mkdir()
    env = {"CNNLAB_CACHE": str(base / "cache")}
    result = run_cnnlab(tiny_args(w / "run"), env=env)
    assert result.code == 0, result.err
    run = w / "run"
    assert (run / "curves.png").is_file()

    img = w / "img"
    img.mkdir()
    from cnnlab.data import load_dataset

    digit = load_dataset(TINY, "test").images[0, 0].numpy()
    Image.fromarray(digit, "L").save(img / "digit.png")
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8), "RGB").save(img / "photo.jpg")
    Image.new("L", (1, 1), 255).save(img / "dot.png")
    (img / "bomb.png").write_bytes(_png_header(10_000, 10_000))
    (img / "bomb400.png").write_bytes(_png_header(20_000, 20_000))
    (img / "truncated.png").write_bytes((img / "digit.png").read_bytes()[:60])
    (img / "text.png").write_text("hello, this is not a picture\n")
    (img / "empty.png").write_bytes(b"")

    recipes = w / "recipes"
    recipes.mkdir()
    (recipes / "trian.toml").write_text("[trian]\nepochs = 3\n")
    (recipes / "outside.toml").write_text("epochs = 3\n[train]\nlr = 0.01\n")
    (recipes / "ten.toml").write_text('[train]\nepochs = "ten"\n')
    (recipes / "broken.toml").write_text("[train\nepochs = 3\n")
    (recipes / "options.toml").write_text("[train]\nmodel_options = 3\n")

    _folder_dataset(w / "folder8", {"a": 4, "b": 4}, (8, 8), "L")
    _folder_dataset(w / "folder32", {"a": 4, "b": 4}, (32, 32), "RGB")
    _folder_dataset(w / "emptyclass", {"a": 4, "b": 0}, (28, 28), "L")
    _folder_dataset(w / "oneclass", {"a": 4}, (28, 28), "L")

    (w / "metrics-only").mkdir()
    shutil.copy(run / "metrics.csv", w / "metrics-only" / "metrics.csv")
    (w / "no-checkpoint").mkdir()
    for name in ("config.json", "data.json"):
        shutil.copy(run / name, w / "no-checkpoint" / name)
    for name in ("truncated-config", "edited-config", "bad-data-json", "malicious", "malicious-committed", "torn",
                 "newest-damaged", "all-damaged"):
        shutil.copytree(run, w / name)
    text = (run / "config.json").read_text()
    (w / "truncated-config" / "config.json").write_text(text[: len(text) // 2])
    (w / "edited-config" / "config.json").write_text(text.replace('"epochs": 3', '"epochs": -3'))
    (w / "bad-data-json" / "data.json").write_text("{}\n")
    # Old layout (files at the top, no checkpoints/): a state.pt that runs code when unpickled.
    shutil.rmtree(w / "malicious" / "checkpoints")
    _malicious_state(w / "malicious" / "state.pt", base / "pwned-1")
    # The same inside a committed checkpoint whose manifest was rewritten to match.
    newest = w / "malicious-committed" / "checkpoints" / "epoch-0003"
    (newest / "state.pt").unlink()
    _malicious_state(newest / "state.pt", base / "pwned-2")
    _rehash(newest, "state.pt")
    # Old layout, torn: epoch 3's weights with epoch 2's state.
    torn = w / "torn"
    (torn / "state.pt").unlink()
    shutil.copy(torn / "checkpoints" / "epoch-0002" / "state.pt", torn / "state.pt")
    shutil.rmtree(torn / "checkpoints")
    _flip_byte(w / "newest-damaged" / "checkpoints" / "epoch-0003" / "best.safetensors")
    for folder in ("epoch-0002", "epoch-0003"):
        _flip_byte(w / "all-damaged" / "checkpoints" / folder / "best.safetensors")
    return base, w, env


@pytest.mark.slow
def test_at_least_forty_bad_inputs():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line_and_changes_nothing(workspace, case):
    base, w, env = workspace
    name, args, kind, text, extra_env = case
    before = file_hashes(w)
    result = run_cnnlab(shlex.split(args.format(w=w, new=w / f"new-{name}")), env={**env, **extra_env}, timeout=180)
    lines = result.err_lines
    assert "Traceback" not in result.err, result.err
    assert len(lines) == 1, f"{name}: {len(lines)} lines on stderr:\n{result.err}"
    assert lines[0].startswith(f"{kind}: "), lines[0]
    assert text in lines[0], lines[0]
    if kind == ERROR:
        assert result.code != 0
    else:
        assert result.code == 0, result.err
    if "weights_only" in result.err:
        raise AssertionError(f"the message suggests weights_only: {lines[0]}")
    assert file_hashes(w) == before, f"{name} changed or created files"
    assert not (base / "pwned-1").exists() and not (base / "pwned-2").exists()  # no code from a checkpoint ran


@pytest.mark.slow
@pytest.mark.parametrize("name", ["unknown-model", "lr-nan", "recipe-misspelt-table", "predict-bomb", "predict-top-0",
                                  "eval-batch-size-0", "predict-rgb-photo"])
def test_the_installed_executable_answers_the_same(workspace, name):
    """The console script in a fresh interpreter gives the forked entry point's line and status."""
    _, w, env = workspace
    args, extra_env = next((c[1], c[4]) for c in CASES if c[0] == name)
    argv = shlex.split(args.format(w=w, new=w / f"new-{name}"))
    exe = Path(sys.executable).parent / "cnnlab"
    fresh = subprocess.run([str(exe), *argv], capture_output=True, text=True, timeout=300,
                           env={**os.environ, **env, **extra_env})
    forked = run_cnnlab(argv, env={**env, **extra_env})
    assert (fresh.returncode, fresh.stderr.strip()) == (forked.code, forked.err.strip())
