"""Layers with their backward pass written out by hand, each next to its forward.

Every layer is a short class with ``forward(x)`` (which caches what the backward needs) and
``backward(grad_out) -> grad_in``, which also sets ``p.grad`` on the layer's parameters
(set, not accumulated: one backward per forward). Arrays are NumPy, images are (B, C, H, W).

Notation in the comments follows the lectures: ``a = w . x + b`` is a unit's pre-activation,
``z = h(a)`` its activation, ``delta = dE/da``; for a weight, ``dE/dw = delta * input``.
The backward pass of each layer is the chain rule: grad_in = (d output / d input)^T grad_out.

PyTorch computes the same numbers: tests/scratch/ check every layer against it in float64.
Two layout differences: ``Linear.weight`` is (in, out) as in the lectures' ``x W + b``
(PyTorch stores the transpose); ``Conv2d.weight`` is (out, in, kh, kw) as in PyTorch.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnnlab.scratch.init import he_normal

Init = Callable[[tuple[int, ...], int, np.random.Generator], np.ndarray]


class Parameter:
    """A trainable array and its gradient; ``decay`` marks weights that L2 weight decay applies to."""

    def __init__(self, data: np.ndarray, *, decay: bool = False) -> None:
        self.data = data
        self.grad = np.zeros_like(data)
        self.decay = decay  # weights yes; biases and BatchNorm's gamma/beta no (the lectures' E + alpha/2 w.w)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Layer:
    """Base class: a layer maps x to y in ``forward`` and dE/dy to dE/dx in ``backward``."""

    training = True  # Dropout and BatchNorm behave differently in training and inference

    def params(self) -> dict[str, Parameter]:
        return {}

    def buffers(self) -> dict[str, np.ndarray]:
        """Non-trainable state (BatchNorm's running statistics)."""
        return {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def __repr__(self) -> str:
        return type(self).__name__ + "()"


# --- fully connected ---------------------------------------------------------------------------


class Linear(Layer):
    """y = x W + b, W of shape (in, out).

    backward: with delta = dE/dy (B, out),
        dE/dW = x^T delta      (dE/dw_ij = sum_n x_ni delta_nj: "delta times input")
        dE/db = sum_n delta_n
        dE/dx = delta W^T      (the hidden-layer rule's sum_k w_kj delta_k)
    """

    def __init__(self, in_features: int, out_features: int, *, rng: np.random.Generator, init: Init = he_normal):
        self.weight = Parameter(init((in_features, out_features), in_features, rng), decay=True)
        self.bias = Parameter(np.zeros(out_features))

    def params(self) -> dict[str, Parameter]:
        return {"weight": self.weight, "bias": self.bias}

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.weight.data + self.bias.data

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        self.weight.grad = self.x.T @ grad_out
        self.bias.grad = grad_out.sum(axis=0)
        return grad_out @ self.weight.data.T

    def __repr__(self) -> str:
        return f"Linear({self.weight.data.shape[0]}, {self.weight.data.shape[1]})"


# --- convolution and pooling -------------------------------------------------------------------


def _out_size(size: int, k: int, stride: int) -> int:
    return (size - k) // stride + 1


def _shifted(x: np.ndarray, k: int, stride: int) -> np.ndarray:
    """The k*k strided views of x (N0, N1, H, W) that a k x k window at ``stride`` reads, stacked:
    entry [i, j] is the (N0, N1, Ho, Wo) array of every window's pixel at kernel offset (i, j)."""
    ho, wo = _out_size(x.shape[2], k, stride), _out_size(x.shape[3], k, stride)
    return np.stack([
        np.stack([x[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride] for j in range(k)])
        for i in range(k)
    ])  # (k, k, N0, N1, Ho, Wo)


def _unshift(grad_shifted: np.ndarray, shape: tuple[int, ...], stride: int) -> np.ndarray:
    """The adjoint of ``_shifted`` (col2im): add the gradient at each kernel offset back onto the
    pixels it was read from. The loop runs over the k*k offsets, not over pixels."""
    k, _, _, _, ho, wo = grad_shifted.shape
    grad = np.zeros(shape, dtype=grad_shifted.dtype)
    for i in range(k):
        for j in range(k):
            grad[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride] += grad_shifted[i, j]
    return grad


class Conv2d(Layer):
    """Cross-correlation, as in every deep-learning library: y[o] = sum_c W[o, c] * x[c] + b[o].

    im2col: the k x k windows of the zero-padded input become the columns of a matrix
    ``cols`` (C*k*k, B*Ho*Wo), and the convolution is one matrix product with the weights
    (O, C*k*k): a Linear layer applied at every position with shared weights. So the backward
    is Linear's, summed over positions:
        dE/dW = delta cols^T,  dE/db = sum of delta,  dE/dcols = W^T delta,
    and dE/dx adds each window's dE/dcols back onto the pixels it was cut from (col2im).
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        rng: np.random.Generator,
        init: Init = he_normal,
    ):
        fan_in = in_chans * kernel_size * kernel_size
        self.weight = Parameter(init((out_chans, in_chans, kernel_size, kernel_size), fan_in, rng), decay=True)
        self.bias = Parameter(np.zeros(out_chans))
        self.k, self.stride, self.padding = kernel_size, stride, padding

    def params(self) -> dict[str, Parameter]:
        return {"weight": self.weight, "bias": self.bias}

    def forward(self, x: np.ndarray) -> np.ndarray:
        p, s = self.padding, self.stride
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x
        win = sliding_window_view(xp, (self.k, self.k), axis=(2, 3))[:, :, ::s, ::s]  # (B, C, Ho, Wo, k, k) view
        b, c, ho, wo, k, _ = win.shape
        self.xp_shape = xp.shape
        # The im2col copy. Rows ordered (C, k, k), columns (B, Ho, Wo): rows of pixels stay contiguous.
        self.cols = win.transpose(1, 4, 5, 0, 2, 3).reshape(c * k * k, b * ho * wo)
        w = self.weight.data.reshape(len(self.weight.data), -1)  # (O, C*k*k)
        y = w @ self.cols + self.bias.data[:, None]  # (O, B*Ho*Wo)
        return y.reshape(-1, b, ho, wo).transpose(1, 0, 2, 3)  # (B, O, Ho, Wo)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        b, o, ho, wo = grad_out.shape
        delta = grad_out.transpose(1, 0, 2, 3).reshape(o, b * ho * wo)  # one column per output position
        w = self.weight.data.reshape(o, -1)
        self.weight.grad = (self.cols @ delta.T).T.reshape(self.weight.data.shape)
        self.bias.grad = delta.sum(axis=1)
        c, k = self.weight.data.shape[1], self.k
        grad_cols = (w.T @ delta).reshape(c, k, k, b, ho, wo).transpose(1, 2, 0, 3, 4, 5)  # (k, k, C, B, Ho, Wo)
        _, _, hp, wp = self.xp_shape
        grad_xp = _unshift(grad_cols, (c, b, hp, wp), self.stride).transpose(1, 0, 2, 3)  # (B, C, Hp, Wp)
        p = self.padding
        return grad_xp[:, :, p : hp - p, p : wp - p] if p else grad_xp

    def __repr__(self) -> str:
        o, c, k, _ = self.weight.data.shape
        return f"Conv2d({c}, {o}, {k}, stride={self.stride}, padding={self.padding})"


class MaxPool2d(Layer):
    """y = max over each k x k window. backward: the gradient goes to the max's position only."""

    def __init__(self, kernel_size: int, *, stride: int | None = None):
        self.k, self.stride = kernel_size, stride or kernel_size

    def forward(self, x: np.ndarray) -> np.ndarray:
        shifted = _shifted(x, self.k, self.stride)  # (k, k, B, C, Ho, Wo)
        flat = shifted.reshape(self.k * self.k, *shifted.shape[2:])
        self.x_shape = x.shape
        self.argmax = flat.argmax(axis=0)  # (B, C, Ho, Wo): which kernel offset won (the first, on ties)
        return np.take_along_axis(flat, self.argmax[None], axis=0)[0]

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        k = self.k
        winner = self.argmax == np.arange(k * k).reshape(k, k, 1, 1, 1, 1)  # (k, k, B, C, Ho, Wo)
        return _unshift(winner * grad_out, self.x_shape, self.stride)

    def __repr__(self) -> str:
        return f"MaxPool2d({self.k}, stride={self.stride})"


class AvgPool2d(Layer):
    """y = mean over each k x k window. backward: each input of a window gets grad / k^2."""

    def __init__(self, kernel_size: int, *, stride: int | None = None):
        self.k, self.stride = kernel_size, stride or kernel_size

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x_shape = x.shape
        return _shifted(x, self.k, self.stride).mean(axis=(0, 1))

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        k = self.k
        grad_shifted = np.broadcast_to(grad_out / (k * k), (k, k, *grad_out.shape))
        return _unshift(grad_shifted, self.x_shape, self.stride)

    def __repr__(self) -> str:
        return f"AvgPool2d({self.k}, stride={self.stride})"


# --- activations: z = h(a), so dE/da = h'(a) * dE/dz ------------------------------------------------


class ReLU(Layer):
    """h(a) = max(0, a); h'(a) = 1 where a > 0, else 0."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.mask = x > 0
        return x * self.mask

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * self.mask


class Sigmoid(Layer):
    """h(a) = 1 / (1 + exp(-a)); h'(a) = h(a) (1 - h(a))."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        # exp of a non-positive number only, so no overflow warnings for large |a|
        e = np.exp(-np.abs(x))
        self.y = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
        return self.y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * self.y * (1 - self.y)


class Tanh(Layer):
    """h(a) = tanh(a); h'(a) = 1 - h(a)^2."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.y = np.tanh(x)
        return self.y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * (1 - self.y * self.y)


# --- normalisation and regularisation -------------------------------------------------------


class BatchNorm(Layer):
    """Batch normalisation (Ioffe & Szegedy 2015, https://arxiv.org/abs/1502.03167), Algorithm 1.

    Per channel, over the batch (and, for images, all positions):
        mu = mean(x), var = mean((x - mu)^2), xhat = (x - mu) / sqrt(var + eps), y = gamma xhat + beta.
    Training normalises with the batch's statistics and updates the running ones
    (running = (1 - momentum) running + momentum batch; the running variance uses the unbiased
    m/(m-1) estimate, as PyTorch does); inference normalises with the running statistics.

    backward (training), with g = dE/dxhat = gamma * dE/dy and m values per channel:
        dE/dx = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(var + eps)
    The two mean terms are the paths through mu and var; in inference they vanish.
    """

    def __init__(self, num_features: int, *, eps: float = 1e-5, momentum: float = 0.1):
        self.gamma = Parameter(np.ones(num_features))
        self.beta = Parameter(np.zeros(num_features))
        self.running_mean = np.zeros(num_features)
        self.running_var = np.ones(num_features)
        self.eps, self.momentum = eps, momentum

    def params(self) -> dict[str, Parameter]:
        return {"gamma": self.gamma, "beta": self.beta}

    def buffers(self) -> dict[str, np.ndarray]:
        return {"running_mean": self.running_mean, "running_var": self.running_var}

    def _axes_and_shape(self, x: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Axes to reduce over and the broadcast shape of per-channel statistics."""
        if x.ndim == 2:  # BatchNorm1d: (B, C)
            return (0,), (1, -1)
        return (0, 2, 3), (1, -1, 1, 1)  # BatchNorm2d: (B, C, H, W)

    def forward(self, x: np.ndarray) -> np.ndarray:
        axes, shape = self._axes_and_shape(x)
        if self.training:
            mu, var = x.mean(axis=axes), x.var(axis=axes)
            m = x.size // len(mu)
            self.running_mean[...] = (1 - self.momentum) * self.running_mean + self.momentum * mu
            self.running_var[...] = (1 - self.momentum) * self.running_var + self.momentum * var * m / (m - 1)
        else:
            mu, var = self.running_mean, self.running_var
        self.inv_std = (1 / np.sqrt(var + self.eps)).reshape(shape)
        self.xhat = (x - mu.reshape(shape)) * self.inv_std
        return self.gamma.data.reshape(shape) * self.xhat + self.beta.data.reshape(shape)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        axes, shape = self._axes_and_shape(grad_out)
        self.gamma.grad = (grad_out * self.xhat).sum(axis=axes)
        self.beta.grad = grad_out.sum(axis=axes)
        g = grad_out * self.gamma.data.reshape(shape)  # dE/dxhat
        if not self.training:  # running statistics are constants
            return g * self.inv_std
        g_mean = g.mean(axis=axes, keepdims=True)
        gx_mean = (g * self.xhat).mean(axis=axes, keepdims=True)
        return (g - g_mean - self.xhat * gx_mean) * self.inv_std

    def __repr__(self) -> str:
        return f"BatchNorm({len(self.gamma.data)})"


BatchNorm1d = BatchNorm  # (B, C) inputs
BatchNorm2d = BatchNorm  # (B, C, H, W) inputs


class Dropout(Layer):
    """Inverted dropout (Srivastava et al. 2014): in training, zero each unit with probability p
    and scale the survivors by 1/(1-p), so inference is the identity. backward: the same mask."""

    def __init__(self, p: float = 0.5, *, rng: np.random.Generator):
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p, self.rng = p, rng

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0:
            self.mask = None
            return x
        self.mask = (self.rng.random(x.shape) >= self.p).astype(x.dtype) / (1 - self.p)
        return x * self.mask

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out if self.mask is None else grad_out * self.mask

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"


class Flatten(Layer):
    """(B, C, H, W) -> (B, C*H*W); backward reshapes the gradient back."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x_shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out.reshape(self.x_shape)
