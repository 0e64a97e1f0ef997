"""No weight decay on norms and biases, gradient clipping, the EMA of weights, and the
training loop with mixup, cutmix, clipping and EMA (resumed exactly)."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.training.config import TrainConfig
from cnnlab.training.extras import StepExtras
from cnnlab.training.loop import StopTraining, fit
from cnnlab.training.optim import WeightEMA, clip_gradients, make_optimizer, parameter_groups


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LayerNorm(4 * 6 * 6),
                         nn.Linear(4 * 6 * 6, 5))


def test_no_decay_on_norms_and_biases():
    net = small_net()
    decay, no_decay = parameter_groups(net, weight_decay=0.1, norm_bias_decay=False)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(net[0].weight), id(net[5].weight)}
    assert len(no_decay["params"]) == 6  # conv and linear biases, BN and LayerNorm weight + bias
    assert len(parameter_groups(net, weight_decay=0.1)[0]["params"]) == 8  # default: one group


def test_sgd_decays_only_the_decayed_group():
    net = small_net()
    before = copy.deepcopy(net.state_dict())
    opt = make_optimizer(parameter_groups(net, weight_decay=0.5, norm_bias_decay=False), name="sgd", lr=0.1, momentum=0.0)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    after = net.state_dict()
    assert torch.allclose(after["0.weight"], before["0.weight"] * (1 - 0.1 * 0.5))
    for key in ("0.bias", "1.weight", "1.bias", "4.weight", "5.bias"):
        assert torch.equal(after[key], before[key]), key


def test_norms_at_a_multiple_of_the_learning_rate_keep_the_decay_per_step():
    # airbench: BatchNorm biases at 64x the rate, their weight decay divided by 64.
    net = small_net()
    rest, norms = parameter_groups(net, weight_decay=0.5, norm_lr_scale=64.0)
    assert {id(p) for p in norms["params"]} == {id(p) for m in (net[1], net[4]) for p in m.parameters()}
    assert norms["lr_scale"] == 64.0 and norms["weight_decay"] == pytest.approx(0.5 / 64) and "lr_scale" not in rest
    assert parameter_groups(net, weight_decay=0.5, norm_bias_decay=False, norm_lr_scale=64.0)[-1]["weight_decay"] == 0.0
    before = copy.deepcopy(net.state_dict())
    opt = make_optimizer([rest, norms], name="sgd", lr=0.1, momentum=0.0)
    for group in opt.param_groups:
        group["lr"] = 0.1 * group.get("lr_scale", 1.0)  # as the training loop sets it
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    after = net.state_dict()
    # the gradient step 64x larger, the decay per step the same (1 - 0.1 x 0.5)
    assert torch.allclose(after["1.bias"], before["1.bias"] * (1 - 0.1 * 0.5) - 6.4)
    assert torch.allclose(after["0.bias"], before["0.bias"] * (1 - 0.1 * 0.5) - 0.1)
    split = parameter_groups(net, weight_decay=0.5, norm_lr_scale=64.0, head={"5.weight", "5.bias"}, backbone_lr_scale=0.1)
    assert sorted(g["lr_scale"] for g in split if g["params"]) == pytest.approx([0.1, 1.0, 6.4])


def test_clipping_scales_the_global_norm_and_keeps_the_direction():
    net = small_net()
    for p in net.parameters():
        p.grad = torch.full_like(p, 3.0)
    grads = torch.cat([p.grad.flatten() for p in net.parameters()])
    norm = clip_gradients(net, 1.0)
    clipped = torch.cat([p.grad.flatten() for p in net.parameters()])
    assert norm == pytest.approx(float(grads.norm()), rel=1e-5)
    assert float(clipped.norm()) == pytest.approx(1.0, rel=1e-4)
    assert torch.allclose(clipped / clipped.norm(), grads / grads.norm(), atol=1e-6)
    assert clip_gradients(net, None) is None and clip_gradients(net, 1e6) == pytest.approx(1.0, rel=1e-4)


def test_ema_follows_the_formula_with_buffers_and_its_interval(tmp_path):
    net = small_net()
    ema = WeightEMA(net, decay=0.9, every=2)
    w0 = net[0].weight.detach().clone()
    expected = w0.clone()
    for step in range(1, 7):
        with torch.no_grad():
            net[0].weight.add_(1.0)
            net[1].running_mean.add_(1.0)
        ema.update(net)
        if step % 2 == 0:  # every second step; the first update copies the weights
            expected = net[0].weight.detach().clone() if step == 2 else 0.9 * expected + 0.1 * net[0].weight.detach()
    assert torch.allclose(ema.module[0].weight, expected, atol=1e-6)
    assert 0 < float(ema.module[1].running_mean[0]) < float(net[1].running_mean[0])  # buffers averaged too
    ema.save(tmp_path / "ema.safetensors", epoch=3)
    other = WeightEMA(small_net(), decay=0.9, every=2)
    assert not other.load(tmp_path / "ema.safetensors", epoch=2)  # from another epoch: not used
    assert other.load(tmp_path / "ema.safetensors", epoch=3) and other.steps == 6
    assert torch.equal(other.module[0].weight, ema.module[0].weight)
    assert set(load_file(str(tmp_path / "ema.safetensors"))) == set(net.state_dict())  # a plain weight file
    with pytest.raises(CnnlabError):
        WeightEMA(net, decay=1.0)


def test_lookahead_pulls_the_weights_back_to_an_average_whose_decay_ramps_with_progress_cubed():
    torch.manual_seed(0)
    net = small_net()
    total = 12
    ema = WeightEMA(net, decay=0.8, every=3, lookahead_steps=total)
    slow = None
    for step in range(1, total + 1):
        with torch.no_grad():
            net[0].weight.add_(1.0)  # an optimizer step of the fast weights
        fast = net[0].weight.detach().clone()
        ema.update(net)
        if step % 3:
            assert torch.equal(net[0].weight, fast)  # between updates the fast weights move freely
            continue
        decay = 0.8 * (step / total) ** 3  # 0.8 x (1/4)^3 = 0.0125 first, 0.8 at the end
        slow = fast if slow is None else decay * slow + (1 - decay) * fast
        assert torch.allclose(ema.module[0].weight, slow, atol=1e-6)
        assert torch.equal(net[0].weight, ema.module[0].weight)  # and they start again from the slow weights
    assert ema.current_decay() == pytest.approx(0.8)
    with pytest.raises(CnnlabError, match="set ema_decay too"):
        StepExtras(TrainConfig(lookahead=True), small_net(), num_classes=5, generator=torch.Generator(), total_steps=10)


def test_mixup_needs_the_cross_entropy_loss():
    with pytest.raises(CnnlabError, match="cross-entropy"):
        StepExtras(TrainConfig(mixup_alpha=0.2, loss="mse"), small_net(), num_classes=5, generator=torch.Generator())


@pytest.mark.slow
def test_training_with_every_extra_resumes_exactly(data_root, tmp_path):
    """LeNet-5 on 256 MNIST images with mixup + cutmix, clipping, EMA and no decay on
    biases: two epochs in one go equal one epoch, a stop, and a resume (weights and EMA)."""
    def config(out):
        return TrainConfig(model="lenet5", data="mnist", data_root=str(data_root), epochs=2, batch_size=32,
                           train_subset=256, val_size=100, mixup_alpha=0.2, cutmix_alpha=1.0, grad_clip=0.5,
                           ema_decay=0.9, ema_every=2, weight_decay=1e-3, norm_bias_decay=False, lr=0.05,
                           eval_test_every_epoch=False, device="cpu", deterministic=True, out=str(out))

    whole = fit(config(tmp_path / "whole"), quiet=True)

    def stop(epoch, record):
        raise StopTraining

    fit(config(tmp_path / "parts"), quiet=True, callbacks=[stop])
    parts = fit(config(None), resume=tmp_path / "parts", quiet=True)
    for name in ("last.safetensors", "ema.safetensors"):
        a, b = load_file(str(tmp_path / "whole" / name)), load_file(str(tmp_path / "parts" / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert whole.final["ema_val_top1_err"] == parts.final["ema_val_top1_err"]
    assert 0 <= whole.final["ema_test_top1_err"] <= 1


def test_the_speedrun_recipe_is_airbenchs_settings_converted_to_a_mean_loss():
    # Jordan 2024 (airbench94): lr 11.5 and weight decay 0.0153 "per 1024 examples", divided by
    # 1024 x (1 + 1 / (1 - momentum)), on a loss summed over the batch of 1024.
    from cnnlab.training.config import build_config

    cfg = build_config("airbench94", "cifar10-jpeg", recipe="cifar-speedrun")
    scale = 1024 * (1 + 1 / (1 - 0.85))
    assert (cfg.batch_size, cfg.momentum, cfg.nesterov, cfg.label_smoothing) == (1024, 0.85, True, 0.2)
    assert cfg.lr == pytest.approx(11.5 / scale * 1024, rel=1e-3)  # the mean loss: x batch size
    assert cfg.lr * cfg.weight_decay == pytest.approx(0.0153 * 1024 / scale, rel=1e-3)  # decay per step
    assert cfg.lookahead and cfg.ema_every == 5 and cfg.ema_decay == pytest.approx(0.95**5, rel=1e-4)
    assert cfg.augment == "airbench" and cfg.val_size == 0
    assert cfg.norm_lr_scale == 64 and cfg.norm_bias_decay  # BatchNorm biases: 64x the rate, the same decay per step


@pytest.mark.parametrize("recipe,checks", [
    ("alexnet-imagenet", {"batch_size": 128, "lr": 0.01, "weight_decay": 5e-4, "schedule": "plateau", "augment": "alexnet"}),
    ("vgg-imagenet", {"batch_size": 256, "lr": 0.01, "weight_decay": 5e-4, "augment": "vgg"}),
    ("googlenet-imagenet", {"gamma": 0.96, "schedule": "step", "augment": "inception"}),
    ("resnet-imagenet", {"batch_size": 256, "lr": 0.1, "weight_decay": 1e-4, "epochs": 90, "augment": "resnet"}),
    ("resnet-imagenet-tv2", {"epochs": 600, "label_smoothing": 0.1, "mixup_alpha": 0.2, "cutmix_alpha": 1.0,
                             "auto_augment": "trivialaugment", "random_erase": 0.1, "norm_bias_decay": False,
                             "schedule": "cosine", "warmup": 5, "reference_batch": 1024}),
    ("resnet18-imagenette", {"epochs": 5, "crop_size": 128, "val_size": 0}),
])
def test_imagenet_recipes_state_the_papers_settings(recipe, checks):
    from cnnlab.training.config import build_config

    config = build_config("resnet50", "imagenet", recipe=recipe)
    for key, value in checks.items():
        assert getattr(config, key) == value, (recipe, key)
    from importlib import resources

    text = (resources.files("cnnlab.training") / "recipes" / f"{recipe}.toml").read_text()
    assert text.startswith("#") and ("Sec." in text or "blog" in text or "fastai" in text)  # each cites its source


def test_resnet18_is_the_default_recipe_for_imagenette():
    from cnnlab.training.config import build_config

    assert build_config("resnet18", "imagenette").recipe == "resnet18-imagenette"


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_the_optimizer_step_is_fused_on_the_cpu_and_steps_as_torch_default_does(name):
    """One kernel per step where torch has it (CPU, CUDA): the same update as torch's default
    foreach step, to float rounding, over groups with and without weight decay. (No bias right
    before a BatchNorm: its gradient is rounding noise, which Adam scales up to full steps.)"""
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.BatchNorm1d(8), nn.Linear(8, 3)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    ours = make_optimizer(parameter_groups(nets[0], weight_decay=0.1, norm_bias_decay=False), name=name, lr=0.05,
                          nesterov=name == "sgd")
    assert ours.defaults["fused"] is True
    groups = parameter_groups(nets[1], weight_decay=0.1, norm_bias_decay=False)
    kind = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    extra = {"momentum": 0.9, "nesterov": True} if name == "sgd" else {"betas": (0.9, 0.999)}
    plain = kind(groups, lr=0.05, weight_decay=0.1, **extra)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    for _ in range(5):
        for net, opt in zip(nets, (ours, plain)):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_an_optimizer_over_a_parameter_torch_cannot_fuse_takes_torchs_default_step():
    meta = nn.Parameter(torch.zeros(3, device="meta"))
    assert make_optimizer([meta], name="sgd", lr=0.1).defaults["fused"] is None
