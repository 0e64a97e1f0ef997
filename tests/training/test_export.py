"""ONNX export: torch's exporter, checked with onnxruntime on real test images.

Tolerance: onnxruntime's kernels sum in another order than PyTorch's, so logits agree to
float32 rounding: max |difference| <= 1e-4 x max |logit| (seen: ~1e-6 relative), and the
top-1 class on every image (untrained models: at least 97%, near-ties may flip). A model whose
float32 logits are themselves further than that from the exact (float64) ones passes when
onnxruntime's error against the exact logits is within 4x PyTorch's own float32 error.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model, get_model_info
from cnnlab.training.export import OnnxModel, _SlicedAdaptiveMaxPool, check_onnx, export_onnx
from cnnlab.training.inference import IMAGENET_MEAN, IMAGENET_STD, MNIST_MEAN, MNIST_STD, sample_images
from tests import oracle

RTOL = 1e-4

pytest.importorskip("onnxruntime", reason="pip install 'cnnlab[onnx]'")


def _images(size, data_root, n=16):
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if size[0] == 3 else (MNIST_MEAN, MNIST_STD)
    return sample_images(size, n, mean=mean, std=std, root=data_root)[0]


def _check(name: str, size: tuple[int, int, int], tmp_path: Path, data_root: Path, *, dynamic: bool = True, **options):
    torch.manual_seed(0)  # the same weights whatever ran before in this process (CI: 1 of 16 disagreed once)
    model = create_model(name, **options).eval()
    oracle.randomise(model, size=size)  # trained-like BN statistics: unit-scale activations
    path = export_onnx(model, tmp_path / f"{name}.onnx", input_size=size, dynamic_batch=dynamic)
    images = _images(size, data_root)
    result = check_onnx(path, model, images)
    assert result.top1 >= 0.97, result.describe()
    if result.max_abs_diff > RTOL * result.scale:
        # Ill-conditioned with these statistics (EfficientNet-B0: PyTorch's own float32 logits
        # are 4e-4 of their scale off the float64 ones): then onnxruntime's error against the
        # exact logits must stay within 4x PyTorch's float32 error (seen: 2.5x; its vectorised
        # exp and sigmoid are polynomial approximations).
        with torch.no_grad():
            exact = model.double()(images.double())
            ours = model.float()(images)
        theirs = OnnxModel(path)(images)
        assert (theirs - exact).abs().max() <= 4 * (ours - exact).abs().max(), result.describe()
    return path, result


def test_lenet5_fixed_batch_with_metadata(tmp_path: Path, data_root: Path) -> None:
    model = create_model("lenet5").eval()
    path = export_onnx(model, tmp_path / "lenet5.onnx", input_size=(1, 32, 32),
                       metadata={"mean": [0.1307], "classes": [str(i) for i in range(10)]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet5.onnx"]  # one file, weights inside
    import onnx

    onnx.checker.check_model(str(path), full_check=True)  # a valid ModelProto, types and shapes inferred
    assert onnx.load(str(path)).opset_import[0].version == 20
    onnx = OnnxModel(path)
    assert onnx.batch == 1
    assert onnx.metadata == {"input_size": [1, 32, 32], "model": "lenet5", "mean": [0.1307],
                             "classes": [str(i) for i in range(10)]}
    images = _images((1, 32, 32), data_root, n=5)  # five images through a batch-1 file
    result = check_onnx(path, model, images)
    assert result.images == 5 and result.top1 == 1.0 and result.max_abs_diff <= RTOL * result.scale


def test_resnet20_dynamic_batch(tmp_path: Path, data_root: Path) -> None:
    path, result = _check("resnet20", (3, 32, 32), tmp_path, data_root)
    assert result.batch_sizes == (16, 1)
    onnx = OnnxModel(path)
    assert onnx.batch == "batch"
    for n in (1, 3, 7):
        assert onnx(torch.zeros(n, 3, 32, 32)).shape == (n, 10)


class _BatchCentred(nn.Module):
    """Logits that depend on the rest of the batch (each image minus the batch mean): a graph
    that agrees at the batch size it is checked at and at no other."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc((x - x.mean(0, keepdim=True)).flatten(1))


