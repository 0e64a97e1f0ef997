import torch

from cnnlab.layers.dense import DenseBlock, DenseLayer, Transition
from tests.helpers import n_params


def test_dense_layer_adds_growth_rate_maps_with_a_4k_bottleneck():
    layer = DenseLayer(64, 32)
    assert layer.conv1.out_channels == 4 * 32
    out = layer([torch.randn(2, 40, 8, 8), torch.randn(2, 24, 8, 8)])  # the list is concatenated
    assert out.shape == (2, 32, 8, 8)
    # BN(64) + 1x1 conv 64->128 + BN(128) + 3x3 conv 128->32, no conv biases
    assert n_params(layer) == 2 * 64 + 64 * 128 + 2 * 128 + 128 * 32 * 9


def test_dense_block_concatenates_every_layer_onto_its_input():
    torch.manual_seed(0)
    block = DenseBlock(3, 16, 8).eval()
    x = torch.randn(2, 16, 6, 6)
    out = block(x)
    assert out.shape == (2, 16 + 3 * 8, 6, 6)
    assert block.out_chans == 40
    assert torch.equal(out[:, :16], x)  # x_0 reaches the block's output unchanged
    # The first layer's maps come next: H_1 applied to x_0 alone.
    torch.testing.assert_close(out[:, 16:24], block.denselayer1([x]))
    assert [name for name, _ in block.named_children()] == ["denselayer1", "denselayer2", "denselayer3"]
    assert block.denselayer3.norm1.num_features == 16 + 2 * 8


def test_memory_efficient_layer_gives_the_same_values_and_gradients():
    torch.manual_seed(0)
    plain = DenseBlock(3, 8, 4)
    efficient = DenseBlock(3, 8, 4, memory_efficient=True)
    efficient.load_state_dict(plain.state_dict())
    x1 = torch.randn(2, 8, 5, 5, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    y1, y2 = plain(x1), efficient(x2)
    torch.testing.assert_close(y1, y2)
    y1.square().sum().backward()
    y2.square().sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    for p1, p2 in zip(plain.parameters(), efficient.parameters()):
        torch.testing.assert_close(p1.grad, p2.grad)


def test_dense_layer_dropout_only_in_training():
    torch.manual_seed(0)
    layer = DenseLayer(8, 4, drop_rate=0.5)
    x = [torch.randn(2, 8, 5, 5)]
    layer.train()
    assert (layer(x) == 0).float().mean() > 0.3
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))


def test_transition_halves_resolution_and_maps_channels():
    t = Transition(64, 32)
    assert t(torch.randn(2, 64, 8, 8)).shape == (2, 32, 4, 4)
    assert set(t.state_dict()) == {
        "norm.weight",
        "norm.bias",
        "norm.running_mean",
        "norm.running_var",
        "norm.num_batches_tracked",
        "conv.weight",
    }
