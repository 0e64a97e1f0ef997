"""`predict` and `eval` classify an image file alike: one image policy, one prediction loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import load_dataset
from cnnlab.data.folders import scan_files
from cnnlab.training.config import TrainConfig
from cnnlab.training.evaluate import evaluate_members
from cnnlab.training.loop import fit
from cnnlab.training.predict import load_run_images, predict_file_probs, predict_images
from cnnlab.training.run import load_run


@pytest.fixture(scope="module")
def run(patterns, tmp_path_factory):
    out = tmp_path_factory.mktemp("predict") / "run"
    config = TrainConfig(model="lenet5", data=patterns, epochs=2, batch_size=10, optimizer="adam", lr=0.003,
                         val_size=0, device="cpu", out=str(out))
    fit(config, quiet=True)
    return load_run(out)


def test_predict_and_eval_give_the_same_probabilities_for_the_same_files(run, patterns):
    root = patterns[len("folder:"):]
    test_dir = Path(root) / "test"
    files = [test_dir / rel for rel, *_ in scan_files(test_dir, tuple(run.data_info["classes"]))]  # the dataset's order
    assert len(files) == 12
    (member,) = evaluate_members([run.path], device="cpu")
    probs = predict_file_probs(run, files)
    assert probs.shape == member.probs.shape == (12, 3)
    assert torch.allclose(probs, member.probs, atol=1e-6)
    # The pixels too: a file read on its own is what the dataset holds for it.
    test = load_dataset(patterns, "test")
    assert torch.equal(load_run_images(run, files), test.images)
    top = predict_images(run, files[:2], k=2)
    assert [t.top[0][0] for t in top] == [run.data_info["classes"][int(i)] for i in probs[:2].argmax(1)]
    assert top[0].top[0][1] == pytest.approx(float(probs[0].max()))


def test_a_stretched_image_would_differ(run, patterns, tmp_path):
    """The drift this replaces: stretching a non-square photo to the dataset's size (what
    predict did) gives other pixels than the datasets' shorter-side resize and centre crop."""
    root = patterns[len("folder:"):]
    path = f"{root}/test/bars/00.png"  # 40x28
    with Image.open(path) as img:
        assert img.size != (28, 28)
        stretched = torch.from_numpy(np.asarray(img.convert("RGB").resize((28, 28), Image.Resampling.BILINEAR)).copy())
    assert not torch.equal(load_run_images(run, [path])[0], stretched.permute(2, 0, 1))
