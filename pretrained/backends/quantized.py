"""CPU fast paths for the quantized linears, swapped in by :func:`pretrained.backends.accelerate`
like every other backend module (same parameters, buffers and state_dict; :func:`plain` swaps
back to the plain math of :mod:`pretrained.quantization`).

- :class:`CpuLinear8bit`: weight-only int8 through ``torch._weight_int8pack_mm`` (x @ q^T times
  the per-row scales ``SCB / 127`` in the input's dtype; the int8 codes are read as they are, no
  float copy of the weight is made). The same numbers as the plain math to the input dtype's
  rounding (the scale is applied after the sum instead of to each weight).
- :class:`CpuLinear4bit`: the NF4/FP4 weight dequantized through a 256-entry table of byte ->
  (high code value, low code value), one gather per byte instead of unpacking nibbles, times the
  block absmax: the very same float32 products as the plain math, then a dense product in the
  compute dtype. ``torch._weight_int4pack_mm_for_cpu`` does not apply: it takes affine int4
  (scale and zero point per group), and NF4/FP4 codes are not affine, so it could not give
  these numbers; it is the path for affine formats (GPTQ/AWQ, not loaded yet).

Both step aside to the plain math where their op does not apply: other devices, torch.compile
tracing, and for int8 also autograd recording through the input (LoRA training) and LLM.int8().

Example::

    >>> import torch
    >>> from pretrained.quantization import Linear8bit
    >>> from pretrained.backends import accelerate
    >>> m = torch.nn.Sequential(Linear8bit.from_float(torch.randn(4, 8), None))
    >>> accelerate(m), type(m[0]).__name__
    (1, 'CpuLinear8bit')
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..quantization.int8 import Linear8bit
from ..quantization.nf4 import Linear4bit

RUNTIME_KEYS = ("_scales", "_lut")   # caches, dropped by plain() and never pickled
_FAST_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _steps_aside(x: torch.Tensor) -> bool:
    return (x.device.type != "cpu" or (x.requires_grad and torch.is_grad_enabled())
            or torch.compiler.is_compiling())


class CpuLinear8bit(Linear8bit):
    """:class:`~pretrained.quantization.Linear8bit` through ``torch._weight_int8pack_mm``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.llm_int8 or _steps_aside(x) or x.dtype not in _FAST_DTYPES or x.numel() == 0:
            return super().forward(x)
        x2 = x.reshape(-1, self.in_features)
        if x.dtype == torch.float32 and x2.shape[0] > 1:
            # torch's int8 op has no vectorised float32 path beyond one row (16 rows of BERT-base's
            # 768 x 3072 took ~6x the float product); the codes widened for one float matmul give
            # the same sum(x * q) * scale, the widened copy living for this call only
            y = F.linear(x2, self.weight.to(torch.float32)) * self._row_scales(x.dtype)
        else:
            y = torch._weight_int8pack_mm(x2, self.weight, self._row_scales(x.dtype))
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y.view(*x.shape[:-1], self.out_features)

    def _row_scales(self, dtype: torch.dtype) -> torch.Tensor:
        # cached per dtype, renewed when SCB changes (a load_state_dict writes into it)
        key = (dtype, self.SCB._version, self.SCB.data_ptr())
        cached = self.__dict__.get("_scales")
        if cached is None or cached[0] != key:
            cached = self.__dict__["_scales"] = (key, (self.SCB * (1.0 / 127.0)).to(dtype))
        return cached[1]

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in RUNTIME_KEYS}


class CpuLinear4bit(Linear4bit):
    """:class:`~pretrained.quantization.Linear4bit` with table-driven dequantization (its forward,
    autograd included, is the plain one around it)."""

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        n, bs = self.in_features * self.out_features, self.blocksize
        if self.weight.device.type != "cpu" or n % bs or n % 2 or torch.compiler.is_compiling():
            return super().dequantize(dtype)
        values = self._table()[self.weight.reshape(-1).to(torch.int32)]   # (n / 2, 2) float32
        w = (values.view(-1, bs) * self.block_absmax().unsqueeze(1)).view(self.out_features, self.in_features)
        w = w.to(self.weight_dtype)
        return w if dtype is None else w.to(dtype)

    def _table(self) -> torch.Tensor:
        key = (self.quant_map._version, self.quant_map.data_ptr())
        cached = self.__dict__.get("_lut")
        if cached is None or cached[0] != key:
            byte = torch.arange(256)
            qm = self.quant_map.float()
            cached = self.__dict__["_lut"] = (key, torch.stack([qm[byte >> 4], qm[byte & 0xF]], dim=1))
        return cached[1]

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in RUNTIME_KEYS}


__all__ = ["CpuLinear8bit", "CpuLinear4bit", "RUNTIME_KEYS"]
