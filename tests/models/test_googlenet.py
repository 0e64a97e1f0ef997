"""GoogLeNet (Szegedy et al. 2015): Table 1's sizes and compute, aux heads, torchvision keys."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.layers.lrn import LocalResponseNorm
from cnnlab.models import create_model, get_model_info
from cnnlab.models.googlenet import GOOGLENET_TABLE1, GoogLeNetOutputs
from tests.helpers import gmacs, macs, meta_model, n_params


def macs_by_module(model: nn.Module, size: int = 224) -> dict[str, float]:
    """Multiply-adds per top-level child, in the eval-mode forward (profile gives only the total)."""
    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        model.eval()(torch.empty(1, 3, size, size))
    counts = counter.get_flop_counts()
    return {name.split(".", 1)[1]: sum(c.values()) / 2 for name, c in counts.items() if name.count(".") == 1}


# --- the paper's Table 1 ---------------------------------------------------------------


def test_paper_parameter_counts():
    # Our count, with every conv's bias: 6,998,552 in the main network; the two auxiliary
    # classifiers add 2 x (128 x (C + 1) + 2048 x 1024 + 1024 + 1024 x 1000 + 1000).
    main = meta_model("googlenet", aux_logits=False)
    assert n_params(main) == 6_998_552
    aux = 128 * (512 + 1) + 128 * (528 + 1) + 2 * (2048 * 1024 + 1024 + 1024 * 1000 + 1000)
    assert n_params(meta_model("googlenet")) == 6_998_552 + aux


def test_paper_weights_match_table_1_total():
    # Table 1's params column sums to 6797.7K (about 6.8M, weights only, K = 1024).
    model = meta_model("googlenet", aux_logits=False)
    weights = sum(p.numel() for name, p in model.named_parameters() if name.endswith("weight"))
    assert weights / 1024 == pytest.approx(6797.7, rel=0.01)


# Table 1's "ops" column (millions of multiply-adds) for the layers that fit the table.
TABLE1_OPS = {"3a": 128, "3b": 304, "4a": 73, "4b": 88, "4c": 100, "4d": 119, "4e": 170, "5a": 54, "5b": 71}


def test_paper_macs_match_table_1_rows():
    rows = macs_by_module(meta_model("googlenet", aux_logits=False))
    for row, ops in TABLE1_OPS.items():
        # 5a is 51.1M by its own widths; the table says 54M.
        assert rows[f"inception{row}"] / 1e6 == pytest.approx(ops, rel=0.06), row
    assert (rows["conv2"] + rows["conv3"]) / 1e6 == pytest.approx(360, rel=0.01)
    assert rows["fc"] / 1e6 == pytest.approx(1, rel=0.03)


def test_paper_total_macs():
    # The paper: "1.5 billion multiply-adds" (Section 5); Table 1's ops column sums to
    # 1502M, but its first row (34M) undercounts a 7x7 conv on 3 channels: 112*112*64*147 =
    # 118M. With that row corrected the table sums to 1586M, which we match. Against the
    # rounded 1.5G the paper variant is 5.5% over (aux heads excluded: eval mode).
    model = meta_model("googlenet")
    assert macs_by_module(model)["conv1"] == 112 * 112 * 64 * 7 * 7 * 3
    assert macs(model, 224) / 1e6 == pytest.approx(1502 - 34 + 118, rel=0.005)
    assert gmacs(model, 224) == pytest.approx(1.5, rel=0.06)


def test_paper_variant_layers():
    model = meta_model("googlenet")
    assert model.inception3a.branch3[1].conv.kernel_size == (5, 5)
    assert isinstance(model.lrn1, LocalResponseNorm) and isinstance(model.lrn2, LocalResponseNorm)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model.dropout.p == 0.4 and model.aux1.dropout.p == 0.7
    assert [m.out_chans for m in (model.inception3b, model.inception4e, model.inception5b)] == [480, 832, 1024]
    assert list(GOOGLENET_TABLE1) == ["3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"]


# --- torchvision compatibility ---------------------------------------------------------


def test_torchvision_variant_sizes():
    assert n_params(meta_model("googlenet", variant="torchvision", aux_logits=False)) == 6_624_904
    assert n_params(meta_model("googlenet", variant="torchvision")) == 13_004_888
    # torchvision: 1.50 GFLOPS (multiply-adds) for googlenet.
    assert gmacs(meta_model("googlenet", variant="torchvision"), 224) == pytest.approx(1.50, rel=0.03)


def test_torchvision_state_dict_keys():
    sd = meta_model("googlenet", variant="torchvision").state_dict()
    assert len(sd) == 364  # 344 without the aux heads
    assert len(meta_model("googlenet", variant="torchvision", aux_logits=False).state_dict()) == 344
    shapes = {
        "conv1.conv.weight": (64, 3, 7, 7),
        "conv1.bn.running_mean": (64,),
        "conv3.conv.weight": (192, 64, 3, 3),
        "inception3a.branch1.conv.weight": (64, 192, 1, 1),
        "inception3a.branch3.1.conv.weight": (32, 16, 3, 3),  # the 3x3 "5x5" (vision#906)
        "inception4a.branch4.1.conv.weight": (64, 480, 1, 1),
        "inception5b.branch2.1.bn.weight": (384,),
        "aux1.conv.conv.weight": (128, 512, 1, 1),
        "aux2.conv.bn.running_var": (128,),
        "aux1.fc1.weight": (1024, 2048),
        "aux2.fc2.bias": (1000,),
        "fc.weight": (1000, 1024),
    }
    for key, shape in shapes.items():
        assert tuple(sd[key].shape) == shape, key
    assert sd["inception4e.branch3.0.bn.num_batches_tracked"].shape == ()
    model = meta_model("googlenet", variant="torchvision")
    assert model.conv1.bn.eps == 1e-3 and model.maxpool4.kernel_size == 2
    with torch.device("meta"):
        out = model.train()(torch.empty(2, 3, 224, 224))
    assert isinstance(out, GoogLeNetOutputs) and out.aux2.shape == (2, 1000)


# --- behaviour ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_googlenet() -> nn.Module:
    torch.manual_seed(0)
    return create_model("googlenet", num_classes=10)


def test_train_mode_returns_aux_outputs_whose_loss_backpropagates(small_googlenet):
    small_googlenet.train()
    small_googlenet.zero_grad()
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 7])
    out = small_googlenet(x)
    assert isinstance(out, GoogLeNetOutputs)
    assert [t.shape for t in out] == [(2, 10)] * 3
    ce = nn.functional.cross_entropy
    loss = out.loss(ce, y)
    expected = ce(out.logits, y) + 0.3 * ce(out.aux1, y) + 0.3 * ce(out.aux2, y)
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    grads = [p.grad for p in small_googlenet.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert small_googlenet.aux1.fc2.weight.grad.abs().sum() > 0


def test_eval_mode_returns_deterministic_logits(small_googlenet):
    small_googlenet.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = small_googlenet(x)
        assert isinstance(logits, torch.Tensor) and logits.shape == (2, 10)
        assert torch.equal(logits, small_googlenet(x))  # dropout off, no aux heads


def test_aux_logits_false_returns_logits_in_training():
    model = create_model("googlenet", num_classes=5, in_chans=1, aux_logits=False).train()
    out = model(torch.randn(2, 1, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5)
    assert not hasattr(model, "aux1")
    assert model.conv1.conv.in_channels == 1 and get_model_info(model).input_size == (1, 224, 224)


def test_se_option_adds_one_squeeze_excite_per_module():
    plain, se = meta_model("googlenet", aux_logits=False), meta_model("googlenet", aux_logits=False, se=True)
    extra = 0
    for spec in GOOGLENET_TABLE1.values():
        c, h = spec.out_chans, spec.out_chans // 16
        extra += 2 * c * h + h + c
    assert n_params(se) - n_params(plain) == extra == 480_103  # 9 SE blocks, r = 16


def test_unknown_variant_is_rejected():
    with pytest.raises(ValueError, match="unknown GoogLeNet variant 'tf'"):
        create_model("googlenet", variant="tf")


@pytest.mark.slow
def test_full_size_forward_both_variants():
    for variant in ("paper", "torchvision"):
        model = create_model("googlenet", variant=variant).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
