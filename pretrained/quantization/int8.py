"""``Linear8bit``: a linear layer with int8 weights, one float32 scale per output row (the
layout of bitsandbytes' ``Linear8bitLt``: ``weight`` int8 (out, in), ``SCB`` float32 (out,) the
row maxima, and ``weight_format`` 0, "row-major", written for the reference's loader).

What it computes (the plain math here; the fast op is a backend swap,
:mod:`pretrained.backends.quantized`), as bitsandbytes' ``Linear8bitLt`` does on the CPU:

- **LLM.int8(), the default** (``load_in_8bit=True``, ``BitsAndBytesConfig(load_in_8bit=True)``,
  :meth:`Linear8bit.from_float`): the reference's inference algorithm, number for number: the
  input in float16 quantized per row to int8, except outlier columns (any value >=
  ``llm_int8_threshold``), which are zeroed there and computed from the input in its own dtype
  times the dequantized weight columns; the int8 product is rescaled by the row and weight
  maxima. Its backward is bitsandbytes' too: the input's gradient through the dequantized weight
  (``q * SCB / 127`` in the input's dtype), the bias's the output gradient summed. A CPU module in
  **training mode** computes weight-only, as bitsandbytes' ``MatMul8bitFp`` does there (LoRA /
  QLoRA training: forward and backward through the dequantized weight). On the CPU, for 1 to 16
  float32 / bfloat16 rows, the backend multiplies int8 by int8 (AMX-INT8 tiles or VNNI,
  :mod:`pretrained.backends.bnb_linear`).
- **weight-only int8, on request** (:func:`set_llm_int8` ``(model, False)``, or
  ``llm_int8=False`` here): ``y = x W^T + b`` with ``W = q * SCB / 127`` in the input's dtype.
  Activations are never quantized, so every input column is computed in the input's precision
  (nearer the float model than LLM.int8(); not bitsandbytes' inference numbers).

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
                 threshold: float = 6.0, llm_int8: bool = True, device: Any = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.threshold = float(threshold)
        #: LLM.int8() (bitsandbytes' numbers, the default) or weight-only (False); see set_llm_int8
        self.llm_int8 = bool(llm_int8)
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=torch.int8, device=device),
                                   requires_grad=False)
        self.register_buffer("SCB", torch.ones(out_features, dtype=torch.float32, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device)) if bias else None

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: torch.Tensor | None, threshold: float = 6.0,
                   llm_int8: bool = True) -> "Linear8bit":
        """Quantize an (out, in) float weight (bias kept as it is)."""
        q, scb = quantize_rows_int8(weight.detach())
        return cls.from_quantized(q, scb, bias, threshold, llm_int8)

    @classmethod
    def from_quantized(cls, q: torch.Tensor, scb: torch.Tensor, bias: torch.Tensor | None,
                       threshold: float = 6.0, llm_int8: bool = True) -> "Linear8bit":
        """From a checkpoint's int8 ``weight`` and ``SCB``."""
        with torch.device("meta"):
            m = cls(q.shape[1], q.shape[0], bias is not None, threshold=threshold, llm_int8=llm_int8)
        m.weight = nn.Parameter(q.contiguous(), requires_grad=False)
        m.SCB = scb.float()
        m.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=bias.requires_grad)
        return m

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize_rows_int8(self.weight, self.SCB).to(dtype)

    def computes_llm_int8(self, x: torch.Tensor) -> bool:
        """Whether a call on ``x`` runs LLM.int8(): on (the default), a threshold >= 0, a
        non-empty input, and not a CPU module in training mode (bitsandbytes trains 8-bit layers
        on the CPU through the dequantized weight, its ``MatMul8bitFp``)."""
        return self.llm_int8 and self.threshold >= 0 and x.numel() > 0 \
            and not (self.training and x.device.type == "cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.computes_llm_int8(x):
            if torch.is_grad_enabled() and (x.requires_grad or self.bias is not None and self.bias.requires_grad):
                return _LLMInt8.apply(x, self.weight, self.SCB, self.bias, self.threshold)
            return llm_int8_linear(x, self.weight, self.SCB, self.bias, self.threshold)
        # weight-only: the int8 codes scaled in the input's dtype, rounded once (bitsandbytes'
        # CB.to(dtype).mul_(SCB / 127)); autograd reaches x, not the codes
        w = self.weight.to(x.dtype).mul_(self.SCB.unsqueeze(1) * (1.0 / 127.0))
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


class _LLMInt8(torch.autograd.Function):
    """LLM.int8()'s forward with bitsandbytes' backward (its ``MatMul8bitLt``): the input's
    gradient through the dequantized weight (the codes in the input's dtype times ``SCB / 127``),
    the bias's the output gradient summed over the rows; the codes and scales get none."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, q: torch.Tensor, scb: torch.Tensor, bias: torch.Tensor | None,
                threshold: float) -> torch.Tensor:
        ctx.save_for_backward(q, scb)
        ctx.x_shape, ctx.x_dtype = x.shape, x.dtype
        ctx.bias_dtype = None if bias is None else bias.dtype
        return llm_int8_linear(x, q, scb, bias, threshold)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, torch.Tensor | None, None]:
        q, scb = ctx.saved_tensors
        gx = gb = None
        if ctx.needs_input_grad[3]:
            gb = grad.reshape(-1, grad.shape[-1]).sum(0, dtype=ctx.bias_dtype)
        if ctx.needs_input_grad[0]:
            w = q.to(ctx.x_dtype).mul_(scb.unsqueeze(1) * (1.0 / 127.0))
            gx = torch.matmul(grad.to(ctx.x_dtype), w).view(ctx.x_shape)
        return gx, None, None, gb, None


def set_llm_int8(model: nn.Module, enabled: bool = True) -> int:
    """Compute every :class:`Linear8bit` of ``model`` with LLM.int8() (True, the default of
    every 8-bit load: bitsandbytes' numbers) or weight-only int8 (False: float activations times
    the dequantized weight, nearer the float model); returns how many layers it set.

    Example::

        >>> lin = nn.Linear(8, 4)
        >>> model = nn.Sequential(Linear8bit.from_float(lin.weight, lin.bias))
        >>> model[0].llm_int8, set_llm_int8(model, False), model[0].llm_int8
        (True, 1, False)
    """
    n = 0
    for m in model.modules():
        if isinstance(m, Linear8bit):
            m.llm_int8 = bool(enabled)
            n += 1
    return n


__all__ = ["QuantizedLinear", "Linear8bit", "llm_int8_linear", "set_llm_int8"]
