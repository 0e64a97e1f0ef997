"""An independent, plain-PyTorch airbench94 on the cnnlab data: the oracle for the trainer's
``cifar-speedrun`` recipe.

Keller Jordan 2024, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU", arXiv:2404.00498,
written here from the paper's description in one file that imports nothing of cnnlab but the
dataset loader (the uint8 images and their channel statistics): its own network, optimizer
groups, schedule, lookahead, augmentation and test-time augmentation. Where the trainer's
recipe deviates from the paper (independent random flips, the one-cycle schedule shape, the
whitening bias trained throughout, BatchNorm eps), this follows the paper:

- summed label-smoothed (0.2) loss, nesterov SGD, momentum 0.85, lr 11.5 and weight decay
  0.0153 per 1024 x (1 + 1 / (1 - momentum)) examples; BatchNorm biases at 64x the rate with
  the same decay per step; BatchNorm scales fixed at 1, eps 1e-12, 0.6 of the old statistics
  kept per step;
- lr multiplier piecewise linear through (0, 0.2), (0.2 T, 1), (T, 0) over T steps
  (9.9 epochs of 48 full batches of 1024);
- whitening 2x2 conv from the patch covariance of 5,000 training images (eps 5e-4), weights
  frozen, bias trained for the first 3 epochs only;
- alternating flips (each image's flip is a random bit in epoch 0 and alternates after),
  translations of up to 2 pixels with reflection padding;
- lookahead every 5 steps towards an average whose decay is 0.95^5 x (step / T)^3, and the
  average taken as the final weights;
- evaluation: plain, and the paper's mirror + 1-pixel translate TTA (logits: half the
  mirrored pair, half the mean of the two translated mirrored pairs).

Usage: python benchmarks/airbench_reference.py [--data cifar10-jpeg] [--epochs 9.9] [--threads 2] [--seed 0]
Prints one JSON line per epoch (test accuracy without TTA, wall time) and a final line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

BATCH = 1024
LR, WD, MOMENTUM, BIAS_SCALER, SMOOTHING = 11.5, 0.0153, 0.85, 64.0, 0.2
WIDTHS = (64, 256, 256)
WHITEN_BIAS_EPOCHS = 3
EMA_EVERY, EMA_DECAY = 5, 0.95**5


class BN(nn.BatchNorm2d):
    def __init__(self, n: int) -> None:
        super().__init__(n, eps=1e-12, momentum=0.4)
        self.weight.requires_grad_(False)


def conv(cin: int, cout: int) -> nn.Conv2d:
    c = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    nn.init.dirac_(c.weight.data[:cin])
    return c


def network(whiten_width: int = 24) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(3, whiten_width, 2, bias=True), nn.GELU()]
    cin = whiten_width
    for w in WIDTHS:
        layers += [conv(cin, w), nn.MaxPool2d(2), BN(w), nn.GELU(), conv(w, w), BN(w), nn.GELU()]
        cin = w
    layers += [nn.MaxPool2d(3), nn.Flatten(), nn.Linear(cin, 10, bias=False)]
    return nn.Sequential(*layers)


def forward(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    return net(x) / 9


@torch.no_grad()
def init_whiten(layer: nn.Conv2d, images: torch.Tensor, eps: float = 5e-4) -> None:
    c, h, w = images.shape[1], 2, 2
    patches = images.unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c, h, w).double()
    flat = patches.view(len(patches), -1)
    cov = flat.T @ flat / len(flat)
    eigval, eigvec = torch.linalg.eigh(cov)
    filters = (eigvec.T / (eigval + eps).sqrt().view(-1, 1)).view(-1, c, h, w)
    layer.weight.copy_(torch.cat([filters, -filters]).float())
    layer.bias.zero_()
    layer.weight.requires_grad_(False)


def translate(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    padded = F.pad(x, (pad,) * 4, mode="reflect")
    n, _, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    out = torch.empty_like(x)
    for oy in range(2 * pad + 1):  # one slice per offset pair: 25 copies, no per-image Python
        for ox in range(2 * pad + 1):
            sel = ((dy == oy) & (dx == ox)).nonzero().flatten()
            if len(sel):
                out[sel] = padded[sel, :, oy:oy + h, ox:ox + w]
    return out


def tta_logits(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    def mirror(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * (forward(net, v) + forward(net, v.flip(-1)))

    padded = F.pad(x, (1,) * 4, mode="reflect")
    shifted = 0.5 * (mirror(padded[:, :, :32, :32]) + mirror(padded[:, :, 2:, 2:]))
    return 0.5 * mirror(x) + 0.5 * shifted


@torch.no_grad()
def accuracy(net: nn.Sequential, images: torch.Tensor, labels: torch.Tensor, *, tta: bool) -> float:
    net.eval()
    hits = 0
    for i in range(0, len(images), 1000):
        x = images[i:i + 1000]
        logits = tta_logits(net, x) if tta else forward(net, x)
        hits += int((logits.argmax(1) == labels[i:i + 1000]).sum())
    net.train()
    return hits / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="cifar10-jpeg")
    parser.add_argument("--epochs", type=float, default=9.9)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    from cnnlab.data.datasets import load_dataset  # the images only

    train, test = load_dataset(args.data, "train", val_size=0), load_dataset(args.data, "test")
    mean, std = torch.tensor(train.mean).view(1, 3, 1, 1), torch.tensor(train.std).view(1, 3, 1, 1)
    x_train = (train.images.float() / 255 - mean) / std
    x_test = (test.images.float() / 255 - mean) / std
    y_train, y_test = train.labels, test.labels

    net = network()
    init_whiten(net[0], x_train[:5000])
    ema = network()
    ema.load_state_dict(net.state_dict())

    kilostep = BATCH * (1 + 1 / (1 - MOMENTUM))
    lr, wd = LR / kilostep, WD * BATCH / kilostep
    lr_bias = lr * BIAS_SCALER
    norm_biases = [m.bias for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    ids = {id(p) for p in norm_biases} | {id(net[0].weight)}
    others = [p for p in net.parameters() if id(p) not in ids]
    opt = torch.optim.SGD([dict(params=norm_biases, lr=lr_bias, weight_decay=wd / lr_bias),
                           dict(params=others, lr=lr, weight_decay=wd / lr)], momentum=MOMENTUM, nesterov=True)
    steps_per_epoch = len(x_train) // BATCH
    total = math.ceil(steps_per_epoch * args.epochs)

    def multiplier(step: int) -> float:  # through (0, 0.2), (0.2 T, 1), (T, 0)
        knee = int(0.2 * total)
        return 0.2 + 0.8 * step / knee if step < knee else (total - step) / (total - knee)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, multiplier)
    base_flip = torch.rand(len(x_train), generator=gen) < 0.5
    step, done = 0, False
    for epoch in range(math.ceil(args.epochs)):
        net[0].bias.requires_grad_(epoch < WHITEN_BIAS_EPOCHS)
        order = torch.randperm(len(x_train), generator=gen)
        flips = base_flip ^ bool(epoch % 2)  # alternating: every image mirrored every other epoch
        seen = correct = 0
        for b in range(steps_per_epoch):
            idx = order[b * BATCH:(b + 1) * BATCH]
            x = x_train[idx]
            x = torch.where(flips[idx].view(-1, 1, 1, 1), x.flip(-1), x)
            x = translate(x, 2, gen)
            y = y_train[idx]
            logits = forward(net, x)
            loss = F.cross_entropy(logits, y, label_smoothing=SMOOTHING, reduction="sum")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            if step % EMA_EVERY == 0 or step >= total:
                decay = 1.0 if step >= total else EMA_DECAY * (step / total) ** 3
                with torch.no_grad():
                    for e, p in zip(ema.state_dict().values(), net.state_dict().values()):
                        if p.is_floating_point():
                            e.lerp_(p, 1 - decay)
                            p.copy_(e)
            if step >= total:
                done = True
                break
        record = {"epoch": epoch + 1, "step": step, "train_acc": correct / seen,
                  "test_acc": accuracy(net, x_test, y_test, tta=False), "elapsed_s": time.perf_counter() - t0}
        print(json.dumps(record), flush=True)
        if done:
            break
    final = {"final": True, "epochs": args.epochs, "steps": step, "test_acc": accuracy(net, x_test, y_test, tta=False),
             "test_acc_tta": accuracy(net, x_test, y_test, tta=True), "threads": args.threads,
             "elapsed_s": time.perf_counter() - t0}
    print(json.dumps(final), flush=True)


if __name__ == "__main__":
    main()
