"""Weights in: file formats, run folders, downloads with hash checks, bad input, the weight table."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import pathlib
import pickle
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.models import create_model
from cnnlab.models import weight_files as WF
from cnnlab.models import weights as W
from tests import oracle


def _lenet_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return create_model("lenet5").state_dict()


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- formats ---------------------------------------------------------------------------------


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pth_round_trip_in_both_torch_save_formats(tmp_path: Path, zip_format: bool) -> None:
    # torchvision's 2017 files (alexnet-owt, vgg) use the pre-1.6 format, newer ones zip.
    state = _lenet_state()
    path = tmp_path / "lenet.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    model = W.load_weights(create_model("lenet5"), path)
    assert _same(model.state_dict(), state)


def test_safetensors_file_with_and_without_suffix(tmp_path: Path) -> None:
    state = _lenet_state()
    save_file(state, tmp_path / "w.safetensors")
    assert _same(W.read_weights(tmp_path / "w.safetensors"), state)
    (tmp_path / "w.safetensors").rename(tmp_path / "w.bin")  # recognised by its header
    assert _same(W.read_weights(tmp_path / "w.bin"), state)


def test_run_folder_gives_best_then_last(tmp_path: Path) -> None:
    best, last = _lenet_state(1), _lenet_state(2)
    (tmp_path / "config.json").write_text(json.dumps({"model": "lenet5"}))
    (tmp_path / "data.json").write_text("{}")
    save_file(last, tmp_path / "last.safetensors")
    assert _same(W.read_weights(tmp_path), last)
    save_file(best, tmp_path / "best.safetensors")
    assert _same(W.read_weights(tmp_path), best)


def test_folder_that_is_no_run_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="is a folder but not a run folder"):
        W.read_weights(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="has no best.safetensors or last.safetensors"):
        W.read_weights(tmp_path)


def test_wrapped_and_ddp_state_dicts_are_unwrapped(tmp_path: Path) -> None:
    state = _lenet_state()
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ckpt.pth")
    assert _same(W.read_weights(tmp_path / "ckpt.pth"), state)


def test_densenet_legacy_file_loads(tmp_path: Path) -> None:
    # torchvision's densenet*.pth files (2017) say "denselayer1.norm.1.weight" for our
    # "norm1.weight" and predate BN's num_batches_tracked counter.
    torch.manual_seed(0)
    state = create_model("densenet121").state_dict()
    legacy = {
        k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v
        for k, v in state.items() if not k.endswith("num_batches_tracked")
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    torch.save(legacy, tmp_path / "densenet121-00000000.pth", _use_new_zipfile_serialization=False)
    model = W.load_weights(create_model("densenet121"), tmp_path / "densenet121-00000000.pth")
    assert _same(model.state_dict(), state)


# --- bad input: one CheckpointError line each, nothing run, nothing changed -------------------


def _one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text and isinstance(error.value, CnnlabError)
    return text


def test_state_dict_of_another_model_names_keys_shapes_and_closest(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.save(create_model("resnet18").state_dict(), tmp_path / "r18.pth")
    target = create_model("resnet34")
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError) as error:
        W.load_weights(target, tmp_path / "r18.pth")
    text = _one_line(error)
    assert text.startswith(f"{tmp_path / 'r18.pth'} does not fit model resnet34: missing layer1.2.conv1.weight (64, 64, 3, 3);")
    assert "more; closest registered models by keys and shapes: resnet18 (100%)" in text
    assert _same(target.state_dict(), before)


def test_other_head_size_names_the_classifier_shapes() -> None:
    state = _lenet_state()
    with pytest.raises(CheckpointError) as error:
        W.load_weights(create_model("lenet5", num_classes=3), state)
    assert re.search(r"does not fit model lenet5: (\S+\.)?output\.weight \(10, 84\) vs \(3, 84\) in the model", _one_line(error))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello, I am text", r"not a PyTorch weights file: neither a zip archive nor a legacy torch.save pickle"),
        (b"", r"not a PyTorch weights file"),
        ("zip-half", r"is a truncated or corrupt zip archive"),
        ("legacy-half", r"is truncated or corrupt: unexpected EOF"),
    ],
)
def test_truncated_or_foreign_files(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "bad.pth"
    if isinstance(content, str):
        torch.save(_lenet_state(), path, _use_new_zipfile_serialization=content == "zip-half")
        data = path.read_bytes()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as error:
        W.read_weights(path)
    _one_line(error)


def test_truncated_safetensors(tmp_path: Path) -> None:
    save_file(_lenet_state(), tmp_path / "w.safetensors")
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "w.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="is not a readable safetensors file") as error:
        W.read_weights(tmp_path / "w.safetensors")
    _one_line(error)


class _MakesAFile:
    """Unpickling this would create ``path``: the test for "nothing in the file was run"."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickle_that_would_run_code_is_refused_unrun(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    payload = {"conv.weight": torch.zeros(1), "x": _MakesAFile(marker)}
    path = tmp_path / "evil.pth"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    assert not marker.exists()
    with pytest.raises(CheckpointError, match=r"refused to load .*evil\.pth: it calls \S+ when unpickled") as error:
        W.read_weights(path)
    assert "nothing in the file was run" in _one_line(error)
    assert not marker.exists()


