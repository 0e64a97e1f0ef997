"""`cnnlab experiment`: wiring over cnnlab.experiments."""

from __future__ import annotations

import click

from cnnlab.analysis.table import to_rich
from cnnlab.cli.common import cli, console, device_option


@cli.command("experiment")
@click.argument("name", required=False)
@click.option("--quick", is_flag=True, help="The ~1-2 minute variant (fewer images, epochs and seeds).")
@click.option("--out", default="results", show_default=True, type=click.Path(file_okay=False), help="Writes OUT/NAME/.")
@click.option("--seeds", type=click.IntRange(min=1), help="Seeds (independent runs) per setting; default depends on the experiment and mode.")
@device_option()
@click.option("--data-root", type=click.Path(file_okay=False), help="Data root (else $CNNLAB_DATA, else ~/.cache/cnnlab).")
@click.option("--threads", type=click.IntRange(min=1), help="torch CPU threads (1 is fastest on a busy shared machine).")
def experiment_command(name, quick, out, seeds, device, data_root, threads) -> None:
    """Run the lecture experiment NAME and write OUT/NAME/{report.md,metrics.json,*.png}.

    Without NAME, list the experiments and their claims."""
    import json

    import torch

    from cnnlab.experiments import EXPERIMENTS, Settings, list_experiments, run_experiment

    if not name:
        rows = [[key, EXPERIMENTS[key].claim] for key in list_experiments()]
        console().print(to_rich(["experiment", "claim"], rows, wrap=("claim",), boxed=False))
        return
    if threads:
        torch.set_num_threads(threads)
    folder = run_experiment(name, Settings(quick=quick, seeds=seeds, device=device, data_root=data_root), out=out)
    verdicts = json.loads((folder / "metrics.json").read_text())["verdicts"]
    for v in verdicts:
        click.echo(f"{'HELD' if v['held'] else 'DID NOT HOLD'}: {v['claim']} ({v['measured']})")
    click.echo(f"wrote {folder}/report.md")
