"""Precision, layout and threads chosen for the machine (issue 16): the capability check, the
measured choice with its margin and warning, the probe's cache, and the old bool settings."""

from __future__ import annotations

import json
import multiprocessing
import os
import time

import pytest
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.training.config import TrainConfig, build_config, parse_setting
from cnnlab.training.device import (
    busy_cores,
    AMP_MODES,
    PROBE_MARGIN,
    Support,
    autocast,
    cached_probe,
    choose_precision,
    choose_threads,
    native_precision,
    probe,
    probe_cache_path,
    probe_images,
)

CPU = torch.device("cpu")
BF16 = Support(torch.bfloat16, "native bf16 (test)")
NONE = Support(None, "no native bf16 (test)")


def conv_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def choose(amp: str, channels_last: bool | None = None, *, support: Support, times: dict[str, float] | None = None,
           model: nn.Module | None = None):
    asked: list[list[str]] = []

    def measure(variants):
        names = [f"{ {None: 'fp32', torch.bfloat16: 'bf16', torch.float16: 'fp16'}[d]}/{'channels-last' if c else 'nchw'}"
                 for d, c in variants]
        asked.append(names)
        if times is None:
            raise AssertionError("nothing should have been measured")
        return times

    precision = choose_precision(amp, channels_last, CPU, model or conv_net(), input_shape=(1, 8, 8), num_classes=3,
                                 family="test", support=support, measure=measure)
    return precision, asked


@pytest.mark.parametrize("flags, dtype", [
    (frozenset({"avx2", "avx512f", "avx512_bf16"}), torch.bfloat16),
    (frozenset({"avx2", "amx_tile", "amx_bf16"}), torch.bfloat16),
    (frozenset({"avx2", "fma"}), None),
])
def test_cpu_bf16_is_native_only_with_avx512_bf16_or_amx(flags, dtype):
    support = native_precision(CPU, flags=flags)
    assert support.dtype == dtype
    assert ("native bf16" in support.why) == (dtype is not None) and "torch kernels" in support.why


@pytest.mark.parametrize("capability, dtype", [((9, 0), torch.bfloat16), ((8, 0), torch.bfloat16),
                                               ((7, 5), torch.float16), ((6, 1), None)])
def test_cuda_bf16_from_ampere_fp16_on_older_tensor_cores(capability, dtype):
    assert native_precision(torch.device("cuda"), capability=capability).dtype == dtype


def test_auto_without_native_support_is_fp32_without_measuring():
    precision, asked = choose("auto", False, support=NONE)
    assert precision.dtype is None and not precision.channels_last and not precision.warning
    assert asked == [] and "no native bf16" in precision.why and precision.name == "fp32"


def test_off_is_fp32_whatever_the_hardware():
    precision, asked = choose("off", False, support=BF16)
    assert precision.dtype is None and asked == []


def test_auto_with_native_support_takes_the_fastest_measured_variant():
    times = {"fp32/nchw": 10.0, "fp32/channels-last": 8.0, "bf16/nchw": 6.0, "bf16/channels-last": 4.0}
    precision, asked = choose("auto", support=BF16, times=times)
    assert asked == [["fp32/nchw", "fp32/channels-last", "bf16/nchw", "bf16/channels-last"]]
    assert precision.dtype == torch.bfloat16 and precision.channels_last
    assert "bf16/channels-last 4.0 ms" in precision.why and precision.describe().startswith("bf16 channels-last (")
    assert not precision.scaled and not precision.warning


def test_auto_keeps_fp32_nchw_unless_another_is_clearly_faster():
    within_noise = 10.0 * (1 - PROBE_MARGIN / 2)
    times = {"fp32/nchw": 10.0, "fp32/channels-last": within_noise, "bf16/nchw": 11.0, "bf16/channels-last": 12.0}
    precision, _ = choose("auto", support=BF16, times=times)
    assert precision.dtype is None and not precision.channels_last


