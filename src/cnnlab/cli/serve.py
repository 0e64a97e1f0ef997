"""`cnnlab serve`: wiring over cnnlab.serve (a local web page over trained runs)."""

from __future__ import annotations

import ipaddress

import click

from cnnlab.cli.common import cli, data_root_option, weights_source_option
from cnnlab.errors import CnnlabError

DEMO_HINT = "train the demo model first: `make demo` (or `cnnlab train lenet5 --data mnist`)"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@cli.command("serve")
@click.argument("runs", nargs=-1, type=click.Path(file_okay=False))
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Serve every run folder directly under this folder (when no RUN is given).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback makes the page reachable by others.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@click.option("--max-upload-mb", default=10.0, show_default=True, type=click.FloatRange(0.001, 1024),
              help="Largest upload accepted (413 beyond).")
@click.option("--workers", "running", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Inference jobs computing at once; the rest queue.")
@click.option("--model", "model", default=None, metavar="MODEL",
              help="Also serve this registered model with --weights, without a run folder (then --runs-dir is not read).")
@weights_source_option(help="--model's weights: a .pth/.safetensors path, URL, run folder, or torchvision; fed with "
                            "their own preprocessing, 1,000 outputs named by ImageNet's classes.")
@click.option("--data", "-d", default=None, help="--model's test images: an image-folder dataset (imagenette, folder:PATH).")
@data_root_option()
def serve_command(runs: tuple[str, ...], runs_dir: str, host: str, port: int, max_upload_mb: float, running: int,
                  model: str | None, weights: str | None, data: str | None, data_root: str | None) -> None:
    """Look inside trained networks in the browser: draw, upload or pick a test image; see the
    class probabilities, every layer's activation maps, receptive fields, Grad-CAM, occlusion.

    RUN: run folders to serve (default: all under --runs-dir, unless --model is given).
    --model M --weights W: a registered model with weights, no run folder (served as
    M-<weights name>). Nothing is fetched from the internet but the weights of a URL; the
    page is served from the package.
    """
    from cnnlab.models import get_model_info
    from cnnlab.serve import Limits, create_app
    from cnnlab.serve.app import bind, make_server
    from cnnlab.serve.inference import ServedWeights, find_runs, unique_ids, weights_id

    if (model is None) != (weights is None):
        raise CnnlabError("--model and --weights go together: cnnlab serve --model resnet18 --weights torchvision")
    if data is not None and model is None:
        raise CnnlabError("--data gives --model's test images; run folders serve their own")
    models = []
    if model is not None:
        name = get_model_info(model).name  # an unknown name fails with the closest ones
        served = ServedWeights(weights_id(name, weights), name, weights, data=data, data_root=data_root)
        served.load()  # a file that does not fit fails here, in one line, not on the first request
        if data is not None:
            served.test_set()
        models.append(served)
    paths, warnings = find_runs(list(runs), runs_dir) if runs or model is None else ([], [])
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    if not paths and not models:
        raise CnnlabError(f"no run folders under {runs_dir}/; {DEMO_HINT}")
    limits = Limits(max_upload_bytes=int(max_upload_mb * 1024 * 1024), running=running)
    loopback = is_loopback(host)
    app = create_app(paths, models=models, limits=limits, allowed_hosts=None if loopback else ["*"])
    for m in models:
        click.echo(f"  {m.id}  ({m.label}; {m.preprocessing})")
    for rid, path in zip(unique_ids(paths, taken=tuple(m.id for m in models)), paths):
        click.echo(f"  {rid}  ({path})")
    sock = bind(host, port)
    port = sock.getsockname()[1]
    if not loopback:
        click.echo(f"warning: listening on {host}: anyone who can reach this machine on port {port} can use the page "
                   "and the models; use --host 127.0.0.1 to keep it local", err=True)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
    click.echo(f"serving {len(paths) + len(models)} run(s) at http://{shown}:{port}/  (Ctrl-C stops)")
    make_server(app).run(sockets=[sock])