def test_a_free_batch_is_checked_at_two_batch_sizes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _BatchCentred().eval()
    path = export_onnx(model, tmp_path / "centred.onnx", input_size=(1, 4, 4), dynamic_batch=True)
    x = torch.randn(6, 1, 4, 4)
    assert torch.allclose(OnnxModel(path)(x), model(x), atol=1e-5)  # all six at once: it agrees
    result = check_onnx(path, model, x)
    # One at a time, each image is its own batch mean (logits = the bias): the check sees it.
    assert result.batch_sizes == (6, 1) and result.images == 6
    assert result.max_abs_diff > 0.1 and result.top1 < 1.0
    assert result.describe().endswith("on 6 images, at batch sizes 6 and 1") and "max |diff|" in result.describe()
    fixed = export_onnx(model, tmp_path / "fixed.onnx", input_size=(1, 4, 4))
    assert check_onnx(fixed, model, x[:1]).describe().endswith("top-1 agreement 100.0% on 1 images, at batch size 1")


class _CumulativeMax(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cummax(x.flatten(1), dim=1).values


def test_unsupported_operator_is_named_and_nothing_is_damaged(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"an earlier export")
    with pytest.raises(CnnlabError, match=r"^cannot export _CumulativeMax to ONNX: operator aten\.cummax has no ONNX translation \(opset 20\)$"):
        export_onnx(_CumulativeMax(), target, input_size=(1, 4, 4))
    assert target.read_bytes() == b"an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


@pytest.mark.parametrize(("h", "w", "size"), [(13, 13, 7), (7, 9, (3, 2)), (6, 4, (None, 3)), (5, 5, 1)])
def test_sliced_adaptive_max_pool_is_pytorchs(h: int, w: int, size) -> None:
    x = torch.randn(2, 3, h, w)
    assert torch.equal(_SlicedAdaptiveMaxPool(size)(x), nn.AdaptiveMaxPool2d(size)(x))


def test_adaptive_max_pool_exports(tmp_path: Path) -> None:
    # ONNX has no adaptive max pooling (PReLU-net's pyramid pooling): the export slices it.
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveMaxPool2d((3, 2)), nn.Flatten(), nn.Linear(24, 5)).eval()
    path = export_onnx(model, tmp_path / "spp.onnx", input_size=(3, 13, 11))
    x = torch.randn(4, 3, 13, 11)
    result = check_onnx(path, model, x)
    assert result.max_abs_diff <= RTOL * result.scale and isinstance(model[1], nn.AdaptiveMaxPool2d)


def test_bad_output_paths_and_opsets(tmp_path: Path) -> None:
    model = create_model("lenet5")
    with pytest.raises(CnnlabError, match=r"cannot write .*/nowhere/m\.onnx: folder .*/nowhere does not exist"):
        export_onnx(model, tmp_path / "nowhere" / "m.onnx", input_size=(1, 32, 32))
    with pytest.raises(CnnlabError, match=r"cannot write .*: it is a folder"):
        export_onnx(model, tmp_path, input_size=(1, 32, 32))
    with pytest.raises(CnnlabError, match=r"opset 11 is not one torch's ONNX exporter writes; expected 18\.\.23"):
        export_onnx(model, tmp_path / "m.onnx", input_size=(1, 32, 32), opset=11)
    (tmp_path / "junk.onnx").write_text("not onnx")
    with pytest.raises(CnnlabError, match=r"junk\.onnx is not a loadable ONNX model"):
        OnnxModel(tmp_path / "junk.onnx")
    with pytest.raises(CnnlabError, match="no ONNX file at"):
        OnnxModel(tmp_path / "missing.onnx")


# One model per family (the smallest), at a small input where the architecture allows it. The
# exporter's cost is the graph's size, not the input's, so most of these are slow.
FAMILIES = [
    ("mlp", None), ("alexnet", None), ("zfnet", None), ("vgg11_bn", 64), ("nin_cifar", None),
    ("googlenet", 64), ("bn_inception", 64), ("inception_v4", None), ("inception_resnet_v1", None),
    ("resnet18", 64), ("resnext50_32x4d", 64), ("seresnet50", 64), ("bit_r50x1", 64), ("densenet121", 64),
    ("prelu_net_a", None), ("efficientnet_b0", 64), ("regnety_4gf", 64), ("convnext_t", 64),
    ("deit_tiny", None), ("swin_t", None), ("airbench94", None),
]


def test_the_family_list_covers_every_family() -> None:
    from cnnlab.models import list_models

    covered = {get_model_info(n).family for n, _ in FAMILIES} | {"lenet", "resnet_cifar"}  # the fast tests above
    assert covered == {get_model_info(n).family for n in list_models()}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "side"), FAMILIES, ids=[n for n, _ in FAMILIES])
def test_every_family_exports_and_agrees(name: str, side: int | None, tmp_path: Path, data_root: Path) -> None:
    c, h, w = get_model_info(name).input_size
    _check(name, (c, side or h, side or w), tmp_path, data_root)
