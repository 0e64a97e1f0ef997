"""Distributed training: shards, the linear scaling rule, accumulation, and real multi-process
runs on this CPU (gloo on 127.0.0.1) that must give the single-process answers.

The multi-process tests start torchrun (``python -m torch.distributed.run``) and
``cnnlab train --nproc 2`` as subprocesses on LeNet-5 and 256 MNIST images; each launch has a
hang guard (``LAUNCH_LIMIT``, not a timing assertion) and the runs use a short
``--dist-timeout``, so a broken run fails instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from cnnlab.data import Batches, ImageDataset
from cnnlab.data.sharding import epoch_order
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.training.config import TrainConfig, build_config
from cnnlab.training.distributed import (
    SINGLE,
    World,
    check_sync_bn,
    evaluate_sharded,
    from_writer,
    scale_lr,
)
from cnnlab.training.evaluate import evaluate_model, run_dataset
from cnnlab.training.loop import fit, rank_rng_state, train_one_epoch
from cnnlab.training.optim import make_loss, make_optimizer
from cnnlab.training.run import load_run

WORKER = Path(__file__).with_name("dist_worker.py")
DIST_TIMEOUT = 20  # --dist-timeout of the multi-process runs, seconds
LAUNCH_LIMIT = 600  # hang guard of one launch on a busy 2-core machine (seconds)
# 2 ranks x 32 vs 1 rank x 64 images per step, 8 Adam steps: the gradients differ only in the
# order of the float32 additions (the all-reduce adds the two ranks' means, one process sums
# all 64 terms at once), ~1e-7 relative per step; Adam's division by sqrt(v) can amplify that
# on weights with tiny gradients.
# Measured (LeNet-5, 256 MNIST images, 2 epochs, 1 thread per process): 1.3e-7 with torch's
# foreach Adam (Xeon), 1.19e-6 with the fused Adam step (AMD EPYC, AVX2): Adam divides by the
# root of the squared gradients, so the all-reduce's other summation order shows more there.
WEIGHT_TOL = 5e-6


# --- shards -------------------------------------------------------------------------------


def dataset(n: int) -> ImageDataset:
    images = torch.arange(n, dtype=torch.int64).remainder(256).to(torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return ImageDataset("t", "train", images, torch.arange(n), tuple(str(i) for i in range(n)), (0.0,), (1.0,))


def batch_indices(batches: Batches) -> list[list[int]]:
    # Labels are the dataset positions here, so each batch's labels say which images it holds.
    return [y.tolist() for _, y in batches]


@pytest.mark.parametrize("n", [256, 250, 251])
def test_training_shards_are_disjoint_equal_and_make_up_the_one_process_batches(n):
    data = dataset(n)
    one = Batches(data, 64, shuffle=True, seed=3)
    ranks = [Batches(data, 32, shuffle=True, seed=3, rank=r, world_size=2) for r in range(2)]
    for epoch in (0, 1):
        for b in [one, *ranks]:
            b.set_epoch(epoch)
        parts = [batch_indices(b) for b in ranks]
        assert len(parts[0]) == len(parts[1]) == len(ranks[0])  # the same number of steps on every rank
        flat = [set(sum(p, [])) for p in parts]
        assert not flat[0] & flat[1] and len(flat[0]) == len(flat[1]) == n // 2  # disjoint, equal
        dropped = set(range(n)) - flat[0] - flat[1]
        assert len(dropped) == n % 2  # at most world_size - 1 images left out per epoch: the order's last
        assert dropped <= {epoch_order(n, seed=3, epoch=epoch)[-1].item()}
        for b, single in enumerate(batch_indices(one)):  # the ranks' b-th batches = the global b-th batch
            assert sorted(parts[0][b] + parts[1][b]) == sorted(set(single) - dropped)
    assert epoch_order(n, seed=3, epoch=0).tolist() != epoch_order(n, seed=3, epoch=1).tolist()
    assert epoch_order(n, seed=3, epoch=1).tolist() == epoch_order(n, seed=3, epoch=1).tolist()


@pytest.mark.parametrize("n,world", [(2500, 2), (2500, 3), (500, 2)])
def test_evaluation_shards_are_whole_one_process_batches(n, world):
    data = dataset(n)
    single = batch_indices(Batches(data, 1000))
    ranks = [Batches(data, 1000, rank=r, world_size=world) for r in range(world)]
    for r, b in enumerate(ranks):
        assert batch_indices(b) == single[r::world]  # the same batches, cut the same way
        assert b.indices().tolist() == sum(single[r::world], []) and b.num_images == len(b.indices())
    assert sorted(sum((b.indices().tolist() for b in ranks), [])) == list(range(n))  # every image once


def test_a_distributed_shuffle_needs_a_seed():
    with pytest.raises(ValueError, match="seed"):
        Batches(dataset(8), 2, shuffle=True, rank=0, world_size=2)


# --- the linear scaling rule, the header ------------------------------------------------------


def test_linear_scaling_rule():
    # Goyal et al.: ResNet-50's lr 0.1 for 256 images; 8 ranks x 256 = 2048 -> 0.8, 5 epochs warmup.
    s = scale_lr(0.1, batch_size=256, world_size=8, accum_steps=1, reference_batch=256, warmup=0, epochs=90)
    assert (s.global_batch, s.lr, s.warmup, s.factor) == (2048, 0.8, 5.0, 8.0)
    s = scale_lr(0.1, batch_size=32, world_size=8, accum_steps=1, reference_batch=256, warmup=0, epochs=90)
    assert (s.global_batch, s.lr, s.warmup) == (256, 0.1, 0)  # the recipe's global batch: unchanged
    s = scale_lr(0.1, batch_size=64, world_size=2, accum_steps=2, reference_batch=None, warmup=1.0, epochs=4)
    assert (s.global_batch, s.reference_batch, s.lr, s.warmup) == (256, 128, 0.2, 1.0)  # the config's warmup kept
    s = scale_lr(0.1, batch_size=64, world_size=1, accum_steps=4, reference_batch=None, warmup=0, epochs=4)
    assert s.lr == 0.1  # accumulation alone does not change the rule's reference (one process's batch)
    s = scale_lr(0.1, batch_size=64, world_size=4, accum_steps=1, reference_batch=None, warmup=0, epochs=8)
    assert s.warmup == 2.0  # a quarter of a short run, not 5 epochs
    s = scale_lr(0.1, batch_size=64, world_size=4, accum_steps=1, reference_batch=None, warmup=0, epochs=8, schedule="onecycle")
    assert s.warmup == 0  # one-cycle rises by itself
    text = s.describe(per_rank=64, world_size=4, accum_steps=1, lr=0.1)
    assert "global batch 256 = 64 per rank x 4 rank(s); lr 0.4 = 0.1 x 256/64 (linear scaling rule" in text


def test_the_run_header_states_the_global_batch_and_the_scaled_lr(patterns, tmp_path):
    config = TrainConfig(model="lenet5", data=patterns, epochs=1, batch_size=10, optimizer="sgd", lr=0.05,
                         val_size=0, device="cpu", reference_batch=5, out=str(tmp_path / "r"))
    fit(config, quiet=True)
    header = (tmp_path / "r" / "train.log").read_text().splitlines()[0]
    assert "1 process" in header
    assert "global batch 10 = 10 per rank x 1 rank(s); lr 0.1 = 0.05 x 10/5 (linear scaling rule, Goyal et al. 2017)" in header
    assert "warmup 0.25 epochs" in header


# --- accumulation, the world of one, sync BN, errors -----------------------------------------


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def pattern_batches(batch: int) -> Batches:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (96, 1, 6, 6), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 3, (96,), generator=g)
    data = ImageDataset("t", "train", images, labels, ("a", "b", "c"), (0.5,), (0.25,))
    return Batches(data, batch, shuffle=True, seed=0)


@pytest.mark.parametrize("accum,batch", [(2, 16), (3, 16), (4, 8)])
def test_gradient_accumulation_steps_like_one_big_batch(accum, batch):
    # 96 images: 2 x 16 and 4 x 8 make 32-image steps; 3 x 16 = 48 (the last step: 2 x 16 ... exact too).
    results = []
    for a, b in ((1, accum * batch), (accum, batch)):
        model = small_model()
        optimizer = make_optimizer(model.parameters(), name="sgd", lr=0.1, momentum=0.9)
        stats = train_one_epoch(model, pattern_batches(b), optimizer, make_loss("ce", num_classes=3),
                                lr=lambda step: 0.1, epoch=0, accum_steps=a)
        results.append((torch.cat([p.detach().flatten() for p in model.parameters()]), stats))
    (big, big_stats), (acc, acc_stats) = results
    assert big_stats.images == acc_stats.images == 96
    assert torch.allclose(big, acc, atol=1e-6, rtol=0), (big - acc).abs().max()
    assert not torch.equal(big, small_model_weights())  # it trained


def small_model_weights() -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in small_model().parameters()])


def test_a_torchrun_world_of_one_runs_the_same_code_and_the_same_numbers(patterns, tmp_path, monkeypatch):
    # With torchrun's variables set, fit joins a gloo process group of one, wraps the model in
    # DDP and shards (trivially) its batches: the weights must be bitwise those of a plain process.
    def train(out: str) -> dict:
        config = TrainConfig(model="lenet5", data=patterns, epochs=2, batch_size=10, optimizer="sgd", lr=0.05,
                             val_size=6, device="cpu", out=str(tmp_path / out))
        fit(config, quiet=True)
        return load_file(tmp_path / out / "last.safetensors")

    plain = train("plain")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(name, value)
    ddp = train("ddp")
    assert not torch.distributed.is_initialized()  # fit left no process group behind
    header = (tmp_path / "ddp" / "train.log").read_text().splitlines()[0]
    assert "1 ranks (gloo, 1 node(s) x 1)" in header
    assert plain.keys() == ddp.keys() and all(torch.equal(plain[k], ddp[k]) for k in plain)


def test_evaluation_of_a_world_of_one_is_plain_evaluation():
    model, train = small_model(), pattern_batches(8)
    batches = Batches(ImageDataset("t", "test", train.images, train.labels, ("a", "b", "c"), (0.5,), (0.25,)), 40)
    a, b = evaluate_sharded(model, batches, SINGLE), evaluate_model(model, batches)
    assert (a.top1_err, a.top5_err, a.loss) == (b.top1_err, b.top5_err, b.loss)


def test_sync_bn_needs_cuda_ranks_and_is_a_no_op_alone():
    gloo = World(rank=0, world_size=2, local_world_size=2, backend="gloo")
    with pytest.raises(CnnlabError, match="--sync-bn needs CUDA devices"):
        check_sync_bn(gloo, torch.device("cpu"), True)
    assert "nothing to synchronise" in check_sync_bn(SINGLE, torch.device("cpu"), True)
    assert check_sync_bn(gloo, torch.device("cpu"), False) == ""
    # SyncBatchNorm keeps BatchNorm's parameters and buffers: checkpoints load into the plain model.
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    keys = list(model.state_dict())
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert isinstance(synced[1], nn.SyncBatchNorm) and list(synced.state_dict()) == keys


def test_resuming_with_another_number_of_ranks_is_refused():
    saved = {"ranks": [{"torch": torch.get_rng_state()}] * 2}
    assert rank_rng_state(saved, World(rank=1, world_size=2, backend="gloo")) is saved["ranks"][1]
    with pytest.raises(CnnlabError, match="trained by 2 process\\(es\\) and is resumed by 1; resume it with 2"):
        rank_rng_state(saved, SINGLE)
    old = {"torch": torch.get_rng_state()}  # a run saved before the per-rank states
    assert rank_rng_state(old, SINGLE) is old


@pytest.mark.parametrize("code,status,stderr", [(0, 0, ""), (None, 0, ""), (3, 3, ""), ("error: bad", 1, "error: bad\n")])
def test_a_worker_exits_with_its_status_and_its_output_flushed(code, status, stderr):
    # exit_worker skips the interpreter's shutdown (os._exit): what was printed must still
    # arrive, and the status be the one sys.exit would have given.
    script = ("import sys\nfrom cnnlab.training.distributed import exit_worker\n"
              f"print('unflushed', end='')\nsys.stderr.write('partial')\nexit_worker({code!r})\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (status, "unflushed", "partial" + stderr)


def test_rank_zero_decides_alone_in_a_world_of_one():
    assert from_writer(SINGLE, lambda: 42) == 42
    with pytest.raises(CnnlabError, match="refused"):
        from_writer(SINGLE, lambda: (_ for _ in ()).throw(CnnlabError("refused")))


# --- real runs: 2 processes with gloo on 127.0.0.1 ----------------------------------------------


def tiny_args(data_root: Path, out: Path, *extra: str) -> list[str]:
    """LeNet-5 on 256 MNIST images, 2 epochs, 32 per rank (the global batch 64 that the
    1-rank reference uses), one thread per process."""
    return [
        "train", "lenet5", "--data", "mnist", "--data-root", str(data_root), "--train-subset", "256",
        "--val-size", "500", "--epochs", "2", "--batch-size", "32", "--reference-batch", "64", "--threads", "1",
        "--device", "cpu", "--amp", "off", "--no-eval-test-every-epoch", "--dist-timeout", str(DIST_TIMEOUT), "--out", str(out), "-q",
        *extra,
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(data_root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CNNLAB_TEST_FAULT"}
    return {**env, "OMP_NUM_THREADS": "1", "CNNLAB_DATA": str(data_root), **extra}


def run_all(commands: list[list[str]], env: dict[str, str], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Start the commands together (the nodes of one job), wait for all; on the hang guard,
    stop every process group started here and fail."""
    procs = [subprocess.Popen(c, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True) for c in commands]
    results = []
    try:
        for p, c in zip(procs, commands):
            out, err = p.communicate(timeout=LAUNCH_LIMIT)
            results.append(subprocess.CompletedProcess(c, p.returncode, out, err))
    except subprocess.TimeoutExpired:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        pytest.fail(f"a distributed run did not finish within {LAUNCH_LIMIT} s: {commands}")
    return results


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--max-restarts", "0", *args]


