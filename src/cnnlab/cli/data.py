"""`cnnlab data`: wiring over cnnlab.data (statistics from cnnlab.data.stats)."""

from __future__ import annotations

import click

from cnnlab.cli.common import cli, print_table
from cnnlab.data.files import safe_name


class DataGroup(click.Group):
    """``cnnlab data DATASET`` describes a dataset (the ``describe`` command, named or not);
    ``cnnlab data pack ...`` packs one into shards."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["describe", *args]
        return super().parse_args(ctx, args)


@cli.group("data", cls=DataGroup)
def data_group() -> None:
    """Describe a dataset (cnnlab data DATASET), or pack one into tar shards (cnnlab data pack)."""


@data_group.command("pack")
@click.argument("dataset")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New or empty folder for the shards.")
@click.option("--shard-size", default="1GB", show_default=True, help="Largest shard file, e.g. 1GB, 500MB.")
@click.option("--data-root", type=click.Path(file_okay=False), help="Data root (else $CNNLAB_DATA, else ~/.cache/cnnlab).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the order images are packed in.")
def pack_command(dataset, out, shard_size, data_root, seed) -> None:
    """Pack image-folder DATASET (imagenet, imagenette, folder:PATH) into WebDataset tar shards.

    Train on them with --data shards:OUT (streamed when they do not fit the memory budget, or
    with --data-mode stream): each rank reads its own share of the shards."""
    from cnnlab.data.shards import pack
    from cnnlab.data.stream import format_size, parse_size

    report = pack(dataset, out, shard_size=parse_size(shard_size), root=data_root, seed=seed)
    parts = ", ".join(f"{split} {report.images[split]:,} images in {report.shards[split]} shard(s)" for split in report.shards)
    click.echo(f"{dataset}: {parts}, {format_size(report.bytes)} in {report.out} (index.json lists them)")


@data_group.command("describe")
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
    from cnnlab.data.stats import dataset_stats, kfold_sizes

    stats = dataset_stats(dataset, data_root, val_size=val_size, seed=seed)
    c, h, w = stats.image_size
    n = stats.sizes
    classes = stats.classes
    click.echo(f"{dataset}: {stats.description}")
    click.echo(f"  source       {'  |  '.join(stats.sources)}")
    click.echo(f"  images       {c}x{h}x{w} (channels x height x width), uint8")
    click.echo(f"  classes      {len(classes)}: {', '.join(classes[:20])}{' ...' if len(classes) > 20 else ''}")
    click.echo(f"  mean         {', '.join(f'{m:.4f}' for m in stats.mean)}  (per channel, [0, 1], training split)")
    click.echo(f"  std          {', '.join(f'{v:.4f}' for v in stats.std)}")
    click.echo(f"  splits       train {n['train']:,} / val {n['val']:,} (seed {seed}) / test {n['test']:,}"
               f"  (trainval {n['trainval']:,})")
    if len(classes) <= 20:
        counts = [stats.class_counts[split] for split in ("train", "val", "test")]
        rows = [[name, *(f"{k[i]:,}" for k in counts)] for i, name in enumerate(classes)]
        print_table(["class", "train", "val", "test"], rows, title="images per class", right=("train", "val", "test"))
    if folds:
        sizes = kfold_sizes(n["trainval"], folds, seed=seed)
        print_table(["fold", "train", "validation"], [[str(i + 1), f"{a:,}", f"{b:,}"] for i, (a, b) in enumerate(sizes)],
                    title=f"{folds}-fold cross-validation of trainval", right=("train", "validation"))
        click.echo(f"  (in Python: cnnlab.data.kfold_indices({n['trainval']}, {folds}, seed={seed}) gives the index pairs)")
    if not no_grid:
        from cnnlab.data import load_dataset
        from cnnlab.viz.curves import save_figure
        from cnnlab.viz.samples import plot_sample_grid

        train = load_dataset(dataset, "train", data_root, val_size=val_size, seed=seed)
        out = grid_png or safe_name(dataset) + "-samples.png"
        fig = plot_sample_grid(train.images, train.labels, train.classes, per_class=per_class, seed=seed,
                               title=f"{dataset}: {per_class} random training images per class")
        save_figure(fig, out)
        click.echo(f"sample grid: {out}")
