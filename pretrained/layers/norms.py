"""Normalisation layers that torch does not provide in the reference's exact form.

:class:`RMSNorm` (Llama family) reproduces the reference's float32 ``x * rsqrt(mean(x^2) + eps)``
bit for bit in as few kernel calls as possible, since it runs twice per layer in every decode
step. LayerNorm needs nothing extra: models use ``nn.LayerNorm`` directly.
"""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """Root-mean-square norm (Llama family): computed in float32, cast back, then scaled."""

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps
        # float32 0-dim CPU tensors (usable with tensors on any device): with them the ops
        # below skip the conversion a Python number costs each call
        self._n = torch.tensor(float(hidden_size), device="cpu")
        self._eps = torch.tensor(eps, device="cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the reference's x * rsqrt(mean(x^2) + eps), bit for bit (mean is sum / n), in as few
        # kernel calls as possible: each costs microseconds in a decode step, where caches are
        # cold (F.rms_norm gives the same bits in twice as many)
        h = x if x.dtype == torch.float32 else x.float()
        h = h * h.pow(2).sum(-1, keepdim=True).div_(self._n).add_(self._eps).rsqrt_()
        return self.weight * (h if x.dtype == torch.float32 else h.to(x.dtype))

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.eps}"
