"""AWQ (Lin, Tang, Tang, Yang, Dang, Gan, Han 2023, "AWQ: Activation-aware Weight Quantization
for LLM Compression and Acceleration"), for one group of linear layers that read the same input.

The few input channels that carry large activations matter most; rounding their weights coarsely
costs the most output error. AWQ scales those weights *up* before rounding (and the input down
by the same factor, which is folded into the op that produces the input, so the float model is
unchanged): ``Q(W diag(s)) (diag(s)^-1 X)``.

- :func:`search_scales`: ``s = mean|x|^alpha`` per input channel (normalised so that
  ``sqrt(max s * min s) = 1``), ``alpha`` on a grid over [0, 1) (``n_grid`` points), picking the
  one whose rounded weights give the least output error ``||W X - Q(W s)(X / s)||^2`` on the
  calibration inputs, summed over the layers of the group (alpha = 0 is plain rounding, so the
  search never does worse than it on those inputs);
- :func:`fold_scales`: ``W <- W diag(s)`` for the layers, and the previous op divided by ``s``
  (an RMSNorm/LayerNorm weight, or a previous linear's output rows and bias);
- :func:`search_clip`: the optional clipping search: per output row and group, the largest
  magnitude kept, ``max |w| * r`` for ``r`` from 1 down to ``1 - max_shrink``, picking the one with
  the least error of that group's share of the output on (a sample of) the inputs.

The rounding itself is plain min-max round-to-nearest in groups (:mod:`.grid`), asymmetric with
a zero point, as AWQ checkpoints store it.

Example::

    >>> import torch
    >>> torch.manual_seed(0) and None
    >>> x = torch.randn(512, 64) * torch.linspace(0.1, 8, 64)     # some channels much larger
    >>> lin = torch.nn.Linear(64, 32, bias=False)
    >>> s = search_scales(x, [lin.weight.detach()], bits=4, group_size=32)
    >>> s.shape, bool(s[-1] > s[0])    # the loud channels get the larger scales
    (torch.Size([64]), True)
"""

from __future__ import annotations

import torch
from torch import nn

from .grid import fake_quantize


def _output_error(x: torch.Tensor, weights: list[torch.Tensor], quantized: list[torch.Tensor]) -> float:
    return sum(float(((x @ (w - q).t()) ** 2).mean()) for w, q in zip(weights, quantized))


def search_scales(x: torch.Tensor, weights: list[torch.Tensor], *, bits: int = 4, group_size: int = 128,
                  n_grid: int = 20) -> torch.Tensor:
    """The per-input-channel scale (float32, (in,)) with the least output error (module doc)."""
    x = x.reshape(-1, x.shape[-1]).float()
    weights = [w.float() for w in weights]
    x_mean = x.abs().mean(dim=0)
    best, best_s = float("inf"), torch.ones_like(x_mean)
    for k in range(n_grid):
        alpha = k / n_grid
        s = x_mean.pow(alpha).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        quantized = [fake_quantize(w * s, bits, group_size) / s for w in weights]
        err = _output_error(x, weights, quantized)
        if err < best:
            best, best_s = err, s
    return best_s


@torch.no_grad()
def fold_scales(prev: nn.Module, layers: list[nn.Linear], s: torch.Tensor) -> None:
    """``layers`` read ``prev``'s output: multiply their input columns by ``s`` and divide
    ``prev``'s output by it (the float function is unchanged)."""
    s = s.to(layers[0].weight.dtype)
    if isinstance(prev, nn.Linear):
        prev.weight.div_(s.unsqueeze(1))
        if prev.bias is not None:
            prev.bias.div_(s)
    else:   # a norm: its elementwise weight (and bias) scale its output
        prev.weight.div_(s)
        if getattr(prev, "bias", None) is not None:
            prev.bias.div_(s)
    for lin in layers:
        lin.weight.mul_(s.unsqueeze(0))


def search_clip(x: torch.Tensor, weight: torch.Tensor, *, bits: int = 4, group_size: int = 128,
                n_grid: int = 20, max_shrink: float = 0.5, n_tokens: int = 512) -> torch.Tensor:
    """Per output row and group, the clipping bound (out, groups) with the least error of that
    group's share of the output (module doc)."""
    x = x.reshape(-1, x.shape[-1]).float()
    if x.shape[0] > n_tokens:   # an even sample of the tokens
        x = x[torch.linspace(0, x.shape[0] - 1, n_tokens).long()]
    w = weight.float()
    out, n_in = w.shape
    gs = n_in if group_size == -1 else group_size
    if n_in % gs:
        raise ValueError(f"AWQ clipping needs in_features ({n_in}) divisible by group_size ({gs})")
    wg = w.view(out, n_in // gs, gs)
    xg = x.view(x.shape[0], n_in // gs, gs)
    org_max = wg.abs().amax(dim=2)                         # (out, groups)
    best_err = torch.full_like(org_max, float("inf"))
    best_max = org_max.clone()
    ref = torch.einsum("tgk,ogk->tog", xg, wg)             # each group's share of the output
    for k in range(int(max_shrink * n_grid)):
        cur = org_max * (1 - k / n_grid)
        clipped = torch.maximum(torch.minimum(wg, cur.unsqueeze(2)), -cur.unsqueeze(2))
        q = fake_quantize(clipped.reshape(out, n_in), bits, gs).view(out, n_in // gs, gs)
        err = ((torch.einsum("tgk,ogk->tog", xg, q) - ref) ** 2).mean(dim=0)   # (out, groups)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_max = torch.where(better, cur, best_max)
    return best_max


@torch.no_grad()
def apply_clip(lin: nn.Linear, bound: torch.Tensor, group_size: int) -> None:
    """Clip ``lin``'s weight to ``[-bound, bound]`` per output row and group."""
    out, n_in = lin.weight.shape
    gs = n_in if group_size == -1 else group_size
    w = lin.weight.view(out, n_in // gs, gs)
    b = bound.to(w.dtype).unsqueeze(2)
    w.copy_(torch.maximum(torch.minimum(w, b), -b))


__all__ = ["search_scales", "fold_scales", "search_clip", "apply_clip"]
