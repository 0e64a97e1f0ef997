"""`cnnlab bench`'s training rows: the plain loop as reference, the trainer's settings, FLOP accounting."""

from __future__ import annotations

import pytest
import torch

from cnnlab.training import loop
from cnnlab.training.bench import PLAIN, TRAINING_SETTINGS, bench
from cnnlab.training.device import native_precision

FAST = tuple(s for s in TRAINING_SETTINGS if s.name != "train compiled")  # compiling takes a minute on 2 cores


@pytest.mark.slow  # ~10 s idle: six rows, each with its own matmul peak
def test_training_rows_time_the_trainer_next_to_a_plain_loop(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path))  # the auto row's probe cache
    calls = []
    real = loop.train_one_epoch

    def counted(*args, **kwargs):
        calls.append(kwargs.get("amp"))
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train_one_epoch", counted)
    report = bench("lenet5", batch=4, steps=2, settings=(), training=FAST, min_time=0)
    names = [r.setting for r in report.training]
    assert names == [s.name for s in FAST] and names[0] == PLAIN and report.rows == [] and report.train_steps == 2
    plain, eager, channels_last, bf16, auto = report.training
    assert plain.ratio_to_plain == 1.0 and plain.details.startswith("float batches made once")
    assert eager.details == "fp32 NCHW" and channels_last.details == "fp32 channels-last"
    assert auto.details.startswith("--amp auto chose ")
    native = native_precision(torch.device("cpu")).dtype == torch.bfloat16
    assert (bf16.images_per_s is not None) == native and (native or bf16.details.startswith("not native here"))
    assert torch.bfloat16 in calls or not native  # the bf16 row trains under bf16 autocast
    for row in report.training:
        if row.images_per_s is None:
            continue
        assert row.images_per_s > 0 and row.ratio_to_plain > 0 and row.warmup_s > 0
        assert row.gflops / row.images_per_s == pytest.approx(6 * report.gmacs_per_image)  # 3x forward
        assert row.share_of_peak == pytest.approx(row.gflops / row.peak_gflops)
    assert len(calls) >= 4 * 2  # every trainer row ran cnnlab's train_one_epoch (warm-up + timed)


def test_steps_must_be_positive():
    from cnnlab.errors import CnnlabError

    with pytest.raises(CnnlabError, match="batch, images and steps must be >= 1, got 4, 64 and 0"):
        bench("lenet5", batch=4, steps=0, settings=(), training=FAST)
