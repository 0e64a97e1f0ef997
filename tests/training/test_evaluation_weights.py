"""Evaluating a registered model with weights (no run folder): the weights' preprocessing,
ImageNet's outputs mapped to a dataset's wnids, and one line for what cannot be scored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.synsets import imagenet_indices
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.models.weight_files import find_weights
from cnnlab.training.evaluate import ClassSubset, dataset_outputs, evaluate_weights
from cnnlab.training.predict import open_predictor, predict_with, preprocess_image
from tests import oracle

WNIDS = ("n01440764", "n01443537", "n03888257")  # tench, goldfish, parachute: outputs 0, 1, 701


def image_folder(root: Path, classes, *, per_class: int = 2, size: tuple[int, int] = (40, 50), seed: int = 0) -> Path:
    """root/{train,val}/<class>/*.png of seeded noise, not square (the resize then matters)."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


def files_in_label_order(root: Path) -> list[Path]:
    return [p for c in sorted(d.name for d in (root / "val").iterdir()) for p in sorted((root / "val" / c).glob("*.png"))]


@pytest.fixture(scope="module")
def ten(tmp_path_factory) -> tuple[Path, Path]:
    """A 10-class image folder and a ResNet-20 state dict for it (10 outputs)."""
    base = tmp_path_factory.mktemp("weights-eval")
    torch.manual_seed(0)
    torch.save(create_model("resnet20").state_dict(), base / "mine.pth")
    return image_folder(base / "ten", [f"c{i}" for i in range(10)]), base / "mine.pth"


def test_eval_gives_each_file_the_probabilities_predict_gives(ten) -> None:
    root, weights = ten
    got = evaluate_weights("resnet20", str(weights), data=f"folder:{root}", device="cpu", workers=0)
    assert got.scoring == f"the weights' 10 outputs taken as folder:{root}'s classes in label order"
    assert "ImageNet convention" in got.preprocessing and got.member.name == f"resnet20 with {weights}"
    predictor = open_predictor("resnet20", weights=str(weights))
    paths = files_in_label_order(root)
    assert got.member.result.num_images == len(paths) == 20
    for path, probs, label in zip(paths, got.member.probs, got.member.labels):
        (p,) = predict_with(predictor, [path], k=10)
        want = torch.tensor([prob for _, prob in sorted(p.top, key=lambda t: int(t[0].split()[1]))])
        assert torch.allclose(probs, want, atol=1e-6)
        assert int(label) == int(path.parent.name[1:])
    top1 = got.member.probs.argmax(1)
    assert got.member.result.top1_err == pytest.approx(float((top1 != got.member.labels).double().mean()))


def test_ten_crop_views_come_from_the_resized_square(ten) -> None:
    root, weights = ten
    none = evaluate_weights("resnet20", str(weights), data=f"folder:{root}", device="cpu", workers=0)
    crops = evaluate_weights("resnet20", str(weights), data=f"folder:{root}", device="cpu", workers=0, tta="10crop")
    assert crops.member.result.num_images == 20 and not torch.allclose(crops.member.probs, none.member.probs)


def test_a_thousand_outputs_are_named_by_imagenet() -> None:
    from cnnlab.training.predict import output_names

    assert output_names(1000)[:2] == ("tench", "goldfish") and output_names(1000)[701] == "parachute"
    assert output_names(10) == tuple(f"class {i}" for i in range(10))


def test_imagenet_outputs_are_mapped_by_wnid(tmp_path: Path) -> None:
    folder = tmp_path / "wn"
    for w in WNIDS:
        (folder / "train" / w).mkdir(parents=True)
    indices, scoring = dataset_outputs(1000, f"folder:{folder}", None, WNIDS)
    assert indices == [0, 1, 701] and scoring == f"scored over the 3 ImageNet classes of folder:{folder}"
    logits = torch.randn(2, 1000)
    assert torch.equal(ClassSubset(torch.nn.Identity(), indices)(logits), logits[:, [0, 1, 701]])


def test_all_thousand_classes_are_scored_whole(tmp_path: Path) -> None:
    from cnnlab.data.synsets import imagenet_classes

    for c in imagenet_classes():
        (tmp_path / "train" / c.wnid).mkdir(parents=True)
    indices, scoring = dataset_outputs(1000, f"folder:{tmp_path}", None, [c.wnid for c in imagenet_classes()])
    assert indices is None and scoring == "scored over ImageNet's 1,000 classes"


def test_what_cannot_be_scored_is_one_line(ten, tmp_path: Path) -> None:
    root, weights = ten
    with pytest.raises(CnnlabError, match=rf"^folder:{root} has class 'c0' and 9 more, not an ImageNet-1k wnid"):
        dataset_outputs(1000, f"folder:{root}", None, [f"c{i}" for i in range(10)])
    with pytest.raises(CnnlabError, match=r"^the weights have 10 outputs but folder:\S+ has 3 classes; expected 3"):
        dataset_outputs(10, f"folder:{tmp_path}", None, WNIDS)
    with pytest.raises(CnnlabError, match=r"^eval with --weights reads image files, and mnist has none"):
        evaluate_weights("resnet20", str(weights), data="mnist", device="cpu")


@pytest.mark.slow  # torchvision's ResNet-18 at 224 px, built twice, on 6 images: about 8 s
def test_torchvision_weights_on_wnid_folders_score_the_dataset_classes(tmp_path: Path) -> None:
    # torchvision's own ResNet-18 stands in for its published file; the file name is the
    # published one, so eval takes its row's preprocessing (shorter side 256, crop 224).
    theirs = oracle.randomise(oracle.build("resnet18"), size=(3, 224, 224))
    weights = tmp_path / "resnet18-f37072fd.pth"
    torch.save(theirs.state_dict(), weights)
    root = image_folder(tmp_path / "wn", WNIDS, size=(300, 260))
    got = evaluate_weights("resnet18", str(weights), data=f"folder:{root}", device="cpu", workers=0)
    assert got.scoring == f"scored over the 3 ImageNet classes of folder:{root}"
    pre = find_weights("resnet18").preprocess
    assert "resnet18-f37072fd.pth's own" in got.preprocessing
    outputs = imagenet_indices(WNIDS)
    with torch.no_grad():
        x = torch.stack([preprocess_image(p, 3, pre) for p in files_in_label_order(root)])
        want = theirs(x)[:, outputs].softmax(1)  # torchvision's model, our crop, the three outputs
    assert torch.allclose(got.member.probs, want, atol=1e-5)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    assert torch.equal(got.member.labels, labels)
    assert got.member.result.top1_err == pytest.approx(float((want.argmax(1) != labels).double().mean()))
