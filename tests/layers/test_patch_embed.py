import pytest
import torch

from cnnlab.layers.patch_embed import ChannelsLast, PatchEmbed


def test_patch_embed_is_a_linear_map_of_flattened_patches():
    # ViT Eq. 1: x_p^i E, where x_p^i is the i-th patch flattened in (C, P, P) order.
    torch.manual_seed(0)
    p, d = 4, 10
    embed = PatchEmbed(3, d, p)
    x = torch.randn(2, 3, 8, 12)
    patches = x.unfold(2, p, p).unfold(3, p, p)  # (B, C, 2, 3, P, P)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(2, 6, 3 * p * p)
    expected = patches @ embed.weight.view(d, -1).T + embed.bias  # (B, N, D)
    out = embed(x)
    assert out.shape == (2, d, 2, 3)
    torch.testing.assert_close(out.flatten(2).transpose(1, 2), expected, rtol=1e-5, atol=1e-5)


def test_patch_embed_parameters_have_no_wrapper_level():
    assert set(PatchEmbed(3, 8, 16).state_dict()) == {"weight", "bias"}


def test_patch_embed_rejects_inputs_not_divisible_into_patches():
    with pytest.raises(ValueError, match="30x32.*multiples of 16"):
        PatchEmbed(3, 8, 16)(torch.randn(1, 3, 30, 32))


def test_channels_last():
    x = torch.randn(2, 3, 4, 5)
    assert torch.equal(ChannelsLast()(x), x.permute(0, 2, 3, 1))
