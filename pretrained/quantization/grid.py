"""The integer grid GPTQ, AWQ and plain round-to-nearest share: per output row and group of input
columns, a float16 scale and an integer zero point, ``q = clamp(round(w / scale) + zero, 0,
2**bits - 1)`` and back ``w ~ scale * (q - zero)``.

- asymmetric (min-max): the grid spans ``[min(w, 0), max(w, 0)]`` (GPTQ's convention: zero is
  always on the grid), ``zero = round(-min / scale)``;
- symmetric: ``scale = 2 max|w| / (2**bits - 1)``, ``zero = 2**(bits - 1)``.

``min_zero=1`` keeps zeros >= 1 (GPTQ's v1 checkpoints store ``zero - 1``): a group whose
minimum rounds to zero shifts its grid down one step.

Example::

    >>> import torch
    >>> w = torch.tensor([[-1.0, 0.0, 0.9, 2.0]])
    >>> scale, zero = minmax_params(w, 2, sym=False)
    >>> scale.tolist(), zero.tolist()
    ([1.0], [1])
    >>> quantize_codes(w, scale, zero, 2).tolist()
    [[0, 1, 2, 3]]
"""

from __future__ import annotations

import torch

from .packing import default_g_idx


def minmax_params(w: torch.Tensor, bits: int, sym: bool, min_zero: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale float32 rounded through float16, zero int32) per row of ``w`` (rows, cols)."""
    maxq = 2 ** bits - 1
    lo = w.amin(dim=1).clamp(max=0).float()
    hi = w.amax(dim=1).clamp(min=0).float()
    if sym:
        hi = torch.maximum(-lo, hi)
        lo = -hi
    empty = (hi - lo) == 0          # an all-zero row: any grid; keep scale finite
    lo, hi = torch.where(empty, -1.0, lo), torch.where(empty, 1.0, hi)
    scale = ((hi - lo) / maxq).half().float().clamp(min=2 ** -24)
    if sym:
        zero = torch.full_like(scale, (maxq + 1) // 2, dtype=torch.int32)
    else:
        zero = torch.round(-lo / scale).to(torch.int32).clamp(min_zero, maxq)
    return scale, zero


def quantize_codes(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes (int64) of ``w`` (rows, cols) on the grid of each row."""
    q = torch.round(w / scale.unsqueeze(1)) + zero.unsqueeze(1)
    return q.clamp(0, 2 ** bits - 1).long()


def fake_quantize(w: torch.Tensor, bits: int, group_size: int, sym: bool = False, min_zero: int = 0) -> torch.Tensor:
    """``w`` (out, in) rounded to its grid in groups of consecutive input columns, as floats."""
    q, zeros, scales, g = rtn_codes(w, bits, group_size, sym, min_zero)
    g = g.long()
    return (q.float() - zeros.index_select(0, g).t().float()) * scales.index_select(0, g).t().float()


def rtn_codes(w: torch.Tensor, bits: int, group_size: int, sym: bool = False, min_zero: int = 0
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plain round-to-nearest in groups: (q uint8 (out, in), zeros int32 (groups, out), scales
    float16 (groups, out), g_idx) -- what GPTQ and AWQ are measured against."""
    out, n_in = w.shape
    gs = n_in if group_size == -1 else group_size
    groups = -(-n_in // gs)
    w = w.float()
    q = torch.empty(out, n_in, dtype=torch.uint8)
    zeros = torch.empty(groups, out, dtype=torch.int32)
    scales = torch.empty(groups, out, dtype=torch.float16)
    for g in range(groups):
        part = w[:, g * gs:(g + 1) * gs]
        scale, zero = minmax_params(part, bits, sym, min_zero)
        q[:, g * gs:(g + 1) * gs] = quantize_codes(part, scale, zero, bits).to(torch.uint8)
        zeros[g], scales[g] = zero, scale.half()
    return q, zeros, scales, default_g_idx(n_in, group_size)


__all__ = ["minmax_params", "quantize_codes", "fake_quantize", "rtn_codes"]
