"""Fitting the toy classifiers of ``cnnlab viz boundary`` (cnnlab.training.toy)."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data.toy import make_toy
from cnnlab.training.toy import fit_toy_classifier, parse_hidden_layouts


def _accuracy(model, x, y) -> float:
    return (model(x).argmax(1) == y).float().mean().item()


def test_hidden_layers_make_xor_separable_and_blobs_need_none():
    x, y = make_toy("xor", 200, seed=0)
    perceptron = fit_toy_classifier(x, y, (), steps=200, lr=0.1)
    mlp = fit_toy_classifier(x, y, (8,), steps=200, lr=0.1)
    assert _accuracy(perceptron, x, y) < 0.8  # a line cannot separate XOR (at best 3 of 4 clusters)
    assert _accuracy(mlp, x, y) > 0.95
    xb, yb = make_toy("blobs", 200, seed=0)
    assert _accuracy(fit_toy_classifier(xb, yb, (), steps=200, lr=0.1), xb, yb) > 0.97


def test_fit_is_seeded_returns_eval_mode_and_checks_widths():
    x, y = make_toy("moons", 100)
    a = fit_toy_classifier(x, y, (4,), steps=20, seed=3)
    b = fit_toy_classifier(x, y, (4,), steps=20, seed=3)
    assert not a.training
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match="hidden widths"):
        fit_toy_classifier(x, y, (0,))


def test_parse_hidden_layouts():
    assert parse_hidden_layouts("0,8,32x32") == [(), (8,), (32, 32)]
    assert parse_hidden_layouts(" 4x0x2 ") == [(4, 2)]  # zero widths are dropped
    with pytest.raises(ValueError, match="0,8,32x32"):
        parse_hidden_layouts("0,a")
    with pytest.raises(ValueError, match="at least one"):
        parse_hidden_layouts(",")
