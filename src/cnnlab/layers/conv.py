"""Convolution, normalisation, activation: the unit most networks repeat."""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn


class ConvNormAct(nn.Module):
    """conv -> batch norm -> activation, with submodules named ``conv``, ``bn``, ``act``.

    The names match torchvision's ``BasicConv2d`` (GoogLeNet, Inception), so its checkpoints
    load. ``padding=None`` means "same" for odd kernels: (k - 1) // 2 on each side. The conv
    has no bias when a norm follows, since the norm's shift makes it redundant.
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int | tuple[int, int],
        *,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | None = None,
        groups: int = 1,
        norm: bool = True,
        act: Callable[[], nn.Module] | None = nn.ReLU,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if padding is None:
            k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
            padding = ((k[0] - 1) // 2, (k[1] - 1) // 2)
        self.conv = nn.Conv2d(
            in_chans, out_chans, kernel_size, stride=stride, padding=padding, groups=groups, bias=not norm
        )
        self.bn = nn.BatchNorm2d(out_chans, eps=bn_eps) if norm else nn.Identity()
        self.act = act() if act is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))
