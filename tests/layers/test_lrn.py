import pytest
import torch
from torch import nn

from cnnlab.layers.lrn import LocalResponseNorm
from tests.helpers import n_params


def naive_lrn(x, n, alpha, beta, k):
    # The paper's formula, Section 3.3 of Krizhevsky et al. 2012, one channel at a time.
    C = x.shape[1]
    out = torch.empty_like(x)
    for i in range(C):
        lo, hi = max(0, i - n // 2), min(C - 1, i + n // 2)
        s = (x[:, lo : hi + 1] ** 2).sum(1)
        out[:, i] = x[:, i] / (k + alpha * s) ** beta
    return out


def test_matches_paper_formula():
    torch.manual_seed(0)
    x = torch.randn(2, 11, 4, 3) * 10
    got = LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(x)
    torch.testing.assert_close(got, naive_lrn(x, 5, 1e-4, 0.75, 2.0))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7])
def test_equals_torch_lrn_with_alpha_times_n(n):
    # PyTorch's alpha multiplies the window *mean*: the paper's alpha becomes n * alpha there.
    torch.manual_seed(n)
    x = torch.randn(3, 9, 5, 5) * 20
    ours = LocalResponseNorm(n, alpha=1e-4, beta=0.75, k=2.0)(x)
    theirs = nn.LocalResponseNorm(n, alpha=n * 1e-4, beta=0.75, k=2.0)(x)
    torch.testing.assert_close(ours, theirs)
    # ... and passing the paper's alpha unchanged gives a different (weaker) normalisation.
    if n > 1:
        assert not torch.allclose(ours, nn.LocalResponseNorm(n, alpha=1e-4, beta=0.75, k=2.0)(x))


def test_no_parameters_grad_and_shapes():
    lrn = LocalResponseNorm()
    assert n_params(lrn) == 0
    x = torch.randn(2, 6, 3, 3, requires_grad=True)
    y = lrn(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert LocalResponseNorm()(torch.randn(2, 6, 10)).shape == (2, 6, 10)  # (B, C, L) works too


def test_bad_size():
    with pytest.raises(ValueError, match="size"):
        LocalResponseNorm(0)
