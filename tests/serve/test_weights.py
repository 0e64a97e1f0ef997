"""`cnnlab serve --model M --weights W`: a registered model with weights and no run folder,
served by a real server on 127.0.0.1 next to run folders, fed as `predict` feeds it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from cnnlab.data.synsets import imagenet_indices, imagenet_names
from cnnlab.models import create_model
from cnnlab.models.weight_files import IMAGENET_MEAN, find_weights
from cnnlab.serve import create_app
from cnnlab.serve.inference import ServedWeights, weights_id
from cnnlab.training.predict import open_predictor, predict_with, preprocess_image
from tests import oracle
from tests.cli.conftest import run_cli
from tests.serve.client import get, png_bytes, post_image, predict_sample
from tests.serve.conftest import CliServer, LiveServer
from tests.training.test_evaluation_weights import WNIDS, image_folder


@pytest.fixture(scope="module")
def mine(tmp_path_factory) -> tuple[Path, Path]:
    """ResNet-20 weights of 10 outputs (not a published file) and a 10-class image folder."""
    base = tmp_path_factory.mktemp("serve-weights")
    torch.manual_seed(0)
    torch.save(create_model("resnet20").state_dict(), base / "mine.pth")
    return base / "mine.pth", image_folder(base / "ten", [f"c{i}" for i in range(10)], per_class=1)


@pytest.fixture
def server():
    started: list[LiveServer] = []

    def start(*args, **kw) -> LiveServer:
        started.append(LiveServer(create_app(*args, **kw)))
        return started[-1]

    yield start
    for s in started:
        s.close()


def test_served_names() -> None:
    assert weights_id("resnet18", "/x/resnet18-f37072fd.pth") == "resnet18-f37072fd"
    assert weights_id("resnet18", "torchvision") == "resnet18-torchvision"
    assert weights_id("resnet50", "https://h/m/resnet50-11ad3fa6.pth") == "resnet50-11ad3fa6"
    assert weights_id("resnet20", "runs/my run") == "resnet20-my_run"


def test_a_model_with_weights_beside_a_run_folder(mine, lenet_run, server, tmp_path: Path) -> None:
    weights, folder = mine
    served = ServedWeights("resnet20-mine", "resnet20", str(weights), data=f"folder:{folder}")
    live = server([lenet_run], models=[served])
    runs = {r["id"]: r for r in get(live.port, "/api/runs").json()["runs"]}
    assert runs["resnet20-mine"]["folder"] == "resnet20 with mine.pth" and runs["resnet20-mine"]["weights"] == "mine.pth"
    assert runs["lenet5-mnist"]["model"] == "lenet5" and "weights" not in runs["lenet5-mnist"]  # the run as before
    info = get(live.port, "/api/runs/resnet20-mine").json()
    assert info["input_size"] == [3, 32, 32] and info["mean"] == list(IMAGENET_MEAN) and info["samples"] is True
    assert info["classes"] == [f"class {i}" for i in range(10)] and "ImageNet convention" in info["preprocessing"]
    # An upload gets the probabilities `cnnlab predict resnet20 --weights mine.pth` prints.
    photo = tmp_path / "photo.png"
    Image.open(folder / "val" / "c3" / "0.png").resize((90, 70)).save(photo)
    reply = post_image(live.port, "resnet20-mine", photo.read_bytes())
    assert reply.status == 200, reply
    (want,) = predict_with(open_predictor("resnet20", weights=str(weights)), [photo], k=10)
    got = reply.json()
    assert [t["class"] for t in got["top"]] == [name for name, _ in want.top[:5]]
    assert got["top"][0]["p"] == pytest.approx(want.top[0][1], abs=1e-5) and got["input"]["shape"] == [3, 32, 32]
    # Test images from --data, cut the same way; their labels are the outputs of the same index.
    sample = predict_sample(live.port, "resnet20-mine", 3).json()
    assert sample["source"]["label"] == "c3" and sample["source"]["label_index"] == 3
    assert get(live.port, sample["gradcam_url"]).status == 200
    assert predict_sample(live.port, "lenet5-mnist", 0).status == 200


def test_without_data_there_are_no_test_images(mine, server) -> None:
    weights, _ = mine
    live = server([], models=[ServedWeights("m", "resnet20", str(weights))])
    assert get(live.port, "/api/runs/m").json()["samples"] is False
    reply = predict_sample(live.port, "m", "random")
    assert reply.status == 400 and reply.error == "m has no test images: it is served with --weights and no --data; upload or draw an image"


@pytest.mark.slow  # torchvision's ResNet-18 built and run at 224 px
def test_imagenet_weights_are_named_and_their_samples_mapped_by_wnid(tmp_path: Path, server) -> None:
    theirs = oracle.randomise(oracle.build("resnet18"), size=(3, 224, 224))
    weights = tmp_path / "resnet18-f37072fd.pth"  # the published name: its row's preprocessing
    torch.save(theirs.state_dict(), weights)
    folder = image_folder(tmp_path / "wn", WNIDS, size=(300, 260))
    served = ServedWeights(weights_id("resnet18", str(weights)), "resnet18", str(weights), data=f"folder:{folder}")
    live = server([], models=[served])
    info = get(live.port, "/api/runs/resnet18-f37072fd").json()
    assert info["classes"] == list(imagenet_names()) and info["input_size"] == [3, 224, 224]
    assert "shorter side 256 bilinear, centre crop 224" in info["preprocessing"]
    image = folder / "val" / WNIDS[2] / "1.png"
    got = post_image(live.port, served.id, png_bytes(Image.open(image))).json()
    with torch.no_grad():
        want = theirs(preprocess_image(image, 3, find_weights("resnet18").preprocess)[None]).softmax(1)[0]
    assert got["top"][0] == {"index": int(want.argmax()), "class": imagenet_names()[int(want.argmax())],
                             "p": pytest.approx(float(want.max()), abs=1e-5)}
    sample = predict_sample(live.port, served.id, 5).json()["source"]  # the last file: parachute
    assert sample["label"] == WNIDS[2] and sample["label_index"] == imagenet_indices(WNIDS)[2] == 701


@pytest.mark.slow  # a `cnnlab serve` process: about 6 s
def test_cli_serves_the_model_and_refuses_in_one_line(mine, capsys) -> None:
    weights, folder = mine
    server = CliServer(["--model", "resnet20", "--weights", str(weights), "--data", f"folder:{folder}"],
                       env={"OMP_NUM_THREADS": "1"})
    try:
        assert any("resnet20-mine  (resnet20 with mine.pth; the ImageNet convention" in line for line in server.lines)
        runs = get(server.port, "/api/runs").json()["runs"]
        assert [r["id"] for r in runs] == ["resnet20-mine"]  # --model alone: the runs folder is not read
    finally:
        server.close()
    cases = [
        (["serve", "--weights", str(weights)], "error: --model and --weights go together"),
        (["serve", "--data", "imagenette"], "error: --data gives --model's test images"),
        (["serve", "--model", "resnet56", "--weights", str(weights)],
         f"error: cannot load resnet56 with mine.pth: {weights} does not fit model resnet56: "),
        (["serve", "--model", "resnet20", "--weights", str(weights), "--data", "mnist"],
         "mnist cannot be streamed"),
    ]
    for args, message in cases:
        code, _, err = run_cli(args, capsys)
        assert code != 0 and message in err, (args, err)
        assert len(err.strip().splitlines()) == 1
