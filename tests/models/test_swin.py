import pytest
import torch

from cnnlab.models.registry import create_model, get_model_info
from cnnlab.models.swin import PatchMerging
from tests.helpers import gmacs, meta_model, n_params

# torchvision's swin_t/s/b counts, and Swin-L with a 1000-class head.
PARAMS = {"swin_t": 28_288_354, "swin_s": 49_606_258, "swin_b": 87_768_224, "swin_l": 196_532_476}
# Liu et al. 2021, Table 1: FLOPs (multiply-accumulates) at 224x224.
GMACS = {"swin_t": 4.5, "swin_s": 8.7, "swin_b": 15.4, "swin_l": 34.5}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts(name):
    assert n_params(meta_model(name)) == PARAMS[name]


@pytest.mark.parametrize("name", ["swin_t", "swin_b"])
def test_macs_at_224(name):
    assert gmacs(name, 224) == pytest.approx(GMACS[name], rel=0.03)


@pytest.mark.parametrize("name,blocks", [("swin_t", 12), ("swin_s", 24), ("swin_b", 24)])
def test_state_dict_matches_torchvision_layout(name, blocks):
    sd = meta_model(name).state_dict()
    # patch embedding (conv 2 + norm 2) + 14 per block (norms 4, qkv 2, proj 2, bias table,
    # index buffer, mlp 4) + 3 patch mergings (reduction 1 + norm 2) + norm (2) + head (2)
    assert len(sd) == 4 + 14 * blocks + 9 + 4


def test_swin_t_characteristic_keys():
    shapes = {k: tuple(v.shape) for k, v in meta_model("swin_t").state_dict().items()}
    expected = {
        "features.0.0.weight": (96, 3, 4, 4),
        "features.0.2.weight": (96,),
        "features.1.0.norm1.weight": (96,),
        "features.1.0.attn.qkv.weight": (288, 96),
        "features.1.0.attn.proj.bias": (96,),
        "features.1.0.attn.relative_position_bias_table": (169, 3),
        "features.1.0.attn.relative_position_index": (2401,),
        "features.1.1.mlp.0.weight": (384, 96),
        "features.1.1.mlp.3.weight": (96, 384),
        "features.2.reduction.weight": (192, 384),
        "features.2.norm.weight": (384,),
        "features.5.5.attn.relative_position_bias_table": (169, 12),
        "features.6.reduction.weight": (768, 1536),
        "features.7.1.attn.qkv.weight": (2304, 768),
        "norm.weight": (768,),
        "head.weight": (1000, 768),
    }
    for key, shape in expected.items():
        assert shapes[key] == shape, key
    assert "features.2.reduction.bias" not in shapes


def test_blocks_alternate_regular_and_shifted_windows():
    for stage in meta_model("swin_s").features[1::2]:  # features: embed, stage, merge, stage, ...
        assert [blk.attn.shift for blk in stage] == [0, 3] * (len(stage) // 2)
        assert all(blk.attn.window_size == 7 for blk in stage)


def test_patch_merging_concatenates_neighbours_in_torchvision_order():
    merging = PatchMerging(1)
    seen = []
    merging.norm.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0]]).view(1, 2, 2, 1)  # (B, H, W, C): value = 2 * row + col
    assert merging(x).shape == (1, 1, 1, 2)
    assert seen[0].flatten().tolist() == [0.0, 2.0, 1.0, 3.0]  # (0,0), (1,0), (0,1), (1,1)


def test_drop_path_rates_and_layer_norm_eps():
    m = meta_model("swin_t")
    blocks = [blk for stage in m.features[1::2] for blk in stage]
    assert blocks[0].drop_path.p == 0.0 and blocks[-1].drop_path.p == pytest.approx(0.2)
    assert m.norm.eps == 1e-5


def test_options_and_input_checks():
    with torch.device("meta"):
        m = create_model("swin_t", num_classes=10, in_chans=1)
        assert m.head.out_features == 10
        assert m(torch.empty(2, 1, 64, 96)).shape == (2, 10)  # any multiple of the 4-pixel patch
        with pytest.raises(ValueError, match="multiples of 4"):
            m(torch.empty(1, 1, 30, 32))


def test_small_forward_backward_and_stochastic_depth_modes():
    torch.manual_seed(0)
    size = get_model_info("swin_t").test_input_size
    model = create_model("swin_t", num_classes=5)
    x = torch.randn(2, *size)
    out = model(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x))  # stochastic depth in training
        model.eval()
        torch.testing.assert_close(model(x), model(x))


@pytest.mark.slow
def test_full_size_forward():
    model = create_model("swin_t").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
