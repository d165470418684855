"""RMSNorm through the C kernel (``norms.c``), swapped in for :class:`~pretrained.layers.RMSNorm`.

A decode step normalises one row per sequence twice per layer; as torch ops each norm is six
kernel calls of a few microseconds (more with cold caches), as one C call about one. Same math
as the module (float32; bfloat16 rounded where its two bfloat16 ops round), the sum of squares
in another order: within a float32 ulp or so of the module.
"""

from __future__ import annotations

import torch

from ..layers.norms import RMSNorm
from . import build as _build
from .rows import cpu_autocast

MAX_ROWS = 64   # one thread: beyond this torch's parallel ops are as quick


class CpuRMSNorm(RMSNorm):
    """:class:`RMSNorm` with a C kernel for inference on up to :data:`MAX_ROWS` CPU rows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _rmsnorm(x, self.weight, self.eps)
        return super().forward(x) if y is None else y


def _rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor | None:
    dtype = x.dtype
    if dtype not in (torch.float32, torch.bfloat16) or weight.dtype != dtype or not x.is_cpu \
            or not weight.is_cpu or x.dim() == 0 or x.shape[-1] != weight.shape[0] \
            or not weight.is_contiguous() or torch.compiler.is_compiling() or cpu_autocast():
        return None
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return None
    h = x.shape[-1]
    rows = x.numel() // h if h else 0
    lib = _build._lib if _build._lib is not None else _build.library()
    if not lib or not 0 < rows <= MAX_ROWS:
        return None
    if not x.is_contiguous():
        x = x.contiguous()
    y = torch.empty_like(x)
    run = lib.rmsnorm_f32 if dtype == torch.float32 else lib.rmsnorm_bf16
    if run(x.data_ptr(), rows, h, h, weight.data_ptr(), eps, y.data_ptr(), h):
        return None
    return y
