"""The CPU 2-D convolution that the backend pass swaps in for ``nn.Conv2d``: the same module, started
in the channels-last layout.

oneDNN's CPU convolutions work on channels-last (NHWC) data; handed PyTorch's default NCHW
tensors they reorder input and output on every call. Kept channels-last from one convolution to
the next (batch norms, activations, pooling and residual sums keep a tensor's layout), a ResNet-50
at 800 x 1066 ran 1.3x faster in float32 and 3-4x in bfloat16 on this machine's CPU
(benchmarks/RESULTS.md). So :class:`CpuConv2d` lays out channels-last the one input that starts
such a chain: a picture (at most 4 channels: the stem's input, a cheap copy); every other input
runs in the layout it comes in (a channels-last one stays so, free; an NCHW one, e.g. a
concatenation of upsampled maps, is not copied: converting it would cost more than it gains, as
SegFormer's decode head showed: 0.39 s against 0.27 s per forward when every input was converted).
The weight is left as it is (oneDNN follows the input's layout; converting the weight too gained
nothing measurable). Values are the plain module's to float32 rounding (the sums run in another
order); shapes are unchanged, and every PyTorch op downstream accepts either layout (``reshape``,
not ``view``, is what a model file uses on a convolution's output).

Other devices and unbatched inputs take ``nn.Conv2d``'s own path unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

CHANNELS_LAST = torch.channels_last
PICTURE_CHANNELS = 4   # at most this many input channels: a picture, where a channels-last chain starts


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
        if input.device.type == "cpu" and input.dim() == 4 and input.shape[1] <= PICTURE_CHANNELS:
            input = input.contiguous(memory_format=CHANNELS_LAST)
        return self._conv_forward(input, self.weight, self.bias)