def test_whole_pickled_module_is_refused(tmp_path: Path) -> None:
    torch.save(create_model("lenet5"), tmp_path / "model.pth")
    with pytest.raises(CheckpointError, match=r"refused to load .*: it calls cnnlab\.\S+ when unpickled"):
        W.read_weights(tmp_path / "model.pth")


def test_training_state_is_not_weights(tmp_path: Path) -> None:
    torch.save({"epoch": 3, "best_val": 0.5}, tmp_path / "state.pt")
    with pytest.raises(CheckpointError, match=r"is not a state dict: entry 'epoch' is a int, not a tensor"):
        W.read_weights(tmp_path / "state.pt")


def test_missing_file() -> None:
    with pytest.raises(CheckpointError, match="no weights at /no/such/file.pth"):
        W.read_weights("/no/such/file.pth")


def test_given_hash_is_checked_for_local_files(tmp_path: Path) -> None:
    torch.save(_lenet_state(), tmp_path / "w.pth")
    digest = hashlib.sha256((tmp_path / "w.pth").read_bytes()).hexdigest()
    assert W.read_weights(tmp_path / "w.pth", sha256=digest[:10].upper()).keys() == _lenet_state().keys()
    with pytest.raises(CheckpointError, match=rf"failed its hash check: sha256 {digest[:16]}\.\.\. does not start with 00000000"):
        W.read_weights(tmp_path / "w.pth", sha256="00000000")
    with pytest.raises(CheckpointError, match="is not a hexadecimal digest or prefix"):
        W.read_weights(tmp_path / "w.pth", sha256="xyz")


# --- downloads from a local HTTP server ------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args) -> None:
        _Quiet.requests.append(self.path)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, served folder) of an HTTP server on 127.0.0.1, for this test only."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Quiet.requests = []
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", served
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def _no_torch_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Keep downloads off the user's torch.hub folder.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


