"""RegNetY: the generator, exact sizes, compute, torchvision key names, behaviour."""

from __future__ import annotations

import pytest
import torch

from cnnlab.models import create_model, get_model_info
from cnnlab.models.regnet import REGNETY, RegNetParams, regnet_stages
from tests.helpers import gmacs, meta_model, n_params

# Exact counts of the pycls RegNetY-4.0GF / 8.0GF / 16GF at 1000 classes.
PARAMS = {"regnety_4gf": 20_646_656, "regnety_8gf": 39_180_068, "regnety_16gf": 83_590_140}
# The paper's flops (multiply-adds) at 224.
PAPER_GMACS = {"regnety_4gf": 4.0, "regnety_8gf": 8.0, "regnety_16gf": 15.9}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_count_is_exact(name):
    assert n_params(meta_model(name)) == PARAMS[name]


@pytest.mark.parametrize("name", sorted(PAPER_GMACS))
def test_macs_match_the_paper(name):
    assert gmacs(name, get_model_info(name).input_size) == pytest.approx(PAPER_GMACS[name], rel=0.03)


# The per-stage depths and widths the pycls model zoo lists for these models: the generator
# (u_j = w0 + wa j, quantised in log space by wm, rounded to 8 and to the group width) must
# reproduce them from the four numbers alone.
PYCLS_STAGES = {
    "4.0GF": ([2, 6, 12, 2], [128, 192, 512, 1088], 64),
    "8.0GF": ([2, 4, 10, 1], [168, 448, 896, 2016], 56),
    "16GF": ([2, 4, 11, 1], [224, 448, 1232, 3024], 112),
}


@pytest.mark.parametrize("variant", sorted(PYCLS_STAGES))
def test_generator_reproduces_the_model_zoo_stages(variant):
    depths, widths, g = PYCLS_STAGES[variant]
    stages = regnet_stages(REGNETY[variant])
    assert [s.depth for s in stages] == depths
    assert [s.width for s in stages] == widths
    assert all(s.group_width == g for s in stages)
    assert sum(depths) == REGNETY[variant].depth


def test_group_width_is_capped_by_the_stage_width():
    # A group width wider than the first stage shrinks to that stage's width.
    stages = regnet_stages(RegNetParams(w0=24, wa=36.0, wm=2.5, depth=13, group_width=64))
    assert stages[0].width == 24 and stages[0].group_width == 24


def test_invalid_parameters_are_rejected_with_the_values():
    with pytest.raises(ValueError, match="w0"):
        regnet_stages(RegNetParams(w0=30, wa=10.0, wm=2.0, depth=10, group_width=8))


def test_se_width_is_a_quarter_of_the_block_input():
    model = meta_model("regnety_4gf")
    blocks = model.trunk_output
    # First block of stage 2: input 128 channels, bottleneck 192 -> SE hidden 32.
    se = blocks.block2.get_submodule("block2-0").f.se
    assert (se.fc1.in_channels, se.fc1.out_channels) == (192, 32)
    # Second block of stage 2: input 192 -> hidden 48.
    assert blocks.block2.get_submodule("block2-1").f.se.fc1.out_channels == 48


def test_state_dict_matches_torchvision_regnet_y_16gf():
    # torchvision's regnet_y_16gf has the same configuration; its key names and shapes:
    sd = meta_model("regnety_16gf").state_dict()
    expected = {
        "stem.0.weight": (32, 3, 3, 3),
        "stem.1.running_var": (32,),
        "trunk_output.block1.block1-0.proj.0.weight": (224, 32, 1, 1),
        "trunk_output.block1.block1-0.f.a.0.weight": (224, 32, 1, 1),
        "trunk_output.block1.block1-0.f.b.0.weight": (224, 112, 3, 3),
        "trunk_output.block1.block1-0.f.se.fc1.weight": (8, 224, 1, 1),
        "trunk_output.block1.block1-0.f.se.fc2.bias": (224,),
        "trunk_output.block1.block1-0.f.c.1.weight": (224,),
        "trunk_output.block3.block3-10.f.b.0.weight": (1232, 112, 3, 3),
        "trunk_output.block4.block4-0.f.se.fc1.weight": (308, 3024, 1, 1),
        "fc.weight": (1000, 3024),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    # stem 6 + 18 blocks x (3 conv-BN x 6 + SE 4) + 4 projections x 6 + fc 2
    assert len(sd) == 428


def test_options_change_the_head_and_the_stem():
    model = meta_model("regnety_8gf", num_classes=10, in_chans=1)
    out = model(torch.empty(2, 1, 64, 64, device="meta"))
    assert tuple(out.shape) == (2, 10)
    assert model.stem[0].in_channels == 1
    assert get_model_info(model).input_size == (1, 224, 224)


@pytest.fixture(scope="module")
def small_real_model():
    """The smallest registered RegNetY, built for real once (building it takes seconds)."""
    torch.manual_seed(0)
    return create_model("regnety_4gf", num_classes=10)


def test_train_and_eval_differ_through_batch_norm(small_real_model):
    model = small_real_model
    x = torch.randn(4, 3, 32, 32)
    model.train()
    y_train = model(x)
    model.eval()
    with torch.no_grad():
        y_eval = model(x)
    assert not torch.allclose(y_train, y_eval)


def test_small_forward_and_backward_give_finite_gradients(small_real_model):
    info = get_model_info("regnety_4gf")
    model = small_real_model.train()
    x = torch.randn(2, *info.test_input_size)
    loss = model(x).logsumexp(1).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.fc.weight.grad.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["regnety_4gf", "regnety_8gf", "regnety_16gf"])
def test_full_size_forward(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(1, *get_model_info(name).input_size))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
