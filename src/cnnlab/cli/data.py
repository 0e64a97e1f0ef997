"""`cnnlab data`: wiring over cnnlab.data."""

from __future__ import annotations

import re

import click

from cnnlab.cli.common import cli, print_rows

# --- data and evaluation -------------------------------------------------------------------


@cli.command("data")
@click.argument("dataset")
@click.option("--data-root", type=click.Path(file_okay=False), help="Data root (else $CNNLAB_DATA, else ~/.cache/cnnlab).")
@click.option("--val-size", type=click.IntRange(min=0), default=None, help="Validation hold-out size.  [default: the dataset's]")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the hold-out, the folds and the samples.")
@click.option("--folds", type=click.IntRange(min=2), default=None, help="Show the sizes of k-fold cross-validation splits of trainval.")
@click.option("--grid", "grid_png", type=click.Path(dir_okay=False), default=None,
              help="PNG of sample images, one row per class.  [default: <dataset>-samples.png]")
@click.option("--no-grid", is_flag=True, help="Do not write the sample grid.")
@click.option("--per-class", type=click.IntRange(min=1), default=8, show_default=True, help="Sample images per class in the grid.")
def data_command(dataset, data_root, val_size, seed, folds, grid_png, no_grid, per_class) -> None:
    """Describe DATASET: classes, image size, channel mean/std, split sizes, a grid of samples.

    DATASET is a registered name (mnist, fashion-mnist, cifar10, cifar100, cifar10-jpeg) or
    folder:/path/to/root for any image folder laid out as root/train/<class>/*.jpg.
    """

    import torch

    from cnnlab.data import get_dataset_spec, kfold_indices, load_dataset

    spec = get_dataset_spec(dataset)
    train = load_dataset(dataset, "train", data_root, val_size=val_size, seed=seed)
    val = load_dataset(dataset, "val", data_root, val_size=val_size, seed=seed)
    test = load_dataset(dataset, "test", data_root)
    c, h, w = train.image_size
    click.echo(f"{dataset}: {spec.description}")
    click.echo(f"  source       {train.source}" + (f"  |  {test.source}" if test.source != train.source else ""))
    click.echo(f"  images       {c}x{h}x{w} (channels x height x width), uint8")
    click.echo(f"  classes      {train.num_classes}: {', '.join(train.classes[:20])}{' ...' if train.num_classes > 20 else ''}")
    click.echo(f"  mean         {', '.join(f'{m:.4f}' for m in train.mean)}  (per channel, [0, 1], training split)")
    click.echo(f"  std          {', '.join(f'{v:.4f}' for v in train.std)}")
    click.echo(f"  splits       train {len(train):,} / val {len(val):,} (seed {seed}) / test {len(test):,}"
               f"  (trainval {len(train) + len(val):,})")
    counts = [torch.bincount(d.labels, minlength=train.num_classes) for d in (train, val, test)]
    rows = [[name, *(f"{int(k[i]):,}" for k in counts)] for i, name in enumerate(train.classes)]
    if train.num_classes <= 20:
        print_rows(["class", "train", "val", "test"], rows, "table", title="images per class")
    if folds:
        trainval = len(train) + len(val)
        sizes = [(len(tr), len(va)) for tr, va in kfold_indices(trainval, folds, seed=seed)]
        print_rows(["fold", "train", "validation"], [[str(i + 1), f"{a:,}", f"{b:,}"] for i, (a, b) in enumerate(sizes)],
                    "table", title=f"{folds}-fold cross-validation of trainval")
        click.echo(f"  (in Python: cnnlab.data.kfold_indices({trainval}, {folds}, seed={seed}) gives the index pairs)")
    if not no_grid:
        from cnnlab.viz.curves import save_figure
        from cnnlab.viz.samples import plot_sample_grid

        out = grid_png or re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset).strip("_") + "-samples.png"
        fig = plot_sample_grid(train.images, train.labels, train.classes, per_class=per_class, seed=seed,
                               title=f"{dataset}: {per_class} random training images per class")
        save_figure(fig, out)
        click.echo(f"sample grid: {out}")