def test_a_forced_layout_and_a_model_without_convolutions_measure_one_layout():
    times = {"fp32/nchw": 10.0, "bf16/nchw": 5.0, "fp32/channels-last": 1.0, "bf16/channels-last": 1.0}
    precision, asked = choose("auto", False, support=BF16, times=times)
    assert asked == [["fp32/nchw", "bf16/nchw"]] and precision.dtype == torch.bfloat16 and not precision.channels_last
    _, asked = choose("auto", support=BF16, times=times, model=nn.Sequential(nn.Flatten(), nn.Linear(64, 3)))
    assert asked == [["fp32/nchw", "bf16/nchw"]]


def test_amp_on_where_bf16_is_emulated_warns_with_the_measured_cost():
    times = {"bf16/nchw": 90.0, "fp32/nchw": 10.0}
    precision, asked = choose("on", False, support=NONE, times=times)
    assert asked == [["bf16/nchw", "fp32/nchw"]]  # the cost is measured against fp32
    assert precision.dtype == torch.bfloat16  # asked for: done, but not silently
    assert "9.0x the time of fp32" in precision.warning and "90.0 ms vs 10.0 ms" in precision.warning
    assert "no native bf16" in precision.warning


def test_amp_on_with_native_support_needs_no_warning_and_fp16_is_scaled():
    precision, asked = choose("on", False, support=BF16)
    assert precision.dtype == torch.bfloat16 and not precision.warning and asked == []
    fp16, _ = choose("on", False, support=Support(torch.float16, "fp16 tensor cores (test)"))
    assert fp16.dtype == torch.float16 and fp16.scaled


def test_unknown_amp_mode_is_refused():
    with pytest.raises(CnnlabError, match="unknown amp mode 'fast'; expected one of auto, on, off"):
        choose("fast", support=BF16)


