import pytest
import torch

from cnnlab.models.registry import create_model, get_model_info
from cnnlab.models.vit import VIT_CONFIGS
from tests.helpers import gmacs, macs, meta_model, n_params

# torchvision's vit_b_16 / vit_l_16 counts; DeiT-B is the ViT-B/16 network.
PARAMS = {
    "vit_b_16": 86_567_656,
    "vit_l_16": 304_326_632,
    "deit_tiny": 5_717_416,
    "deit_small": 22_050_664,
    "deit_base": 86_567_656,
}
# G multiply-accumulates at 224x224, attention matmuls included: torchvision lists 17.56 and
# 61.55 GFLOPS for ViT-B/16 and ViT-L/16; the Swin paper's Table 1(a) 4.6G for DeiT-S.
GMACS = {"vit_b_16": 17.56, "vit_l_16": 61.55, "deit_small": 4.6, "deit_base": 17.56}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts(name):
    assert n_params(meta_model(name)) == PARAMS[name]


@pytest.mark.parametrize("name", sorted(GMACS))
def test_macs_at_224(name):
    assert gmacs(name, 224) == pytest.approx(GMACS[name], rel=0.03)


def test_macs_formula_includes_attention_matmuls():
    # Every term written out for DeiT-Ti: patch projection, per block the q/k/v and output
    # projections, Q K^T and A V over N + 1 tokens, the MLP; then the head.
    c = VIT_CONFIGS["Ti/16"]
    n = (224 // c.patch_size) ** 2
    d, t = c.width, n + 1
    per_block = t * 3 * d * d + t * d * d + 2 * t * t * d + 2 * t * d * c.mlp_dim
    expected = n * d * 3 * c.patch_size**2 + c.depth * per_block + d * 1000
    assert macs("deit_tiny", 224) == expected


@pytest.mark.parametrize("name,blocks", [("vit_b_16", 12), ("vit_l_16", 24)])
def test_state_dict_matches_torchvision_layout(name, blocks):
    sd = meta_model(name).state_dict()
    # conv_proj (2) + class_token + pos_embedding + 12 per block + encoder.ln (2) + heads.head (2)
    assert len(sd) == 4 + 12 * blocks + 4


def test_vit_b_16_characteristic_keys():
    shapes = {k: tuple(v.shape) for k, v in meta_model("vit_b_16").state_dict().items()}
    layer = "encoder.layers.encoder_layer_0."
    expected = {
        "conv_proj.weight": (768, 3, 16, 16),
        "conv_proj.bias": (768,),
        "class_token": (1, 1, 768),
        "encoder.pos_embedding": (1, 197, 768),
        layer + "ln_1.weight": (768,),
        layer + "self_attention.in_proj_weight": (2304, 768),
        layer + "self_attention.in_proj_bias": (2304,),
        layer + "self_attention.out_proj.weight": (768, 768),
        layer + "self_attention.out_proj.bias": (768,),
        layer + "ln_2.bias": (768,),
        layer + "mlp.0.weight": (3072, 768),
        layer + "mlp.3.weight": (768, 3072),
        "encoder.layers.encoder_layer_11.mlp.3.bias": (768,),
        "encoder.ln.weight": (768,),
        "heads.head.weight": (1000, 768),
        "heads.head.bias": (1000,),
    }
    for key, shape in expected.items():
        assert shapes[key] == shape, key


def test_layer_norm_eps_is_1e_minus_6():
    m = meta_model("deit_tiny")
    assert m.encoder.ln.eps == 1e-6
    assert m.encoder.layers.encoder_layer_0.ln_1.eps == 1e-6


def test_image_size_sets_the_position_embedding():
    m = meta_model("deit_tiny", image_size=64)
    assert m.encoder.pos_embedding.shape == (1, 17, 192)  # 4 x 4 patches + class token
    assert get_model_info(m).input_size == (3, 64, 64)
    with pytest.raises(ValueError, match="built for 64x64.*got 32x32"):
        m(torch.empty(1, 3, 32, 32, device="meta"))
    with pytest.raises(ValueError, match="image_size 100"):
        create_model("deit_tiny", image_size=100)


def test_options_num_classes_in_chans():
    m = meta_model("vit_b_16", num_classes=10, in_chans=1)
    assert m.heads.head.out_features == 10
    assert m.conv_proj.in_channels == 1
    assert {"image_size", "dropout", "drop_path"} <= set(get_model_info("deit_small").options)


def test_drop_path_rates_grow_linearly_to_the_last_block():
    m = meta_model("deit_small")  # DeiT trains with stochastic depth 0.1
    rates = [blk.drop_path.p for blk in m.encoder.layers]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.1)
    assert all(b > a for a, b in zip(rates, rates[1:]))
    assert all(blk.drop_path.p == 0.0 for blk in meta_model("vit_b_16").encoder.layers)


def test_small_forward_backward_and_stochastic_depth_modes():
    torch.manual_seed(0)
    model = create_model("deit_tiny", image_size=32, num_classes=5, drop_path=0.5)  # 2 x 2 patches
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x))  # blocks dropped at random in training
        model.eval()
        y_eval = model(x)
        torch.testing.assert_close(model(x), y_eval)
        # Without stochastic depth (and dropout 0, the default) training and evaluation agree.
        for block in model.encoder.layers:
            block.drop_path.p = 0.0
        torch.testing.assert_close(model.train()(x), y_eval)


@pytest.mark.slow
def test_full_size_forward():
    model = create_model("vit_b_16").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
