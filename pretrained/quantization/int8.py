"""``Linear8bit``: a linear layer with int8 weights, one float32 scale per output row (the
layout of bitsandbytes' ``Linear8bitLt``: ``weight`` int8 (out, in), ``SCB`` float32 (out,) the
row maxima, and ``weight_format`` 0, "row-major", written for the reference's loader).

What it computes on the CPU (the plain math here; the fast op is a backend swap,
:mod:`pretrained.backends.quantized`):

- **weight-only int8, the default**: ``y = x W^T + b`` with ``W = q * SCB / 127`` in the input's
  dtype. Activations are never quantized, so every input column is computed in the input's
  precision: LLM.int8()'s promise for outlier columns (those with a value of magnitude
  >= ``llm_int8_threshold``) holds for all columns, and the threshold has nothing to split.
- **LLM.int8(), when asked** (:func:`set_llm_int8`): the reference's inference algorithm, number
  for number: the input in float16 quantized per row to int8, except outlier columns (any value
  >= threshold), which are zeroed there and computed from the input in its own dtype times the
  dequantized weight columns; the int8 product is rescaled by the row and weight maxima. Use it to
  reproduce bitsandbytes' outputs; it is less exact than weight-only. On the CPU, for 1 to 16
  float32 rows, it is also the faster of the two (the backend multiplies int8 by int8 on AMX-INT8
  tiles or VNNI, :mod:`pretrained.backends.bnb_linear`); above that the plain math here runs.

Example::

    >>> import torch
    >>> lin = torch.nn.Linear(8, 4)
    >>> q = Linear8bit.from_float(lin.weight, lin.bias)
    >>> x = torch.randn(2, 8)
    >>> bool((q(x) - lin(x)).abs().max() < 0.05)
    True
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .formats import dequantize_rows_int8, quantize_rows_int8

# bitsandbytes' constants: 1/127 and 1/127**2 as the float32 literals its dequantization uses
_INV127 = 7.874015718698502e-3
_INV127SQ = 6.200124e-05


class QuantizedLinear(nn.Module):
    """What the 8-bit and 4-bit linears share: sizes, a frozen quantized ``weight``, a float
    ``bias``, and their statistics kept in float32 when the model is cast (``model.to(bfloat16)``
    casts the bias, never the scales)."""

    #: buffers that keep their dtype through .to() / .half() (moved to the weight's device)
    _keep_dtype: tuple[str, ...] = ()

    in_features: int
    out_features: int

    def _apply(self, fn: Any, recurse: bool = True) -> "QuantizedLinear":
        kept = {n: self._buffers.pop(n) for n in self._keep_dtype if self._buffers.get(n) is not None}
        super()._apply(fn, recurse)
        for n, t in kept.items():
            self._buffers[n] = t.to(self.weight.device)
        return self

    def dequantize(self) -> torch.Tensor:
        """The (out, in) float weight these codes stand for."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Linear8bit(QuantizedLinear):
    """int8 weights per output row; see the module doc for the two ways it computes."""

    _keep_dtype = ("SCB",)

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 threshold: float = 6.0, device: Any = None, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.threshold = float(threshold)
        self.llm_int8 = False
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=torch.int8, device=device),
                                   requires_grad=False)
        self.register_buffer("SCB", torch.ones(out_features, dtype=torch.float32, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device)) if bias else None

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: torch.Tensor | None, threshold: float = 6.0) -> "Linear8bit":
        """Quantize an (out, in) float weight (bias kept as it is)."""
        q, scb = quantize_rows_int8(weight.detach())
        return cls.from_quantized(q, scb, bias, threshold)

    @classmethod
    def from_quantized(cls, q: torch.Tensor, scb: torch.Tensor, bias: torch.Tensor | None,
                       threshold: float = 6.0) -> "Linear8bit":
        """From a checkpoint's int8 ``weight`` and ``SCB``."""
        with torch.device("meta"):
            m = cls(q.shape[1], q.shape[0], bias is not None, threshold=threshold)
        m.weight = nn.Parameter(q.contiguous(), requires_grad=False)
        m.SCB = scb.float()
        m.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=bias.requires_grad)
        return m

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize_rows_int8(self.weight, self.SCB).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.llm_int8 and self.threshold >= 0 and x.numel():
            return llm_int8_linear(x, self.weight, self.SCB, self.bias, self.threshold)
        # weight-only: the int8 codes scaled in the input's dtype; autograd reaches x, not the codes
        w = self.weight.to(x.dtype) * (self.SCB * (1.0 / 127.0)).to(x.dtype).unsqueeze(1)
        return F.linear(x, w, None if self.bias is None else self.bias.to(x.dtype))

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        # "row" (0): the only layout there is on the CPU; the reference's loader reads it
        destination[prefix + "weight_format"] = torch.tensor(0, dtype=torch.uint8)


def llm_int8_linear(x: torch.Tensor, q: torch.Tensor, scb: torch.Tensor, bias: torch.Tensor | None,
                    threshold: float) -> torch.Tensor:
    """LLM.int8()'s inference product as bitsandbytes computes it (see the module doc)."""
    shape = x.shape
    a = x.reshape(-1, shape[-1])
    a16 = a.to(torch.float16)
    cols = None
    if threshold > 0:
        outliers = a16.abs() >= threshold
        if outliers.any():
            cols = outliers.any(dim=0).nonzero().view(-1)
            a16 = a16.masked_fill(outliers, 0)   # outliers leave the int8 part
    row_max = a16.abs().amax(dim=1).float()
    qa = torch.round(a16 * (127.0 / row_max).unsqueeze(1)).to(torch.int8)
    if cols is not None and a.shape[0] > 1:
        qa[:, cols] = 0
    # the integer product is exact in float32 for these sizes (|sum| < 2**24 needs in <= 1040);
    # above that, sum in float64, which stays exact up to 2**53
    acc = torch.float32 if shape[-1] <= 1040 else torch.float64
    prod = (qa.to(acc) @ q.to(acc).t()).to(torch.int32)
    out = prod * (row_max.unsqueeze(1) * scb.float().unsqueeze(0)) * _INV127SQ
    if bias is not None:
        out = out + bias
    out = out.to(x.dtype)
    if cols is not None:
        sub_w = (q[:, cols].float() * scb.float().view(-1, 1) * _INV127).to(x.dtype)
        out = out.addmm(a[:, cols], sub_w.t())
    return out.reshape(*shape[:-1], q.shape[0])


def set_llm_int8(model: nn.Module, enabled: bool = True) -> int:
    """Compute every :class:`Linear8bit` of ``model`` with LLM.int8() (True) or weight-only
    (False, the default); returns how many layers it set."""
    n = 0
    for m in model.modules():
        if isinstance(m, Linear8bit):
            m.llm_int8 = bool(enabled)
            n += 1
    return n


__all__ = ["QuantizedLinear", "Linear8bit", "llm_int8_linear", "set_llm_int8"]