def test_autocast_takes_the_chosen_dtype():
    x = torch.randn(2, 4)
    layer = nn.Linear(4, 4)
    with autocast(CPU, torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16
    with autocast(CPU, None):
        assert layer(x).dtype == torch.float32
    with autocast(CPU, True):  # the old bool: bf16
        assert layer(x).dtype == torch.bfloat16


def test_probe_times_each_variant_and_leaves_model_and_rngs_alone():
    torch.manual_seed(1)
    model = conv_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    times = probe(model, CPU, input_shape=(1, 8, 8), num_classes=3, images=4, steps=1,
                  variants=[(None, False), (None, True), (torch.bfloat16, False)])
    assert set(times) == {"fp32/nchw", "fp32/channels-last", "bf16/nchw"} and all(t > 0 for t in times.values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # weights and BN statistics
    assert torch.equal(torch.get_rng_state(), rng)


def test_probe_batch_is_capped_by_pixels():
    assert probe_images((3, 32, 32)) == 128
    assert probe_images((3, 224, 224)) == 2
    assert probe_images((1, 1024, 1024)) == 2


def test_probe_results_are_cached_per_key_and_a_damaged_cache_is_reprobed(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path))
    path = probe_cache_path()
    assert path == tmp_path / "probe.json"
    calls = []

    def run():
        calls.append(1)
        return {"fp32/nchw": 3.0}

    assert cached_probe("a", run) == ({"fp32/nchw": 3.0}, False)
    assert cached_probe("a", run) == ({"fp32/nchw": 3.0}, True) and len(calls) == 1
    assert cached_probe("b", run)[1] is False and set(json.loads(path.read_text())) == {"a", "b"}
    path.write_text("{not json")
    assert cached_probe("a", run) == ({"fp32/nchw": 3.0}, False) and len(calls) == 3


@pytest.mark.parametrize("requested, load, threads", [(3, 5.0, 3), (None, 0.1, 2), (None, 1.2, 1), (None, 3.6, 1)])
def test_threads_one_per_idle_core_unless_given(requested, load, threads):
    n, why = choose_threads(requested, cores=2, load=load, current=2)
    assert n == threads and str(n) in why
    if requested is None:
        assert f"{load:.1f} busy" in why


def test_threads_never_exceed_what_torch_was_set_to():
    assert choose_threads(None, cores=8, load=0.0, current=1)[0] == 1


def test_busy_cores_counts_a_spinning_process():
    spinner = multiprocessing.get_context("spawn").Process(target=_spin, args=(3.0,))
    spinner.start()
    try:
        time.sleep(0.5)  # the child has started spinning
        during = busy_cores(0.5)
    finally:
        spinner.join()
    # Whatever else runs (the other test worker), the spinning child kept one core busy.
    assert during is not None and 0.7 <= during <= (os.cpu_count() or 1) + 0.1, during
    n, why = choose_threads(None, current=os.cpu_count() or 1)
    assert "busy over the last 0.2 s" in why and n >= 1


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@pytest.mark.parametrize("old, new", [(True, "on"), (False, "off"), ("true", "on"), ("no", "off"), ("auto", "auto")])
def test_amp_settings_from_before_issue_16_still_load(old, new, tmp_path):
    assert TrainConfig(amp=old).amp == new
    path = tmp_path / "config.json"
    values = TrainConfig().to_dict()
    values.update(amp=old, channels_last=False)  # a run folder's config.json of an older run
    path.write_text(json.dumps(values))
    loaded = TrainConfig.load(path)
    assert loaded.amp == new and loaded.channels_last is False


def test_amp_defaults_and_recipes_and_set_pairs(tmp_path):
    defaults = TrainConfig()
    assert defaults.amp == "auto" and defaults.channels_last is None and AMP_MODES == ("auto", "on", "off")
    recipe = tmp_path / "old.toml"
    recipe.write_text("[train]\namp = true\nchannels_last = true\n")
    config = build_config("lenet5", "mnist", recipe=str(recipe))
    assert config.amp == "on" and config.channels_last is True
    assert TrainConfig(**dict([parse_setting("amp=true")])).amp == "on"
    assert parse_setting("channels_last=none") == ("channels_last", None)
    with pytest.raises(CnnlabError, match="unknown amp 'maybe'; expected one of auto, on, off"):
        TrainConfig(amp="maybe")


def test_the_run_header_says_what_was_chosen_and_amp_on_warns_in_the_log(patterns, tmp_path, monkeypatch):
    import cnnlab.training.device as device_module
    from cnnlab.training.loop import fit

    monkeypatch.setattr(device_module, "native_precision", lambda device: NONE)  # as on an AVX2-only CPU

    def emulated_probe(model, device, *, variants, **kwargs):  # bf16 9x slower, as measured there
        return {device_module._variant(d, c): 90.0 if d is not None else 10.0 for d, c in variants}

    monkeypatch.setattr(device_module, "probe", emulated_probe)
    config = TrainConfig(model="lenet5", data=patterns, epochs=1, batch_size=10, optimizer="sgd", lr=0.05,
                         val_size=0, device="cpu", out=str(tmp_path / "auto"), threads=1)
    fit(config, quiet=True)
    header = (tmp_path / "auto" / "train.log").read_text().splitlines()[0]
    assert "precision fp32 NCHW (--amp auto: no native bf16 (test)" in header and "1 thread (--threads)" in header
    config.amp, config.out = "on", str(tmp_path / "on")
    run = fit(config, quiet=True)
    log = (tmp_path / "on" / "train.log").read_text()
    assert "precision bf16 NCHW (--amp on; measured step time bf16/nchw 90.0 ms" in log.splitlines()[0]
    assert ("--amp on: no native bf16 (test); a training step measured 9.0x the time of fp32 (90.0 ms vs 10.0 ms); "
            "--amp auto would use fp32") in log.splitlines()
    assert run.history[0]["epoch"] == 1


def test_the_trainer_sets_a_data_initialised_first_layer(patterns, tmp_path, monkeypatch):
    # airbench94's whitening filters come from the training images, once, before the first step.
    from cnnlab.models.airbench import Airbench
    from cnnlab.training.loop import prepare

    seen = []
    real = Airbench.init_whitening
    monkeypatch.setattr(Airbench, "init_whitening", lambda self, images: (seen.append(images.shape), real(self, images)))
    config = TrainConfig(model="airbench94", data=patterns, epochs=1, batch_size=10, val_size=0, device="cpu",
                         amp="off", channels_last=False, out=str(tmp_path / "run"))
    setup = prepare(config)
    assert len(seen) == 1 and seen[0][1:] == (3, 32, 32) and seen[0][0] == setup.sizes[0]  # all 30 images (< 5,000)
    w = setup.model.whiten.weight
    assert torch.equal(w[12:], -w[:12]) and not w.requires_grad