@pytest.fixture(scope="module")
def runs(data_root, tmp_path_factory):
    """The runs the tests below compare (about 4 minutes on 2 busy cores):

    - ``two_nodes``: two torchrun invocations, ``--nnodes 2 --node-rank 0/1``, one rank each,
      static rendezvous on 127.0.0.1: the uninterrupted 2-rank run;
    - ``resumed``: one torchrun invocation of 2 ranks whose rank 0 is SIGKILLed at the start of
      epoch 2, then ``cnnlab train --resume ... --nproc 2`` (the CLI's own launcher);
    - ``one_rank``: the same global batch (64) in this process, no process group.
    """
    base = tmp_path_factory.mktemp("dist")
    port = free_port()
    two_nodes = base / "two-nodes"
    node = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "static", "--master-addr", "127.0.0.1",
            "--master-port", str(port)]
    nodes = run_all([torchrun(*node, "--node-rank", str(i), "-m", "cnnlab", *tiny_args(data_root, two_nodes)) for i in (0, 1)],
                    environment(data_root), base)
    resumed = base / "resumed"
    single_node = ["--nproc-per-node", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:0"]
    (killed,) = run_all([torchrun(*single_node, str(WORKER), *tiny_args(data_root, resumed))],
                        environment(data_root, CNNLAB_TEST_FAULT="kill:0:2"), base)
    (resume,) = run_all([[sys.executable, "-m", "cnnlab", "train", "--resume", str(resumed), "--nproc", "2", "-q"]],
                        environment(data_root), base)
    threads = torch.get_num_threads()
    try:
        config = build_config("lenet5", "mnist", data_root=str(data_root), train_subset=256, val_size=500, epochs=2,
                              batch_size=64, threads=1, device="cpu", amp="off", eval_test_every_epoch=False,
                              out=str(base / "one-rank"))
        fit(config, quiet=True)
    finally:
        torch.set_num_threads(threads)
    return {"base": base, "nodes": nodes, "two_nodes": two_nodes, "killed": killed, "resume": resume,
            "resumed": resumed, "one_rank": base / "one-rank", "data_root": data_root}


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "last.safetensors")


