"""The airbench-style speedrun network (Jordan 2024): size, shapes, the whitening layer."""

from __future__ import annotations

import torch

from cnnlab.models import create_model, get_model_info
from cnnlab.models.airbench import AIRBENCH94, Airbench


def test_airbench94_parameter_count_from_its_table():
    convs = 24 * 3 * 2 * 2 + 24  # whitening filters and their bias
    chans = 24
    for block in AIRBENCH94:
        convs += chans * block.width * 9 + block.width * block.width * 9 + 2 * 2 * block.width  # two convs, two BNs
        chans = block.width
    expected = convs + 256 * 10  # linear head, no bias
    model = create_model("airbench94")
    assert sum(p.numel() for p in model.parameters()) == expected == get_model_info("airbench94").params == 1_972_792


def test_shapes_through_the_network():
    model = Airbench(num_classes=7).eval()
    x = torch.randn(2, 3, 32, 32)
    assert model.whiten(x).shape == (2, 24, 31, 31)  # 2x2, no padding
    assert model.layers(model.whiten(x)).shape == (2, 256, 3, 3)  # 31 -> 15 -> 7 -> 3
    assert model(x).shape == (2, 7)


def test_whitening_decorrelates_the_training_patches_and_is_frozen():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(64, 1, 32, 32, generator=g)
    images = torch.cat([base, base * 0.5 + 0.1 * torch.randn(64, 1, 32, 32, generator=g),
                        torch.randn(64, 1, 32, 32, generator=g)], 1)  # correlated channels
    model = Airbench()
    model.init_whitening(images)
    out = torch.nn.functional.conv2d(images, model.whiten.weight[:12])  # the 12 positive filters
    flat = out.permute(1, 0, 2, 3).reshape(12, -1).double()
    cov = flat @ flat.T / flat.shape[1]
    off_diagonal = cov - torch.diag(cov.diag())
    assert off_diagonal.abs().max() < 1e-4  # decorrelated
    # unit variance, less the share WHITEN_EPS takes of the weakest directions (eigenvalue ~0.01 here)
    assert ((cov.diag() > 0.9) & (cov.diag() <= 1 + 1e-6)).all()
    assert torch.equal(model.whiten.weight[12:], -model.whiten.weight[:12])
    before = model.whiten.weight.clone()
    loss = model(images[:8]).logsumexp(1).mean()
    loss.backward()
    assert model.whiten.weight.grad is None and model.whiten.bias.grad is not None
    torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4).step()
    assert torch.equal(model.whiten.weight, before)


def test_convolutions_start_as_the_identity_and_batchnorm_follows_quickly():
    # Jordan 2024: the first in_channels filters of every 3x3 convolution are dirac (identity)
    # filters; BatchNorm keeps 0.6 of its running statistics per step (torch momentum 0.4).
    torch.manual_seed(0)
    model = Airbench()
    for group in model.layers:
        for conv in (group.conv1, group.conv2):
            n = conv.in_channels
            identity = torch.zeros_like(conv.weight[:n])
            identity[torch.arange(n), torch.arange(n), 1, 1] = 1
            assert torch.equal(conv.weight[:n], identity)
            if conv.out_channels > n:  # the rest keep torch's random init
                assert conv.weight[n:].abs().sum() > 0 and conv.weight[n:, :, 1, 1].std() > 0
        x = torch.randn(4, group.conv1.in_channels, 8, 8)
        assert torch.allclose(group.conv1(x)[:, : group.conv1.in_channels], x, atol=1e-6)  # passes its input
        assert group.bn1.momentum == group.bn2.momentum == 0.4


def test_batchnorm_learns_its_bias_only_unless_asked():
    model = Airbench()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 6
    assert not any(bn.weight.requires_grad for bn in bns) and all(bn.bias.requires_grad for bn in bns)
    assert all(bn.weight.requires_grad for bn in create_model("airbench94", learn_bn_scale=True).modules()
               if isinstance(bn, torch.nn.BatchNorm2d))


def test_the_whitening_runs_in_fp32_under_bf16_autocast():
    # The weakest whitened directions are large differences of neighbouring pixels: in bf16
    # they lose much of their signal, so the layer opts out of autocast.
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.randn(16, 3, 36, 36, generator=g), 5, 1)  # correlated pixels
    model = Airbench().eval()
    model.init_whitening(smooth)
    seen = {}
    model.act.register_forward_hook(lambda m, args, out: seen.setdefault("whitened", out))
    with torch.no_grad():
        exact = model.act(model.whiten(smooth))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(smooth)
    assert seen["whitened"].dtype == torch.float32
    assert torch.allclose(seen["whitened"], exact, atol=1e-5)
