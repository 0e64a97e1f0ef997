import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models import create_model
from cnnlab.models.lenet import C3_TABLE, PartialConv2d, ScaledTanh, rbf_codes
from tests.helpers import macs, n_params


def n_trainable(m):
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def test_plain_lenet_count_and_names():
    m = create_model("lenet5")
    assert n_trainable(m) == 61_706
    assert [n for n, _ in m.named_children()] == ["features", "classifier"]
    names = [n for n, p in m.named_parameters()]
    for layer in ("features.c1", "features.c3", "features.c5", "classifier.f6", "classifier.output"):
        assert f"{layer}.weight" in names
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("activation,pool", [("relu", "max"), ("sigmoid", "avg")])
def test_plain_options(activation, pool):
    m = create_model("lenet5", activation=activation, pool=pool, num_classes=3, in_chans=2)
    assert m(torch.randn(1, 2, 32, 32)).shape == (1, 3)
    assert isinstance(m.features.s2, nn.MaxPool2d if pool == "max" else nn.AvgPool2d)


def test_paper_exactly_60000_trainable_and_840_fixed():
    m = create_model("lenet5", paper=True)
    assert n_trainable(m) == 60_000
    per_layer = {name: n_params(mod) for name, mod in m.features.named_children()}
    per_layer.update({name: n_params(mod) for name, mod in m.classifier.named_children()})
    # Section II.B: C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164.
    assert {k: v for k, v in per_layer.items() if v} == {
        "c1": 156, "s2": 12, "c3": 1516, "s4": 32, "c5": 48_120, "f6": 10_164,
    }  # fmt: skip
    codes = m.classifier.output.codes
    assert codes.numel() == 840 and not codes.requires_grad
    assert "classifier.output.codes" in m.state_dict()  # saved with checkpoints, never trained
    assert set(codes.unique().tolist()) == {-1.0, 1.0}


def test_c3_connection_table():
    sizes = [len(maps) for maps in C3_TABLE]
    assert sizes == [3] * 6 + [4] * 6 + [4] * 3 + [6]  # 6x3 + 6x4 + 3x4 + 1x6 = 60 links
    assert sum(sizes) == 60
    # Each S2 map feeds exactly 10 C3 maps (Table I has ten X's per row).
    assert all(sum(i in maps for maps in C3_TABLE) == 10 for i in range(6))
    assert C3_TABLE[12] == (0, 1, 3, 4) and C3_TABLE[14] == (0, 2, 3, 5)


def test_partial_conv_equals_masked_dense_conv():
    torch.manual_seed(0)
    layer = PartialConv2d(C3_TABLE, 5)
    nn.init.normal_(layer.weight)
    nn.init.normal_(layer.bias)
    dense = torch.zeros(16, 6, 5, 5)
    link = 0
    for o, maps in enumerate(C3_TABLE):
        for i in maps:
            dense[o, i] = layer.weight[link, 0].detach()
            link += 1
    x = torch.randn(2, 6, 14, 14)
    torch.testing.assert_close(layer(x), F.conv2d(x, dense, layer.bias.detach()), rtol=1e-4, atol=1e-4)


def test_paper_macs_are_the_connections():
    # Weight connections of C1, C3, C5, F6 (the paper's counts minus the bias links) + RBF.
    m = create_model("lenet5", paper=True)
    assert macs(m, (1, 32, 32)) == 117_600 + 150_000 + 48_000 + 10_080 + 840


def test_scaled_tanh():
    f = ScaledTanh()
    torch.testing.assert_close(f(torch.tensor([1.0, -1.0])), torch.tensor([1.0, -1.0]), atol=1e-3, rtol=0)
    assert f(torch.tensor(100.0)).item() == pytest.approx(1.7159)


def test_rbf_logits_are_negative_squared_distances():
    m = create_model("lenet5", paper=True)
    x = torch.randn(3, 84)
    expected = -torch.cdist(x, m.classifier.output.codes).pow(2)
    torch.testing.assert_close(m.classifier.output(x), expected, rtol=1e-4, atol=1e-3)
    # The unit closest to a code is that code's class.
    assert m.classifier.output(rbf_codes(10)).argmax(1).tolist() == list(range(10))


def test_codes_distinct_and_more_classes():
    codes = rbf_codes(10)
    assert codes.shape == (10, 84) and torch.unique(codes, dim=0).shape[0] == 10
    more = rbf_codes(26)
    assert more.shape == (26, 84) and torch.equal(more[:10], codes)
    assert torch.equal(more, rbf_codes(26))  # deterministic


def test_paper_trains_and_meta():
    torch.manual_seed(0)
    m = create_model("lenet5", paper=True, num_classes=4, in_chans=3)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 4, (8,))
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in m.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    with torch.device("meta"):
        meta = create_model("lenet5", paper=True)
        assert meta(torch.empty(2, 1, 32, 32)).shape == (2, 10)


def test_paper_rejects_other_activation():
    with pytest.raises(ValueError, match="paper=True fixes"):
        create_model("lenet5", paper=True, activation="relu")


def test_docstring_table_matches_c3_table():
    # The module docstring draws Table I; it must say what the code does.
    import cnnlab.models.lenet as lenet

    lines = lenet.__doc__.split("0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15")[1].strip("\n").splitlines()
    header = "        0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15"
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    for row in range(6):
        line = lines[row]
        drawn = {c for c, at in enumerate(starts) if at < len(line) and line[at] == "X"}
        assert drawn == {c for c, maps in enumerate(C3_TABLE) if row in maps}, f"row {row}"
