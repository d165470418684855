"""The CPU 2-D convolution that the backend pass swaps in for ``nn.Conv2d``: the same module run in
the channels-last layout.

oneDNN's CPU convolutions work on channels-last (NHWC) data; handed PyTorch's default NCHW
tensors they reorder input, weight and output on every call. Kept channels-last from one
convolution to the next (batch norms, activations and residual sums keep a tensor's layout), a
ResNet-50 at 800 x 1066 ran 1.3x faster in float32 and about 4x in bfloat16 on this machine's CPU
(benchmarks/RESULTS.md). So :class:`CpuConv2d` keeps its weight channels-last (laid out once, by
:func:`to_channels_last` when the backend pass swaps it in) and makes its input channels-last
(free when the previous convolution's output already is). Values are the plain module's to
float32 rounding (the sums run in another order); shapes, strides aside, are unchanged, and every
PyTorch op downstream accepts either layout (``reshape``, not ``view``, is what a model file uses
on a convolution's output).

Other devices and 1-D/3-D inputs take ``nn.Conv2d``'s own path unchanged; saving writes contiguous
tensors (``save_pretrained`` makes every tensor contiguous), so checkpoints are unaffected.
"""

from __future__ import annotations

import torch
from torch import nn

CHANNELS_LAST = torch.channels_last


def to_channels_last(conv: nn.Conv2d) -> None:
    """Lay ``conv``'s weight out channels-last in place (same values, same Parameter object)."""
    weight = conv.weight
    if weight.device.type == "cpu" and weight.dim() == 4 and not weight.is_contiguous(memory_format=CHANNELS_LAST):
        with torch.no_grad():
            weight.data = weight.data.contiguous(memory_format=CHANNELS_LAST)


def to_contiguous(conv: nn.Conv2d) -> None:
    """Undo :func:`to_channels_last` (what :func:`~pretrained.backends.plain` calls)."""
    weight = conv.weight
    if weight.device.type != "meta" and not weight.is_contiguous():
        with torch.no_grad():
            weight.data = weight.data.contiguous()


class CpuConv2d(nn.Conv2d):
    """``nn.Conv2d`` computed channels-last on the CPU (see the module doc).

    Example::

        >>> import torch
        >>> from pretrained.backends import accelerate
        >>> conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1))
        >>> accelerate(conv), type(conv[0]).__name__
        (1, 'CpuConv2d')
        >>> conv(torch.randn(1, 3, 16, 16)).is_contiguous(memory_format=torch.channels_last)
        True
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.device.type == "cpu" and input.dim() == 4:
            input = input.contiguous(memory_format=CHANNELS_LAST)
        return self._conv_forward(input, self.weight, self.bias)

    def _before_plain(self) -> None:   # backends.plain(): the plain module gets its layout back
        to_contiguous(self)
