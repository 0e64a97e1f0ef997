"""`cnnlab scratch-train`: wiring over cnnlab.scratch."""

from __future__ import annotations

import click

from cnnlab.cli.common import cli
from cnnlab.scratch import MODELS


@cli.command("scratch-train")
@click.option("--model", "model_name", type=click.Choice(list(MODELS)), default="mlp", show_default=True)
@click.option("--data", "dataset", default="mnist", show_default=True, help="a 10-class 1x28x28 dataset")
@click.option("--epochs", type=int, default=None, help="default: the model's recipe")
@click.option("--batch-size", type=int, default=None, help="images per step; default: the model's recipe")
@click.option("--lr", type=float, default=None, help="learning rate; default: the model's recipe")
@click.option("--momentum", type=float, default=None, help="default: the model's recipe")
@click.option("--weight-decay", type=float, default=None, help="L2 coefficient alpha; default: the model's recipe")
@click.option("--seed", type=int, default=0, show_default=True, help="initialisation and batch order")
@click.option("--data-root", type=click.Path(file_okay=False), default=None, help="default: $CNNLAB_DATA or ~/.cache/cnnlab")
def scratch_train(model_name, dataset, epochs, batch_size, lr, momentum, weight_decay, seed, data_root) -> None:
    """Train the NumPy backpropagation engine (cnnlab.scratch) on the full training set; test on the test set."""
    import numpy as np

    from cnnlab.data import load_dataset
    from cnnlab.scratch.fit import RECIPES, fit, limit_blas_threads, standardise
    from cnnlab.training.progress import TrainProgress

    recipe = RECIPES[model_name]
    train, test = load_dataset(dataset, "trainval", data_root), load_dataset(dataset, "test", data_root)
    if tuple(train.images.shape[1:]) != (1, 28, 28):
        raise click.BadParameter(f"the scratch models take 1x28x28 images; {dataset} has {tuple(train.images.shape[1:])}")
    x_train, x_test = standardise(train.images.numpy(), test.images.numpy())
    model = MODELS[model_name](num_classes=len(train.classes), seed=seed).astype(np.float32)
    limit_blas_threads(1)  # see its docstring: many small products, faster on one thread
    epochs = recipe.epochs if epochs is None else epochs
    with TrainProgress(epochs) as progress:
        progress.log(f"scratch {model_name}: {model.num_params():,} parameters, {len(x_train):,} training images")
        fit(
            model,
            (x_train, train.labels.numpy()),
            (x_test, test.labels.numpy()),
            epochs=epochs,
            batch_size=recipe.batch_size if batch_size is None else batch_size,
            lr=recipe.lr if lr is None else lr,
            momentum=recipe.momentum if momentum is None else momentum,
            weight_decay=recipe.weight_decay if weight_decay is None else weight_decay,
            seed=seed,
            progress=progress,
        )