def log_records(run_dir: Path) -> tuple[str, list[dict]]:
    lines = (run_dir / "train.log").read_text().splitlines()
    return lines[0], [json.loads(line) for line in lines if line.startswith("{")]


@pytest.mark.slow
def test_a_two_node_run_trains_with_one_writer(runs):
    for result in runs["nodes"]:
        assert result.returncode == 0, result.stderr[-3000:]
    header, records = log_records(runs["two_nodes"])
    assert "2 ranks (gloo, 2 node(s) x 1)" in header
    assert "global batch 64 = 32 per rank x 2 rank(s), lr 0.005" in header  # the recipe's, at the reference batch: no scaling
    assert [r["epoch"] for r in records] == [1, 2] and records[-1]["iterations"] == 8  # 256 images / 64 per step x 2
    # one writer: the summary line is printed once, by the node that holds rank 0
    assert sum("test top-1 error" in r.stdout for r in runs["nodes"]) == 1


@pytest.mark.slow
def test_a_killed_two_rank_run_resumes_to_the_uninterrupted_weights(runs):
    killed, resume = runs["killed"], runs["resume"]
    assert killed.returncode != 0 and "test fault: rank 0 kill at the start of epoch 2" in killed.stderr
    assert resume.returncode == 0, resume.stderr[-3000:]
    _, records = log_records(runs["resumed"])
    assert [r["epoch"] for r in records] == [1, 2]  # epoch 1 from the killed session, 2 from the resumed one
    a, b = weights(runs["two_nodes"]), weights(runs["resumed"])
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)  # bitwise: same ranks, same order, same reductions


