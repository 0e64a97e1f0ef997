"""`predict` without a run folder: a registered model with weights (fed with the weights' own
preprocessing), and an ONNX file through onnxruntime (fed as its metadata says)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from cnnlab.data.synsets import imagenet_names
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.models.weight_files import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocess,
    find_weights,
)
from cnnlab.training.predict import (
    Predictor,
    open_predictor,
    predict_with,
    preprocess_image,
)
from tests.cli.conftest import (
    run_cli,
    run_dir,  # noqa: F401  (the shared trained LeNet-5 run, a fixture)
)


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    g = torch.Generator().manual_seed(0)
    path = tmp_path / "photo.png"
    Image.fromarray(torch.randint(0, 256, (200, 300, 3), generator=g, dtype=torch.uint8).numpy()).save(path)
    return path


def test_preprocess_resizes_the_shorter_side_crops_and_normalises(tmp_path: Path) -> None:
    path = tmp_path / "flat.png"
    Image.new("RGB", (300, 200), (255, 128, 0)).save(path)
    x = preprocess_image(path, 3, Preprocess(256, 224, "bicubic"))
    assert x.shape == (3, 224, 224)
    want = [(v / 255 - m) / s for v, m, s in zip((255, 128, 0), IMAGENET_MEAN, IMAGENET_STD)]
    assert torch.allclose(x.mean((1, 2)), torch.tensor(want), atol=1e-5) and float(x.std((1, 2)).max()) < 1e-5


@pytest.mark.slow  # ResNet-18 at 224 px, built twice: about 7 s
def test_a_published_file_brings_its_preprocessing(tmp_path: Path, photo: Path) -> None:
    torch.manual_seed(0)
    model = create_model("resnet18").eval()
    path = tmp_path / "resnet18-f37072fd.pth"  # torchvision's file name: its table row
    torch.save(model.state_dict(), path)
    predictor = open_predictor("resnet18", weights=str(path))
    assert isinstance(predictor, Predictor) and predictor.preprocess == find_weights("resnet18").preprocess
    assert len(predictor.classes) == 1000 and "resnet18-f37072fd.pth" in predictor.note
    (p,) = predict_with(predictor, [photo], k=3)
    with torch.no_grad():
        want = model(preprocess_image(photo, 3, Preprocess(256, 224))[None]).softmax(1)[0]
    assert [name for name, _ in p.top] == [imagenet_names()[i] for i in want.topk(3).indices.tolist()]  # 1,000 outputs: ImageNet's names
    assert p.top[0][1] == pytest.approx(float(want.max()), abs=1e-6)


def test_other_weights_get_the_imagenet_convention(tmp_path: Path) -> None:
    torch.save(create_model("resnet20").state_dict(), tmp_path / "mine.pth")
    predictor = open_predictor("resnet20", weights=str(tmp_path / "mine.pth"))
    assert predictor.preprocess == Preprocess(37, 32) and len(predictor.classes) == 10  # 32 / 0.875 = 36.6


@pytest.mark.slow  # the ONNX export: about 10 s
def test_onnx_file_predicts_what_the_model_does(tmp_path: Path, photo: Path, capsys) -> None:
    from cnnlab.training.export import export_onnx

    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    classes = [f"c{i}" for i in range(10)]
    onnx = export_onnx(model, tmp_path / "r20.onnx", input_size=(3, 32, 32),
                       metadata={"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3], "classes": classes})
    predictor = open_predictor(onnx)
    assert predictor.preprocess == Preprocess(32, 32, "bilinear", (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    (got,) = predict_with(predictor, [photo], k=10)
    (want,) = predict_with(Predictor("torch", model, 3, predictor.preprocess, tuple(classes)), [photo], k=10)
    assert [n for n, _ in got.top[:3]] == [n for n, _ in want.top[:3]]
    assert max(abs(a - b) for (_, a), (_, b) in zip(sorted(got.top), sorted(want.top))) < 1e-5
    code, out, err = run_cli(["predict", str(onnx), str(photo), "-k", "2"], capsys)
    assert code == 0, err
    assert got.top[0][0] in out and "preprocessing from its metadata" in err


def test_predict_errors_name_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(CnnlabError, match=r"model resnet18 has no trained weights; give --weights"):
        open_predictor("resnet18")
    with pytest.raises(CnnlabError, match=r"--checkpoint last picks a run folder's file; resnet18 is not a run folder"):
        open_predictor("resnet18", weights="x.pth", checkpoint="last")
    with pytest.raises(CnnlabError, match=r"holds its own weights; give no --weights with an ONNX file"):
        open_predictor(tmp_path / "m.onnx", weights="x.pth")
    with pytest.raises(CnnlabError, match=r"unknown model 'resnet5'"):
        open_predictor("resnet5", weights="x.pth")


def test_cli_predict_with_a_model_and_weights(tmp_path: Path, photo: Path, capsys) -> None:
    torch.save(create_model("resnet20").state_dict(), tmp_path / "mine.pth")
    code, out, err = run_cli(["predict", "resnet20", str(photo), "--weights", str(tmp_path / "mine.pth"), "-k", "1"], capsys)
    assert code == 0, err
    assert "class " in out and "the ImageNet convention" in err
    code, out, err = run_cli(["predict", "resnet20", str(photo)], capsys)
    assert code != 0 and "error: model resnet20 has no trained weights" in err


def test_run_checkpoint_and_its_old_spelling(run_dir: Path, data_root: Path, tmp_path: Path, capsys) -> None:  # noqa: F811
    # A run's own file: --checkpoint best|last; --weights best|last, the old spelling, still works.
    from cnnlab.data import load_dataset

    image = load_dataset("mnist", "test", root=data_root).images[0, 0].numpy()
    path = tmp_path / "digit.png"
    Image.fromarray(image).save(path)
    outputs = {}
    for flags in (["--checkpoint", "last"], ["--weights", "last"], []):
        code, out, err = run_cli(["predict", str(run_dir), str(path), *flags], capsys)
        assert code == 0, err
        outputs[" ".join(flags)] = out
    assert outputs["--checkpoint last"] == outputs["--weights last"]
    code, out, err = run_cli(["eval", str(run_dir), "--checkpoint", "last", "--device", "cpu"], capsys)
    assert code == 0, err

