"""GPTQ (Frantar, Ashkboos, Hoefler, Alistarh 2022, "GPTQ: Accurate Post-Training Quantization
for Generative Pre-trained Transformers"), one linear layer at a time.

For a layer ``y = W x`` and calibration inputs ``X``, GPTQ minimises ``||W X - Q X||^2`` over
quantized ``Q``, one input column at a time (the Optimal Brain Quantization update):

1. the Hessian of that error, ``H = 2 X X^T / n`` (:class:`HessianAccumulator`, a running mean
   over calibration batches), with dead inputs (``H_ii = 0``) pinned and their weights zeroed;
2. dampening: ``H += damp * mean(diag H) * I`` (``damp_percent``, 0.01 in the paper, 0.1 in the
   reference's config) so the inverse is well conditioned;
3. the upper Cholesky factor ``U`` of ``H^-1`` (``H^-1 = U^T U``): row ``i`` of ``U`` holds the
   update coefficients for column ``i`` given that the earlier columns are fixed;
4. columns in order (or by decreasing ``H_ii`` with act-order, ``desc_act``): quantize column
   ``i`` to its group's grid, ``err = (w_i - q_i) / U_ii``, and move the error onto the columns not
   yet quantized, ``W[:, j] -= err * U[i, j]`` (j > i);
5. lazy batch updates: inside a block of ``block_size`` columns the update is applied to the block
   only; the rest of the matrix gets the block's accumulated errors in one product
   (``W[:, rest] -= Err @ U[block, rest]``), the same result with far less memory traffic.

A group's grid (scale, zero) is set when its first column comes up, from the group's columns as
they are then (error updates included). With act-order the groups follow the visiting order, and
``g_idx`` records each input column's group, as in GPTQ checkpoints.

Example::

    >>> import torch
    >>> torch.manual_seed(0) and None
    >>> w, x = torch.randn(16, 64), torch.randn(256, 64)
    >>> acc = HessianAccumulator(64); acc.add(x)
    >>> q, zeros, scales, g_idx = gptq_quantize(w, acc.hessian(), bits=4, group_size=32)
    >>> q.shape, zeros.shape, scales.dtype
    (torch.Size([16, 64]), torch.Size([2, 16]), torch.float16)
"""

from __future__ import annotations

import torch

from .grid import minmax_params, quantize_codes


class HessianAccumulator:
    """``H = 2/n sum x x^T`` over every row ``x`` passed to :meth:`add` (a float32 sum, as GPTQ
    keeps it; each batch's product is exact enough, and sums of positive terms stay so)."""

    def __init__(self, n_in: int) -> None:
        self.sum = torch.zeros(n_in, n_in, dtype=torch.float32)
        self.count = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).float()
        self.sum.addmm_(x.t(), x)
        self.count += x.shape[0]

    def hessian(self) -> torch.Tensor:
        return (2.0 / max(self.count, 1) * self.sum).float()


def gptq_quantize(weight: torch.Tensor, hessian: torch.Tensor, *, bits: int = 4, group_size: int = 128,
                  sym: bool = False, desc_act: bool = False, damp_percent: float = 0.01,
                  block_size: int = 128, min_zero: int = 0
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize ``weight`` (out, in) with the Hessian of its inputs; returns the codes in the
    checkpoint's terms: (q uint8 (out, in), zeros int32 (groups, out), scales float16 (groups,
    out), g_idx int32 (in,))."""
    w = weight.detach().float().clone()
    out, n = w.shape
    gs = n if group_size == -1 else group_size
    groups = -(-n // gs)
    h = hessian.float().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    perm = torch.argsort(torch.diag(h), descending=True) if desc_act else torch.arange(n)
    w, h = w[:, perm], h[perm][:, perm]
    h += damp_percent * torch.mean(torch.diag(h)) * torch.eye(n)
    u = _inverse_cholesky_upper(h)

    codes = torch.zeros(out, n, dtype=torch.int64)
    zeros = torch.zeros(groups, out, dtype=torch.int32)
    scales = torch.zeros(groups, out, dtype=torch.float16)
    scale = zero = None
    for i1 in range(0, n, block_size):
        i2 = min(i1 + block_size, n)
        w1, u1 = w[:, i1:i2].clone(), u[i1:i2, i1:i2]
        err1 = torch.zeros_like(w1)
        for i in range(i2 - i1):
            col = i1 + i
            if col % gs == 0:   # a new group: its grid from its columns as they are now
                span = torch.cat([w1[:, i:], w[:, i2:col + gs]], dim=1)[:, :gs] if col + gs > i2 else w1[:, i:i + gs]
                scale, zero = minmax_params(span, bits, sym, min_zero)
                zeros[col // gs], scales[col // gs] = zero, scale.half()
            c = w1[:, i]
            q = quantize_codes(c.unsqueeze(1), scale, zero, bits).squeeze(1)
            codes[:, col] = q
            deq = scale * (q - zero).float()
            e = (c - deq) / u1[i, i]
            w1[:, i:] -= e.unsqueeze(1) * u1[i, i:].unsqueeze(0)
            err1[:, i] = e
        w[:, i2:] -= err1 @ u[i1:i2, i2:]
    inv = torch.argsort(perm)
    g_idx = (torch.arange(n) // gs).to(torch.int32)[inv]    # visiting order -> column order
    return codes[:, inv].to(torch.uint8).contiguous(), zeros, scales, g_idx.contiguous()


def _inverse_cholesky_upper(h: torch.Tensor) -> torch.Tensor:
    """Upper Cholesky factor of ``h^-1``, in float64 for the inverse (raising the dampening if
    ``h`` is not positive definite)."""
    h64 = h.double()
    extra = 0.0
    for _ in range(6):
        chol, info = torch.linalg.cholesky_ex(h64 + extra * torch.eye(h.shape[0], dtype=torch.float64))
        if int(info) == 0:
            inv = torch.cholesky_inverse(chol)
            return torch.linalg.cholesky(inv, upper=True).float()
        extra = max(extra * 10, 1e-6 * float(torch.diag(h64).mean()))
    raise ValueError("the Hessian is not positive definite even after dampening; use more calibration text "
                     "or a larger damp_percent")


__all__ = ["HessianAccumulator", "gptq_quantize"]