@pytest.mark.slow
def test_two_ranks_end_within_float_tolerance_of_one_rank_with_the_same_global_batch(runs):
    a, b = weights(runs["two_nodes"]), weights(runs["one_rank"])
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"max |2 ranks - 1 rank| after 2 epochs: {worst:.3g}")
    assert worst <= WEIGHT_TOL
    # while training moved the weights far more than that from their (seeded, shared) start
    torch.manual_seed(0)
    start = create_model("lenet5", num_classes=10, activation="relu", pool="max").state_dict()
    assert max(float((start[k] - b[k]).abs().max()) for k in b) > 100 * WEIGHT_TOL


@pytest.mark.slow
def test_sharded_evaluation_gives_exactly_the_one_process_numbers(runs):
    # The 2-rank run's last record (val and test, each sharded by whole batches over 2 ranks
    # and gathered) against one process evaluating the same checkpoint with one thread.
    _, records = log_records(runs["two_nodes"])
    run = load_run(runs["two_nodes"], weights="last")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for split in ("val", "test"):
            data = run_dataset(run, split, data_root=str(runs["data_root"]))
            result = evaluate_model(run.model, Batches(data, run.config.eval_batch_size, pad=run.data_info["pad"]))
            assert records[-1][f"{split}_top1_err"] == result.top1_err
            assert records[-1][f"{split}_top5_err"] == result.top5_err
            assert records[-1][f"{split}_loss"] == result.loss
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_a_rank_that_stops_answering_ends_the_others_with_one_line(data_root, tmp_path):
    args = tiny_args(data_root, tmp_path / "hung")
    args[args.index("--dist-timeout") + 1] = "10"
    single_node = ["--nproc-per-node", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:0"]
    (result,) = run_all([torchrun(*single_node, str(WORKER), *args)], environment(data_root, CNNLAB_TEST_FAULT="hang:1:2"), tmp_path)
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(ours) == 1, result.stderr[-3000:]
    assert ours[0].startswith("error: rank 0 of 2 stopped while") and "did not answer within 10 s" in ours[0]
    assert (tmp_path / "hung" / "last.safetensors").is_file()  # epoch 1's checkpoint is kept


def test_the_launcher_names_the_rank_that_failed_first_on_its_own():
    from types import SimpleNamespace as Failure

    from cnnlab.training.launch import root_cause

    # rank 0 noticed the dead peer and ended (status 1) a second before the agent saw rank 1's 3
    assert root_cause({0: Failure(timestamp=10, exitcode=1), 1: Failure(timestamp=11, exitcode=3)})[0] == 1
    assert root_cause({0: Failure(timestamp=10, exitcode=1), 1: Failure(timestamp=11, exitcode=-9)})[0] == 1
    assert root_cause({0: Failure(timestamp=12, exitcode=1), 1: Failure(timestamp=11, exitcode=1)})[0] == 1  # all cnnlab errors: the earliest
    assert root_cause({2: Failure(timestamp=11, exitcode=-6), 1: Failure(timestamp=11, exitcode=3)})[0] == 1  # a tie: the lower rank


@pytest.mark.slow
def test_a_rank_that_dies_stops_the_others_and_the_launcher_says_which(data_root, tmp_path):
    # The CLI's launcher (torchrun's elastic agent) on the test worker: rank 1 exits with status 3.
    code = ("import sys, torch\n"
            "from cnnlab.training.launch import launch, LaunchError\n"
            "try:\n    launch(sys.argv[1:], nproc=2, device=torch.device('cpu'))\n"
            "except LaunchError as e:\n    print('error:', e, file=sys.stderr); sys.exit(1)\n")
    command = [sys.executable, "-c", code, str(WORKER), *tiny_args(data_root, tmp_path / "died")]
    (result,) = run_all([command], environment(data_root, CNNLAB_TEST_FAULT="exit:1:2"), tmp_path)
    assert result.returncode == 1
    assert "error: rank 1 of 2 exited with code 3 (its message, if any, is above); the other ranks were stopped" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


# --- TensorBoard, torch.compile ------------------------------------------------------------


def test_tensorboard_holds_the_metrics_lr_and_images_per_s(patterns, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import cnnlab.training.tensorboard as tb

    monkeypatch.setattr(tb, "STEP_EVERY", 1)  # a point every step on this tiny run
    config = TrainConfig(model="lenet5", data=patterns, epochs=2, batch_size=10, optimizer="sgd", lr=0.05,
                         val_size=6, device="cpu", tensorboard=True, out=str(tmp_path / "r"))
    run = fit(config, quiet=True)
    events = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/acc", "val/top1_err", "test/top1_err", "epoch/lr", "epoch/images_per_s",
            "step/lr", "step/train_loss", "step/images_per_s"} <= tags
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [r["iterations"] for r in run.history]  # at the global step of each epoch
    assert [e.value for e in loss] == pytest.approx([r["train_loss"] for r in run.history], rel=1e-6)
    assert len(events.Scalars("step/lr")) == run.history[-1]["iterations"]


@pytest.mark.slow
def test_compiled_training_matches_eager(patterns, tmp_path):
    def train(out: str, compile: bool) -> dict:
        config = TrainConfig(model="lenet5", data=patterns, epochs=1, batch_size=10, optimizer="sgd", lr=0.05,
                             val_size=0, device="cpu", amp="off", compile=compile, out=str(tmp_path / out))
        fit(config, quiet=True)
        return load_file(tmp_path / out / "last.safetensors")

    eager, compiled = train("eager", False), train("compiled", True)
    assert "torch.compile" in (tmp_path / "compiled" / "train.log").read_text().splitlines()[0]
    assert eager.keys() == compiled.keys()  # saved from the model itself, not the compiled wrapper
    assert all(torch.allclose(eager[k], compiled[k], atol=1e-5) for k in eager)


def test_the_fp16_loss_scaler_path_steps_like_the_plain_one():
    # The step the loop runs with fp16 autocast (scale -> backward -> unscaled step -> update)
    # against a pass-through scaler: a power-of-two scale is exact on these gradients.
    results = []
    for enabled in (False, True):
        model = small_model()
        optimizer = make_optimizer(model.parameters(), name="sgd", lr=0.1, momentum=0.9)
        scaler = torch.amp.GradScaler("cpu", enabled=enabled, init_scale=2.0**10)
        train_one_epoch(model, pattern_batches(16), optimizer, make_loss("ce", num_classes=3),
                        lr=lambda step: 0.1, epoch=0, scaler=scaler, accum_steps=2)
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        if enabled:
            assert scaler.get_scale() == 2.0**10  # no overflow: every step was taken
    assert torch.equal(results[0], results[1])
