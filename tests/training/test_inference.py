"""The inference path: BN folding (exact arithmetic), channels-last, bf16 only where native.

Tolerances: folding is exact arithmetic, so in float64 the folded model's logits equal the
original's to 1e-10 of their scale; in float32 only the rounding moves, within FOLD_RTOL (1e-3)
of the scale (seen: <= 2e-4 with the harsh BN statistics of oracle.randomise). bf16 keeps 8
bits of mantissa: judged by top-1 agreement on real images, not by logits.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.training import inference as I
from tests import oracle


def _randomised(name: str, size: tuple[int, int, int], **options) -> nn.Module:
    return oracle.randomise(create_model(name, **options).eval(), size=size)


def _bn_count(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


# (model, input, options, BN layers left after folding: those after something other than a
# conv, or not run in eval mode), and whether it takes long (float64 depthwise convs are slow).
CASES = [
    ("resnet20", (3, 32, 32), {}, 0, False),
    ("resnet50", (3, 64, 64), {}, 0, True),
    ("efficientnet_b0", (3, 32, 32), {}, 0, True),  # eps 1e-3: folded with each BN's own eps
    ("googlenet", (3, 64, 64), {"variant": "torchvision"}, 2, True),  # the aux heads run in training only
    ("densenet121", (3, 64, 64), {}, 62, True),  # pre-activation: BN -> ReLU -> conv, nothing to fold into
]


@pytest.mark.parametrize(
    ("name", "size", "options", "left"),
    [pytest.param(*c[:4], id=c[0], marks=[pytest.mark.slow] if c[4] else []) for c in CASES],
)
def test_fold_is_exact_arithmetic(name, size, options, left) -> None:
    model = _randomised(name, size, **options).double()
    x = torch.randn(2, *size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    folded, count = I.fold_batch_norm(model, x[:1])
    assert _bn_count(folded) == left and count == _bn_count(model) - left
    with torch.no_grad():
        want, got = model(x), folded(x)
    assert (got - want).abs().max() <= 1e-10 * want.abs().max()
    assert _bn_count(model) == count + left  # the original is left as it was


def test_fold_in_float32_within_tolerance() -> None:
    model = _randomised("resnet18", (3, 64, 64))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    folded, _ = I.fold_batch_norm(model, x[:1])
    with torch.no_grad():
        want, got = model(x), folded(x)
    assert 0 < (got - want).abs().max() <= I.FOLD_RTOL * want.abs().max()


class _SharedConv(nn.Module):
    """A conv output that feeds its BN *and* a second branch: folding would change the branch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return (self.bn(y) + y).mean((2, 3))


class _Reused(nn.Module):
    """One conv and one BN applied twice (shared weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(self.conv(self.bn(self.conv(x)))).mean((2, 3))


def test_fold_refuses_a_conv_output_used_twice() -> None:
    model = oracle.randomise(_SharedConv(), size=(3, 8, 8))
    with pytest.raises(CnnlabError, match=r"folding batch norm changed the outputs by .*used elsewhere too"):
        I.fold_batch_norm(model, torch.randn(1, 3, 8, 8))


def test_fold_leaves_shared_modules_alone() -> None:
    model = oracle.randomise(_Reused(), size=(3, 8, 8))
    folded, count = I.fold_batch_norm(model, torch.randn(1, 3, 8, 8))
    assert count == 0 and _bn_count(folded) == 1


def test_bf16_only_where_native(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert I.native_bf16(cpu) == bool({"avx512_bf16", "amx_bf16"} & I.cpu_flags())
    assert not I.native_bf16(torch.device("mps"))
    model = create_model("resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    monkeypatch.setattr(I, "native_bf16", lambda device: False)  # a CPU without bf16 arithmetic
    prepared = I.prepare_inference(model, x, channels_last=False)
    assert not prepared.bf16
    with pytest.raises(CnnlabError, match="bf16 asked for, but cpu has no native bf16 arithmetic"):
        I.prepare_inference(model, x, bf16=True)


def test_inference_path_agrees_on_real_images(data_root: Path) -> None:
    model = _randomised("resnet20", (3, 32, 32))
    images, source = I.sample_images((3, 32, 32), 64, mean=I.IMAGENET_MEAN, std=I.IMAGENET_STD, root=data_root)
    assert source == "64 CIFAR-10 test images"
    with torch.no_grad():
        reference = model(images)
    for channels_last in (False, True):
        fp32 = I.prepare_inference(model, images[:8], channels_last=channels_last, bf16=False)
        assert fp32.channels_last is channels_last and fp32.folded == 19
        result = I.agreement(reference, fp32(images))
        assert result.top1 == 1.0 and result.max_abs_diff <= I.FOLD_RTOL * result.scale
    if I.native_bf16(torch.device("cpu")):
        bf16 = I.prepare_inference(model, images[:8], channels_last=True, bf16=True)
        assert bf16.describe() == "19 BN folded, channels-last, bf16"
        assert I.agreement(reference, bf16(images)).top1 >= 0.9


def test_sample_images_and_targets(data_root: Path) -> None:
    x, source = I.sample_images((1, 32, 32), 10, mean=I.MNIST_MEAN, std=I.MNIST_STD, root=data_root)
    assert x.shape == (10, 1, 32, 32) and source == "10 MNIST test images"
    assert x[:, :, :2].eq(x[0, 0, 0, 0]).all()  # MNIST's 28 px padded by 2 (LeNet-5's 32), not stretched
    x, source = I.sample_images((3, 96, 96), 4, mean=I.IMAGENET_MEAN, std=I.IMAGENET_STD, root=data_root)
    assert x.shape == (4, 3, 96, 96) and source == "4 Imagenette val images"
    with pytest.raises(CnnlabError, match="no real test images with 2 channels"):
        I.sample_images((2, 8, 8), 1, mean=(0, 0), std=(1, 1), root=data_root)
    target = I.load_target("lenet5")
    assert (target.label, target.input_size, target.mean) == ("lenet5", (1, 32, 32), I.MNIST_MEAN)
