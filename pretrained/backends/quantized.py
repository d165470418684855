"""CPU fast paths for the quantized linears, swapped in by :func:`pretrained.backends.accelerate`
like every other backend module (same parameters, buffers and state_dict; :func:`plain` swaps
back to the plain math of :mod:`pretrained.quantization`).

- :class:`CpuLinear8bit`: LLM.int8() (the default; off with
  :func:`~pretrained.quantization.set_llm_int8` ``(model, False)``, and in training mode), on
  float32 or bfloat16 inputs of 1 to 16 rows through ``int8_rows`` (:func:`.bnb_linear.llm_int8_matmul`:
  the activations quantized per row as bitsandbytes does, int8 x int8 on AMX-INT8 tiles or
  AVX-512 VNNI, exact int32 sums, outlier columns in float32: the plain numbers). Weight-only,
  float32 inputs of 1 to 16 rows through the C kernel of
  :mod:`.bnb_linear` (each int8 byte read once for every row, widened to float32 in registers,
  float32 sums times ``SCB / 127``); bfloat16 inputs through ``torch._weight_int8pack_mm``
  (x @ q^T times the per-row scales in the input's dtype; no float copy of the weight either);
  float32 above 16 rows through the codes widened for one float matmul. The same numbers as the
  plain math to the input dtype's rounding (the scale is applied after the sum instead of to
  each weight).
- :class:`CpuLinear4bit`: 1 to 16 rows (a decode step, a small batch) through the C kernel of
  :mod:`.bnb_linear`: the packed NF4/FP4 codes looked up in registers in the 16-entry table
  times the block's absmax (the double-quantized absmax decompressed once and cached while the
  statistics stay the same tensors at the same versions), float32 sums. Its weights are the plain
  math's (bfloat16-rounded where that casts them), its input and output in the compute dtype as
  there: the plain numbers to summation order. Before it, every call dequantized the whole
  weight (SmolLM2-135M nf4 decoded at 3.2 tok/s, 0.15x the reference in bfloat16). Above 16
  rows (a prompt): the weight dequantized through a 256-entry table of byte -> (high code value,
  low code value), one gather per byte, times the block absmax (the very same float32 products
  as the plain math), then a dense product in the compute dtype. ``in_features`` not a multiple
  of 32 also takes that way. ``torch._weight_int4pack_mm_for_cpu`` does not apply: it takes
  affine int4 (scale and zero point per group), and NF4/FP4 codes are not affine.

Under ``torch.compile`` both are ``torch.ops.pretrained.bnb_linear`` (:mod:`.bnb_linear`), which
keeps the kernel inside the compiled graph. Both step aside to the plain math where their op
does not apply: other devices, autograd recording through the input or a trainable bias (LoRA training: the
dequantize-and-matmul the gradient flows through), and for int8 also LLM.int8() beyond 16 rows.

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
from .linear import _version   # None for inference tensors (no version counter)
from .bnb_linear import KERNEL_MAX_ROWS, _library, bnb_linear_op, int8_matmul, llm_int8_matmul, nf4_matmul

RUNTIME_KEYS = ("_scales", "_lut", "_absmax_f32", "_bias32", "_scales32", "_bnb_prep")   # caches, dropped by plain() and never pickled
_FAST_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_KERNEL_DTYPES = (torch.float32, torch.bfloat16)


def _steps_aside(x: torch.Tensor) -> bool:
    return (x.device.type != "cpu" or (x.requires_grad and torch.is_grad_enabled())
            or torch.compiler.is_compiling())


def _kernel_rows(m: torch.nn.Module, x: torch.Tensor) -> bool:
    """Whether the C kernels (:mod:`.bnb_linear`) may take ``x``: 1 to 16 rows of float32 or
    bfloat16, no autograd to record (through the input or a trainable bias), not being traced."""
    if x.dtype not in _KERNEL_DTYPES or x.dim() == 0 or x.shape[-1] != m.in_features or _steps_aside(x):
        return False
    if m.bias is not None and m.bias.requires_grad and torch.is_grad_enabled():
        return False
    rows = x.numel() // m.in_features if m.in_features else 0
    return 0 < rows <= KERNEL_MAX_ROWS


def _compiled_op(m: torch.nn.Module, x: torch.Tensor) -> bool:
    """Whether a graph being compiled takes the layer as ``torch.ops.pretrained.bnb_linear``
    (CPU inference in float32 / bfloat16: the op has no backward)."""
    return (torch.compiler.is_compiling() and x.device.type == "cpu" and x.dtype in _KERNEL_DTYPES
            and not (torch.is_grad_enabled() and (x.requires_grad or m.bias is not None and m.bias.requires_grad)))


def _cached(m: torch.nn.Module, name: str, key: tuple, make) -> torch.Tensor:
    """``make()`` kept in ``m.__dict__[name]`` while ``key`` (versions and addresses) holds."""
    cached = m.__dict__.get(name)
    if cached is None or cached[0] != key:
        cached = m.__dict__[name] = (key, make())
    return cached[1]


def _bias32(m: torch.nn.Module, through: torch.dtype = torch.float32) -> torch.Tensor | None:
    """The bias in float32 (first rounded to ``through``, as the plain math's cast rounds it)."""
    b = m.bias
    if b is None or b.dtype == torch.float32 and through == torch.float32 and b.is_contiguous():
        return b
    return _cached(m, "_bias32", (_version(b), b.data_ptr(), b.dtype, through),
                   lambda: b.detach().to(through).float().contiguous())


class CpuLinear8bit(Linear8bit):
    """:class:`~pretrained.quantization.Linear8bit` through the C kernel (float32, 1 to 16 rows) or
    ``torch._weight_int8pack_mm``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        int8 = self.computes_llm_int8(x)   # LLM.int8() (the default) or weight-only
        if not int8 and _compiled_op(self, x):
            bias = None if self.bias is None else self.bias.float()
            return bnb_linear_op(x, self.weight, self.SCB * (1.0 / 127.0), None, bias, 8, self.out_features, 0,
                                 False)
        if int8 and _kernel_rows(self, x):
            # LLM.int8() on 1-16 float32 / bfloat16 rows: int8_rows (AMX-INT8 tiles or vpdpbusd on
            # the quantized activations), the plain math's numbers (exact int32 sums, same scaling)
            y = llm_int8_matmul(x, self.weight, self.SCB, self.bias, self.threshold)
            if y is not None:
                return y
        if int8 or _steps_aside(x) or x.dtype not in _FAST_DTYPES or x.numel() == 0:
            return super().forward(x)
        if (x.dtype == torch.float32 or self.in_features % 8) and _kernel_rows(self, x):
            # float32, 1-16 rows: the C kernel, each int8 byte read once for all rows (torch's int8
            # op has no vectorised float32 path: one thread, 1536 x 576, one row 603 -> 83 us, 8 rows
            # 831 us through widened codes -> 239 us). bfloat16 stays on torch's op: the kernel
            # was slower there (8 rows 202 vs 223 us; 2 threads 123 vs 199 us)
            scb = self.SCB
            scales = _cached(self, "_scales32", (_version(scb), scb.data_ptr()),
                             lambda: (scb * (1.0 / 127.0)).float().contiguous())
            y = int8_matmul(x, self.weight, scales, _bias32(self))
            if y is not None:
                return y
        if self.in_features % 8 and x.dtype != torch.float32:
            return super().forward(x)   # torch's int8 op crashes there (torch 2.13, bfloat16: in 100)
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
        key = (dtype, _version(self.SCB), self.SCB.data_ptr())
        cached = self.__dict__.get("_scales")
        if cached is None or cached[0] != key:
            cached = self.__dict__["_scales"] = (key, (self.SCB * (1.0 / 127.0)).to(dtype))
        return cached[1]

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in RUNTIME_KEYS}


def _key4(m: Linear4bit) -> tuple:
    """What a prepared 4-bit call depends on: identities (held by the call, so never reused),
    addresses and versions of the weight, statistics and bias (cheap to compare, never values)."""
    p, b = m._parameters, m._buffers
    w, bias = p["weight"], p.get("bias")
    key = [id(w), w.data_ptr(), m.nested_offset]
    for t in (b["absmax"], b["quant_map"], b.get("nested_absmax"), b.get("nested_quant_map"), bias):
        key += (None, None) if t is None else (id(t), _version(t))
    key.append(bias is not None and bias.requires_grad)
    return tuple(key)


class _Prepared:
    """One 4-bit layer's kernel call with its constant arguments bound, and what they were built
    from (:func:`_key4`). A decode step makes ~210 of these calls, and the checks and argument
    building of the general path cost ~19 of ~22 us a call (a 16 x 64 layer, one thread)."""

    __slots__ = ("fn", "head", "bias", "dtype", "bf16", "n", "k", "key", "keep")

    def __init__(self, m: Linear4bit, cd: torch.dtype, absmax: torch.Tensor, bias: torch.Tensor | None,
                 round_bf16: bool) -> None:
        qmap = m.quant_map.float().contiguous()
        w = m.weight
        self.fn, self.dtype, self.bf16 = _library().bnb_linear, cd, cd == torch.bfloat16
        self.n, self.k = m.out_features, m.in_features
        self.head = (4, w.data_ptr(), self.n, self.k, absmax.data_ptr(), m.blocksize.bit_length() - 1,
                     round_bf16, qmap.data_ptr())
        self.bias = None if bias is None else bias.data_ptr()
        self.key = _key4(m)
        self.keep = (w, absmax, bias, qmap, m.absmax, m.quant_map, m.nested_absmax, m.nested_quant_map, m.bias)

    def run(self, x: torch.Tensor) -> torch.Tensor | None:
        """The product for ``x`` (in the compute dtype, CPU), or None where it does not apply."""
        shape, k = x.shape, self.k
        if not shape or shape[-1] != k:
            return None
        rows = x.numel() // k
        if not 0 < rows <= KERNEL_MAX_ROWS:
            return None
        x2 = x.reshape(rows, k)
        if x2.stride(1) != 1:
            x2 = x2.contiguous()
        y = torch.empty(rows, self.n, dtype=self.dtype)
        if self.fn(*self.head, x2.data_ptr(), rows, x2.stride(0), self.bf16, self.bias, y.data_ptr(), self.n,
                   self.bf16, torch.get_num_threads()):
            return None
        return y.view(*shape[:-1], self.n)


class CpuLinear4bit(Linear4bit):
    """:class:`~pretrained.quantization.Linear4bit` through the C kernel for 1 to 16 rows, else
    with table-driven dequantization (its forward, autograd included, is the plain one around it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prep = self.__dict__.get("_bnb_prep")
        if prep is not None and x.dtype is prep.dtype and x.is_cpu and not (x.requires_grad and torch.is_grad_enabled()) \
                and not torch.compiler.is_compiling() and prep.key == _key4(self):
            y = prep.run(x)   # the decode path: a call prepared once
            if y is not None:
                return y
        cd = self.compute_dtype
        if cd in _KERNEL_DTYPES and self.weight_dtype in _KERNEL_DTYPES and _compiled_op(self, x):
            bias = None if self.bias is None else self.bias.to(cd).float()
            y = bnb_linear_op(x.to(cd), self.weight, self.block_absmax(), self.quant_map, bias, 4,
                              self.out_features, self.blocksize, torch.bfloat16 in (cd, self.weight_dtype))
            return y.to(x.dtype)
        if cd in _KERNEL_DTYPES and self.weight_dtype in _KERNEL_DTYPES and self.weight.is_cpu \
                and _kernel_rows(self, x):
            # the plain math's numbers to summation order: the input in the compute dtype, each
            # weight rounded as its casts round it, the output in the compute dtype
            absmax, bias, rnd = self._absmax32(), _bias32(self, cd), torch.bfloat16 in (cd, self.weight_dtype)
            y = nf4_matmul(x if x.dtype == cd else x.to(cd), self.weight, absmax, self.blocksize,
                           self.quant_map, self.out_features, bias, round_bf16=rnd)
            if y is not None:
                if x.dtype == cd and (self.bias is None or not self.bias.requires_grad):
                    self.__dict__["_bnb_prep"] = _Prepared(self, cd, absmax, bias, rnd)
                return y if y.dtype == x.dtype else y.to(x.dtype)
        return super().forward(x)

    def _absmax32(self) -> torch.Tensor:
        """The float32 absmax per block, decompressed once (double quant) and kept while the
        statistics stay the same tensors at the same versions."""
        parts = (self.absmax, self.nested_absmax, self.nested_quant_map)
        key = tuple((_version(t), t.data_ptr()) if t is not None else None for t in parts) + (self.nested_offset,)
        return _cached(self, "_absmax_f32", key, lambda: self.block_absmax().float().contiguous())

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        n, bs = self.in_features * self.out_features, self.blocksize
        if self.weight.device.type != "cpu" or n % bs or n % 2 or torch.compiler.is_compiling():
            return super().dequantize(dtype)
        values = self._table()[self.weight.reshape(-1).to(torch.int32)]   # (n / 2, 2) float32
        w = (values.view(-1, bs) * self.block_absmax().unsqueeze(1)).view(self.out_features, self.in_features)
        w = w.to(self.weight_dtype)
        return w if dtype is None else w.to(dtype)

    def _table(self) -> torch.Tensor:
        key = (_version(self.quant_map), self.quant_map.data_ptr())
        cached = self.__dict__.get("_lut")
        if cached is None or cached[0] != key:
            byte = torch.arange(256)
            qm = self.quant_map.float()
            cached = self.__dict__["_lut"] = (key, torch.stack([qm[byte >> 4], qm[byte & 0xF]], dim=1))
        return cached[1]

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in RUNTIME_KEYS}


__all__ = ["CpuLinear8bit", "CpuLinear4bit", "RUNTIME_KEYS"]