def _publish(folder: Path, stem: str, state: dict[str, torch.Tensor], *, wrong_hash: bool = False) -> str:
    """Save ``state`` as "<stem>-<sha256 prefix>.pth" the way torchvision names its files."""
    tmp = folder / "tmp.pth"
    torch.save(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    name = f"{stem}-{'deadbeef' if wrong_hash else digest}.pth"
    tmp.rename(folder / name)
    return name


def test_download_verifies_name_hash_and_caches(server, tmp_path: Path, capsys) -> None:
    base, served = server
    state = _lenet_state()
    name = _publish(served, "lenet5", state)
    cache = tmp_path / "cache"
    model = W.load_weights(create_model("lenet5"), base + name, cache=cache, progress=True)
    assert _same(model.state_dict(), state)
    assert sorted(p.name for p in cache.iterdir()) == [name]  # no .part left behind
    assert _Quiet.requests == [f"/{name}"]
    (served / name).unlink()  # the second load reads the cache, not the server
    assert _same(W.read_weights(base + name, cache=cache), state)
    assert _Quiet.requests == [f"/{name}"]


def test_download_with_wrong_hash_is_discarded(server, tmp_path: Path) -> None:
    base, served = server
    name = _publish(served, "lenet5", _lenet_state(), wrong_hash=True)
    cache = tmp_path / "cache"
    with pytest.raises(CheckpointError, match=rf"download of {base}{name} failed its hash check: .* does not start with deadbeef") as error:
        W.read_weights(base + name, cache=cache, progress=False)
    _one_line(error)
    assert list(cache.iterdir()) == []


def test_download_with_given_hash(server, tmp_path: Path) -> None:
    base, served = server
    torch.save(_lenet_state(), served / "plain.pth")
    digest = hashlib.sha256((served / "plain.pth").read_bytes()).hexdigest()
    with pytest.raises(CheckpointError, match="failed its hash check"):
        W.read_weights(base + "plain.pth", sha256="0" * 64, cache=tmp_path / "c1", progress=False)
    assert W.read_weights(base + "plain.pth", sha256=digest, cache=tmp_path / "c2", progress=False)


def test_download_errors(server, tmp_path: Path) -> None:
    base, _ = server
    with pytest.raises(CheckpointError, match=rf"cannot download {base}missing-12345678.pth: File not found"):
        W.read_weights(base + "missing-12345678.pth", cache=tmp_path / "cache", progress=False)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(CheckpointError, match="cannot create the weights cache"):
        W.read_weights(base + "x.pth", cache=blocker / "cache", progress=False)


def test_file_url_and_torch_hub_copy(tmp_path: Path) -> None:
    state = _lenet_state()
    name = _publish(tmp_path, "lenet5", state)
    assert _same(W.read_weights((tmp_path / name).as_uri(), cache=tmp_path / "cache", progress=False), state)
    # A copy torch.hub already downloaded is used where it is (after its hash check).
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    hub.mkdir(parents=True)
    (tmp_path / "cache" / name).rename(hub / name)
    assert _same(W.read_weights(f"https://example.invalid/{name}", cache=tmp_path / "cache2"), state)
    assert not (tmp_path / "cache2").exists()


# --- the weight table ------------------------------------------------------------------------


def test_find_weights() -> None:
    assert WF.find_weights("resnet50").tag == "IMAGENET1K_V2"
    assert WF.find_weights("resnet50", "IMAGENET1K_V1").file_name == "resnet50-0676ba61.pth"
    assert WF.find_weights("resnet50", "resnet50-0676ba61.pth").sha256_prefix == "0676ba61"
    with pytest.raises(CheckpointError, match="model 'resnet50' has no weights 'V3'; expected one of torchvision, IMAGENET1K_V1, IMAGENET1K_V2"):
        WF.find_weights("resnet50", "V3")
    with pytest.raises(CheckpointError, match="no published weights fit model 'lenet5'"):
        WF.find_weights("lenet5")


def test_every_table_entry_has_one_default_and_a_hash() -> None:
    for name, files in WF.TORCHVISION.items():
        assert sum(f.default for f in files) == 1, name
        assert all(f.sha256_prefix and len(f.sha256_prefix) == 8 for f in files), name


# Our name -> torchvision's, where they differ.
THEIRS = {
    "alexnet_onetower": "alexnet",
    "regnety_16gf": "regnet_y_16gf",
    "convnext_t": "convnext_tiny",
    "convnext_s": "convnext_small",
    "convnext_b": "convnext_base",
}
NOT_LISTED = {"VGG16_Weights.IMAGENET1K_FEATURES"}  # a feature extractor: no classifier weights


def _signature(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# torchvision's RegNet cannot be built on the meta device (its width arithmetic needs real
# tensors): 84M parameters initialised on the CPU make that one slow.
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[pytest.mark.slow] if n.startswith("regnet") else []) for n in sorted(WF.TORCHVISION)]
)
def test_table_matches_torchvision_enums_and_fits(name: str) -> None:
    theirs = THEIRS.get(name, name)
    published = {m["enum"].split(".")[1]: m for m in oracle.weights_meta(theirs) if m["enum"] not in NOT_LISTED}
    files = WF.weights_for(name)
    assert sorted(f.tag for f in files) == sorted(published)  # every file torchvision has, no other
    for f in files:
        meta = published[f.tag]
        pre = f.preprocess
        assert (f.url, f.default) == (meta["url"], meta["default"])
        assert ([pre.resize], [pre.crop]) == (meta["resize"], meta["crop"])
        assert meta["interpolation"] == f"InterpolationMode.{pre.interpolation.upper()}"
        acc = meta["meta"]["_metrics"]["ImageNet-1K"]
        assert (f.top1, f.top5) == (acc["acc@1"], acc["acc@5"])
        if name != "googlenet":  # see test_googlenet_weights_expect_half_mean_and_std
            assert (list(pre.mean), list(pre.std)) == (meta["mean"], meta["std"])
        # The file's keys and shapes are our model's, built with the options the entry names.
        their_options = {"aux_logits": True} if name == "googlenet" else {}
        if "image_size" in f.options:
            their_options["image_size"] = f.options["image_size"]
        with torch.device("meta"):
            ours = create_model(name, **f.options)
        device = "cpu" if theirs.startswith("regnet") else "meta"  # its widths need real tensors
        with torch.device(device):
            model = oracle.build(theirs, **their_options)
        assert _signature(model) == _signature(ours)


