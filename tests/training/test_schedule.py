"""The learning-rate schedule as a pure function of the step and explicit arguments."""

from __future__ import annotations

import inspect
import math

import pytest

from cnnlab.training.config import CHOICES
from cnnlab.training.schedule import SCHEDULES, lr_at


def test_takes_explicit_arguments_not_a_config():
    params = inspect.signature(lr_at).parameters
    assert list(params)[0] == "step"
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for name, p in params.items() if name != "step")
    assert CHOICES["schedule"] is SCHEDULES  # the config and the CLI take the schedule's own list


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_schedule_starts_near_and_never_exceeds_the_peak(schedule):
    lrs = [lr_at(s, schedule=schedule, peak=0.2, total_steps=50) for s in range(50)]
    assert max(lrs) <= 0.2 + 1e-12 and min(lrs) > 0
    assert lrs == [lr_at(s, schedule=schedule, peak=0.2, total_steps=50) for s in range(50)]  # no hidden state


def test_decay_points_are_fractions_of_training():
    short = [lr_at(s, schedule="multistep", peak=1.0, total_steps=100, milestones=(0.5,)) for s in (49, 50)]
    long = [lr_at(s, schedule="multistep", peak=1.0, total_steps=400, milestones=(0.5,)) for s in (199, 200)]
    assert short == long == [1.0, 0.1]
    assert lr_at(99, schedule="step", peak=1.0, total_steps=100, step_size=0.3, gamma=0.5) == 0.5**3


def test_warmup_rises_linearly_then_the_schedule_continues():
    kw = dict(schedule="constant", peak=0.4, total_steps=100, warmup_steps=4)
    assert [lr_at(s, **kw) for s in range(6)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4])
    cos = dict(schedule="cosine", peak=1.0, total_steps=104, warmup_steps=4)
    assert lr_at(4, **cos) == pytest.approx(1.0)  # cosine starts after the warmup
    assert lr_at(54, **cos) == pytest.approx(0.5)
    assert lr_at(104, **cos) == pytest.approx(0.0, abs=1e-12)


def test_onecycle_shape():
    kw = dict(schedule="onecycle", peak=1.0, total_steps=1000)
    assert lr_at(0, **kw) == pytest.approx(1 / 25)
    assert lr_at(300, **kw) == pytest.approx(1.0)
    assert lr_at(1000, **kw) == pytest.approx(1 / 25 / 1e4)
    assert lr_at(650, **kw) == pytest.approx(1 / 25 / 1e4 + (1 - 1 / 25 / 1e4) * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_plateau_is_constant_here_and_unknown_names_fail():
    assert lr_at(99, schedule="plateau", peak=0.3, total_steps=100) == 0.3
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        lr_at(0, schedule="linear", peak=0.1, total_steps=10)
