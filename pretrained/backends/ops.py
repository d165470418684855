"""The rows kernel as a PyTorch custom op (``torch.ops.pretrained.rows_linear``), so that
``torch.compile`` keeps it inside the compiled graph instead of breaking the graph at a ctypes
call. The fake implementation gives the output's shape and dtype for tracing; at run time the
op takes the kernel where it applies (:func:`.rows.rows_linear`) and ``F.linear`` elsewhere, so
its numbers equal the eager path's."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .rows import rows_linear


@torch.library.custom_op("pretrained::rows_linear", mutates_args=())
def rows_linear_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    y = rows_linear(x, weight, bias)
    return F.linear(x, weight, bias) if y is None else y


@rows_linear_op.register_fake
def _rows_linear_shape(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for a graph being compiled: the custom op for CPU float32 and
    bfloat16 inference (the kernel decides per call), ``F.linear`` where autograd must see the
    op (it has no backward) or the kernels cannot apply."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.bfloat16) \
            or weight.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype) \
            or torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                            or bias is not None and bias.requires_grad):
        return F.linear(x, weight, bias)
    return rows_linear_op(x, weight, bias)