def test_resolve_weights() -> None:
    url, row = W.resolve_weights("resnet50", "torchvision")
    assert url == "https://download.pytorch.org/models/resnet50-11ad3fa6.pth" and row.tag == "IMAGENET1K_V2"
    assert W.resolve_weights("resnet50", "IMAGENET1K_V1")[1].file_name == "resnet50-0676ba61.pth"
    path, row = W.resolve_weights("resnet50", "/somewhere/resnet50-0676ba61.pth")  # a copy the user has
    assert path == Path("/somewhere/resnet50-0676ba61.pth") and row.tag == "IMAGENET1K_V1"
    assert W.resolve_weights("lenet5", "runs/x") == (Path("runs/x"), None)


def test_a_published_file_name_means_the_file_in_this_folder_when_there_is_one(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert str(W.resolve_weights("resnet50", "resnet50-0676ba61.pth")[0]).startswith("https://")  # none here: download
    (tmp_path / "resnet50-0676ba61.pth").write_bytes(b"a local copy")
    path, row = W.resolve_weights("resnet50", "resnet50-0676ba61.pth")
    assert path == Path("resnet50-0676ba61.pth") and row.tag == "IMAGENET1K_V1"


def test_pretrained_applies_the_files_builder_options(tmp_path: Path) -> None:
    torch.manual_seed(0)
    state = create_model("resnet50", stride_in_3x3=True).state_dict()
    path = tmp_path / "resnet50-0676ba61.pth"  # torchvision's V1 file name: its row needs v1.5
    torch.save(state, path)
    model = W.pretrained("resnet50", path, progress=False)
    assert model.layer2[0].conv2.stride == (2, 2) and _same(model.state_dict(), state)
    with pytest.raises(CheckpointError, match=r"resnet50-0676ba61\.pth needs stride_in_3x3=True for model 'resnet50', got stride_in_3x3=False"):
        W.pretrained("resnet50", path, stride_in_3x3=False)


# --- the weight table on ModelInfo, create_model(weights=...), a new head -------------------


def test_model_info_lists_its_weight_files_default_first() -> None:
    from cnnlab.models import get_model_info

    files = get_model_info("resnet50").weights
    assert [f.tag for f in files] == ["IMAGENET1K_V2", "IMAGENET1K_V1"] and files[0].default
    assert files[0].preprocess.resize == 232 and files[0].top1 == 80.858
    assert get_model_info("lenet5").weights == ()


def test_create_model_with_weights_loads_them(tmp_path: Path) -> None:
    state = _lenet_state(3)
    torch.save(state, tmp_path / "lenet.pth")
    assert _same(create_model("lenet5", weights=tmp_path / "lenet.pth").state_dict(), state)
    with pytest.raises(CheckpointError, match="no weights at"):
        create_model("lenet5", weights=tmp_path / "nothing.pth")


def test_head_keys_are_the_classifiers() -> None:
    assert W.head_keys(create_model("resnet18", num_classes=7)) == {"fc.weight", "fc.bias"}
    with torch.device("meta"):  # shapes only (GoogLeNet's truncated-normal init is slow)
        googlenet = create_model("googlenet", variant="torchvision")
    aux = W.head_keys(googlenet)
    assert {"fc.weight", "fc.bias", "aux1.fc2.weight", "aux2.fc2.weight"} <= aux and len(aux) == 6


def test_other_num_classes_gives_a_zero_head_and_the_files_backbone(tmp_path: Path) -> None:
    torch.manual_seed(0)
    state = create_model("resnet18").state_dict()  # 1000 classes, as torchvision publishes
    torch.save(state, tmp_path / "r18.pth")
    model = create_model("resnet18", weights=tmp_path / "r18.pth", num_classes=5)
    got = model.state_dict()
    assert got["fc.weight"].shape == (5, 512) and not got["fc.weight"].any() and not got["fc.bias"].any()
    assert all(torch.equal(got[k], v) for k, v in state.items() if not k.startswith("fc."))
    # The same classes as the file: its head is kept.
    assert torch.equal(create_model("resnet18", weights=tmp_path / "r18.pth", num_classes=1000).fc.weight, state["fc.weight"])


def test_new_head_still_checks_the_backbone(tmp_path: Path) -> None:
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in create_model("resnet34").state_dict().items()}
    torch.save({k: torch.zeros(shape) for k, shape in shapes.items()}, tmp_path / "r34.pth")
    with pytest.raises(CheckpointError, match=r"r34\.pth does not fit model resnet18: unexpected layer1\.2"):
        create_model("resnet18", weights=tmp_path / "r34.pth", num_classes=5)


