"""Throughput of the batch augmentation presets against a per-sample Pillow pipeline.

Each preset runs on whole batches of tensors (``cnnlab.data.augment``); the reference does the
same operations one image at a time with Pillow and NumPy, the way a classic Dataset +
DataLoader pipeline does (without worker processes). Both start from uint8 images in memory
and end with float images in [0, 1]. A benchmark, not a test: the numbers depend on the
machine and its load.

    .venv/bin/python benchmarks/bench_augment.py [--repeats 3] [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image, ImageOps

from cnnlab.data.augment import IMAGENET_PCA_EIGVAL, IMAGENET_PCA_EIGVEC, get_preset


def pillow_shift(img: Image.Image, rng: np.random.Generator, pad: int, size: int, flip: bool) -> Image.Image:
    """Zero-pad by ``pad``, random ``size`` crop, optional random mirror."""
    if pad:
        img = ImageOps.expand(img, border=pad, fill=0)
    w, h = img.size
    top, left = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    img = img.crop((left, top, left + size, top + size))
    if flip and rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return img


def pillow_pipeline(name: str, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The preset's operations, image by image: uint8 (N, H, W, C) -> float32 (N, C, h, w)."""
    eigval, eigvec = np.array(IMAGENET_PCA_EIGVAL), np.array(IMAGENET_PCA_EIGVEC)
    out = []
    for a in images:
        img = Image.fromarray(a.squeeze(-1) if a.shape[-1] == 1 else a)
        if name == "mnist":
            img = pillow_shift(img, rng, 2, a.shape[0], flip=False)
        elif name == "cifar":
            img = pillow_shift(img, rng, 4, a.shape[0], flip=True)
        elif name == "alexnet":
            img = pillow_shift(img, rng, 0, 224, flip=True)
        x = np.asarray(img, dtype=np.float32) / 255.0
        x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
        if name == "alexnet":
            x = x + (eigvec @ (rng.normal(0, 0.1, 3) * eigval)).astype(np.float32)[:, None, None]
        out.append(x)
    return np.stack(out)


CASES = {  # preset: (number of images, channels, size, batch size)
    "mnist": (4096, 1, 28, 256),
    "cifar": (4096, 3, 32, 128),
    "alexnet": (256, 3, 256, 64),
}


def bench(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: the Pillow reference uses one core too)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    print(f"{'preset':<9} {'images':>7} {'size':>9} {'batch img/s':>12} {'Pillow img/s':>13} {'ratio':>7}")
    for name, (n, c, size, batch) in CASES.items():
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (n, size, size, c), dtype=np.uint8)
        tensors = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
        aug = get_preset(name)
        g = torch.Generator().manual_seed(0)

        def batched() -> None:
            for i in range(0, n, batch):
                aug(tensors[i : i + batch].float().div_(255.0), g)
            if device.type == "cuda":
                torch.cuda.synchronize()

        t_batch = bench(batched, args.repeats)
        t_pil = bench(lambda: pillow_pipeline(name, images, rng), args.repeats)
        print(f"{name:<9} {n:>7,} {f'{c}x{size}x{size}':>9} {n / t_batch:>12,.0f} {n / t_pil:>13,.0f} {t_pil / t_batch:>6.1f}x")


if __name__ == "__main__":
    main()