# --- on the command line: one line each, non-zero exit, nothing written ------------------------


def test_unknown_tag_names_the_models_tags() -> None:
    with pytest.raises(CheckpointError, match=r"model 'resnet50' has no weights 'IMAGENET1K_V9'; expected one of torchvision, IMAGENET1K_V1, IMAGENET1K_V2"):
        create_model("resnet50", weights="IMAGENET1K_V9")
    with pytest.raises(CheckpointError, match=r"no published weights fit model 'lenet5'"):
        create_model("lenet5", weights="torchvision")


def test_cli_models_weights_table(capsys) -> None:
    from tests.cli.conftest import run_cli

    code, out, err = run_cli(["models", "resnet50", "--weights", "--format", "csv"], capsys)
    assert code == 0, err
    assert "resnet50,IMAGENET1K_V2 *,resnet50-11ad3fa6.pth,80.858,95.434,\"232 -> 224 bilinear, ImageNet mean/std\"" in out
    assert "resnet50,IMAGENET1K_V1,resnet50-0676ba61.pth" in out
    code, out, err = run_cli(["models", "lenet5", "--weights"], capsys)
    assert code == 1 and err.startswith("error: no published weight files fit lenet5")


@pytest.mark.slow  # two summaries and the closest-model search: about 8 s
def test_cli_summary_checks_the_weights(tmp_path: Path, capsys) -> None:
    from tests.cli.conftest import run_cli

    torch.save(create_model("resnet20").state_dict(), tmp_path / "r20.pth")
    torch.save(create_model("resnet32").state_dict(), tmp_path / "r32.pth")
    code, out, err = run_cli(["summary", "resnet20", "--weights", str(tmp_path / "r20.pth"), "--format", "csv"], capsys)
    assert code == 0 and "all 116 tensors fit resnet20" in err
    code, out, err = run_cli(["summary", "resnet20", "--weights", str(tmp_path / "r32.pth")], capsys)
    assert code == 1 and re.match(r"error: \S+r32\.pth does not fit model resnet20: unexpected layer1\.3\.conv1\.weight .*closest registered models by keys and shapes: plain32 \(100%\), resnet32 \(100%\)", err)
    assert err.count("\n") == 1 and out == ""


@pytest.mark.parametrize(("content", "message"), [
    (b"not a checkpoint", r"junk\.pth is not a PyTorch weights file"),
    ("resnet20", r"junk\.pth does not fit model lenet5: .*closest registered models by keys and shapes: "),
])
def test_cli_train_with_bad_weights_writes_nothing(tmp_path: Path, data_root: Path, capsys, content, message) -> None:
    from tests.cli.conftest import run_cli

    path = tmp_path / "junk.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(create_model(content).state_dict(), path)
    run = tmp_path / "run"
    code, out, err = run_cli(["train", "lenet5", "--data", "mnist", "--weights", str(path), "--train-subset", "100",
                              "--epochs", "1", "--device", "cpu", "--data-root", str(data_root), "--out", str(run), "-q"], capsys)
    assert code == 1 and re.match(f"error: .*{message}", err) and err.count("\n") == 1, err
    assert not run.exists()  # the run folder is created only after the model (and its weights) are ready
