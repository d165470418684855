"""The C products on bitsandbytes-layout weights (``bnb_kernel.c``) for a decode step or a
small batch (1 to :data:`KERNEL_MAX_ROWS` activation rows): NF4 / FP4 blockwise codes and int8
rows, each weight byte read once per call for every row, its codes turned float32 in registers
(no dequantized copy of the weight), float32 sums, float32 or bfloat16 activations and outputs.
:mod:`.quantized` calls these; they return None where the kernel does not apply (no library,
a size or dtype it lacks), and the caller then runs its PyTorch path. Under ``torch.compile`` the
layers call :data:`bnb_linear_op` (``torch.ops.pretrained.bnb_linear``), which keeps the kernel
inside the compiled graph.

Example::

    >>> import torch
    >>> from pretrained.quantization.formats import quantize_4bit, dequantize_4bit, code_4bit
    >>> w = torch.randn(8, 64)
    >>> packed, absmax = quantize_4bit(w, 64, "nf4")
    >>> x = torch.randn(2, 64)
    >>> y = nf4_matmul(x, packed, absmax, 64, code_4bit("nf4"), 8)
    >>> want = x @ dequantize_4bit(packed, absmax, 64, "nf4", (8, 64), torch.float32).t()
    >>> y is None or bool(torch.allclose(y, want, atol=1e-4))
    True
"""

from __future__ import annotations

import ctypes
import functools

import torch
import torch.nn.functional as F

from . import build as _build

KERNEL_MAX_ROWS = 16   # activation rows per call (the kernel's ROWS_MAX)
_DTYPES = (torch.float32, torch.bfloat16)


def _library(lib: ctypes.CDLL | None = None) -> ctypes.CDLL | None:
    """The loaded kernels (or ``lib``, a variant a test loaded), ``bnb_linear`` typed."""
    lib = lib or (_build._lib if _build._lib is not None else _build.library())
    if not lib:
        return None
    if not getattr(lib, "bnb_typed", False):
        p, n, i = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
        lib.bnb_linear.argtypes = [i, p, n, n, p, i, i, p, p, n, n, i, p, p, n, i, i]
        lib.bnb_linear.restype = i
        lib.int8_rows.argtypes = [i, p, p, p, p, n, p, n, n, ctypes.c_float, i, p, n, i]
        lib.int8_rows.restype = i
        lib.bnb_typed = True
    return lib


def _call(bits: int, x: torch.Tensor, w: torch.Tensor, n: int, k: int, scale: torch.Tensor,
          log2bs: int, wbf16: bool, qmap: torch.Tensor | None, bias: torch.Tensor | None,
          lib: ctypes.CDLL | None) -> torch.Tensor | None:
    if x.dtype not in _DTYPES or not x.is_cpu or not w.is_cpu or not scale.is_cpu or x.shape[-1] != k:
        return None
    rows = x.numel() // k if k else 0
    if not 0 < rows <= KERNEL_MAX_ROWS:
        return None
    lib = _library(lib)
    if lib is None:
        return None
    x2 = x.reshape(rows, k)
    if x2.stride(1) != 1:
        x2 = x2.contiguous()
    y = torch.empty(rows, n, dtype=x.dtype)
    bf16 = x.dtype == torch.bfloat16
    if lib.bnb_linear(bits, w.data_ptr(), n, k, scale.data_ptr(), log2bs, wbf16,
                      None if qmap is None else qmap.data_ptr(), x2.data_ptr(), rows, x2.stride(0), bf16,
                      None if bias is None else bias.data_ptr(), y.data_ptr(), n, bf16,
                      torch.get_num_threads()):
        return None
    return y.view(*x.shape[:-1], n)


def _f32(t: torch.Tensor | None) -> torch.Tensor | None:
    return t if t is None or t.dtype == torch.float32 and t.is_contiguous() else t.float().contiguous()


def nf4_matmul(x: torch.Tensor, packed: torch.Tensor, absmax: torch.Tensor, blocksize: int,
               quant_map: torch.Tensor, out_features: int, bias: torch.Tensor | None = None,
               round_bf16: bool = False, lib: ctypes.CDLL | None = None) -> torch.Tensor | None:
    """``x @ W^T + bias`` for the 4-bit weight ``W`` (``out_features`` x ``x.shape[-1]``) of
    ``packed`` (bitsandbytes' layout: the flattened weight two codes a byte, high nibble first),
    ``absmax`` (float32 per block of ``blocksize`` flattened values, already decompressed) and
    ``quant_map`` (the 16 code values); in ``x``'s dtype (float32 or bfloat16). ``round_bf16``:
    each weight rounded to bfloat16 first (the plain math's weight in bfloat16). None where the
    kernel does not apply: more than :data:`KERNEL_MAX_ROWS` rows, ``in_features`` not a multiple
    of 32, a block size that is no power of two, other dtypes or devices, no library."""
    k = x.shape[-1]
    if k % 32 or blocksize < 32 or blocksize & (blocksize - 1) or packed.dtype != torch.uint8 \
            or not packed.is_contiguous() or packed.numel() * 2 < out_features * k \
            or absmax.numel() * blocksize < out_features * k or quant_map.numel() != 16:
        return None
    return _call(4, x, packed, out_features, k, _f32(absmax), blocksize.bit_length() - 1, round_bf16,
                 _f32(quant_map), _f32(bias), lib)


def int8_matmul(x: torch.Tensor, weight: torch.Tensor, row_scales: torch.Tensor,
                bias: torch.Tensor | None = None, lib: ctypes.CDLL | None = None) -> torch.Tensor | None:
    """``x @ (weight * row_scales[:, None])^T + bias`` for an int8 ``weight`` (out, in), in
    ``x``'s dtype (float32 or bfloat16); None where the kernel does not apply."""
    if weight.dtype != torch.int8 or weight.dim() != 2 or not weight.is_contiguous() \
            or row_scales.numel() != weight.shape[0]:
        return None
    return _call(8, x, weight, weight.shape[0], weight.shape[1], _f32(row_scales), 0, False, None, _f32(bias),
                 lib)


@functools.lru_cache(maxsize=64)   # a tensor made per call cost ~5 us of a ~25 us layer call
def fp16_threshold(threshold: float) -> float:
    """LLM.int8()'s outlier threshold as its comparison sees it: ``a16.abs() >= threshold`` on a
    float16 tensor compares in float16 (0 where there are no outliers to find)."""
    return float(torch.tensor(threshold, dtype=torch.float16)) if threshold > 0 else 0.0


def llm_int8_matmul(x: torch.Tensor, weight: torch.Tensor, scb: torch.Tensor | None,
                    bias: torch.Tensor | None, threshold: float,
                    lib: ctypes.CDLL | None = None) -> torch.Tensor | None:
    """LLM.int8() (:func:`pretrained.quantization.int8.llm_int8_linear`'s numbers: activations
    rounded to float16, quantized per row to int8, exact int32 sums, outlier columns at or above
    ``threshold`` in float32) for float32 or bfloat16 ``x`` of 1 to :data:`KERNEL_MAX_ROWS` rows, through
    ``int8_rows`` (AVX-512 VNNI ``vpdpbusd`` or AVX2 ``vpmaddubsw``). ``scb`` None: the int32 sums
    of the quantized activations and the codes themselves, for tests. None where it does not apply.

    Example::

        >>> import torch
        >>> from pretrained.quantization.int8 import Linear8bit, llm_int8_linear
        >>> m = Linear8bit.from_float(torch.randn(8, 64), torch.randn(8))
        >>> x = torch.randn(2, 64)
        >>> y = llm_int8_matmul(x, m.weight, m.SCB, m.bias, 6.0)
        >>> y is None or bool((y - llm_int8_linear(x, m.weight, m.SCB, m.bias, 6.0)).abs().max() < 1e-5)
        True
    """
    k = x.shape[-1] if x.dim() else 0
    if x.dtype == torch.bfloat16 and scb is not None:
        # as the plain math in bfloat16: the same quantization of the (exact) float32 values, the
        # float32 result rounded once to bfloat16 (outlier columns: summed in float32 first)
        y = llm_int8_matmul(x.float(), weight, scb, bias, threshold, lib)
        return None if y is None else y.to(torch.bfloat16)
    if x.dtype != torch.float32 or not x.is_cpu or weight.dtype != torch.int8 or weight.dim() != 2 \
            or not weight.is_contiguous() or not weight.is_cpu or weight.shape[1] != k or k == 0:
        return None
    n = weight.shape[0]
    if scb is not None and (scb.numel() != n or not scb.is_cpu) or bias is not None and (bias.numel() != n or not bias.is_cpu):
        return None
    rows = x.numel() // k
    lib = _library(lib)
    th = fp16_threshold(threshold)
    # a positive threshold float16 rounds to 0 makes every element an outlier there: not this kernel
    if not 0 < rows <= KERNEL_MAX_ROWS or lib is None or threshold > 0 and th == 0:
        return None
    x2 = x.reshape(rows, k)
    if x2.stride(1) != 1:
        x2 = x2.contiguous()
    scb, bias = _f32(scb), _f32(bias)
    y = torch.empty(rows, n, dtype=torch.float32 if scb is not None else torch.int32)
    ptr = lambda t: (ctypes.c_void_p * 1)(None if t is None else t.data_ptr())  # noqa: E731
    if lib.int8_rows(1, ptr(weight), ptr(scb), ptr(bias), (ctypes.c_long * 1)(n), k, x2.data_ptr(), rows,
                     x2.stride(0), th, 1, y.data_ptr(), n, torch.get_num_threads()):
        return None
    return y.view(*x.shape[:-1], n)


def _dequantized(weight: torch.Tensor, scale: torch.Tensor, quant_map: torch.Tensor | None, bits: int,
                 out_features: int, in_features: int, blocksize: int, round_bf16: bool) -> torch.Tensor:
    """The float32 (out, in) weight the kernel multiplies with (the op's way where it declines)."""
    if bits == 8:
        return weight.float() * scale.float().unsqueeze(1)
    n = out_features * in_features
    b = weight.reshape(-1)
    codes = torch.stack([b >> 4, b & 15], dim=1).reshape(-1)[:n].long()
    w = quant_map.float()[codes] * scale.float().repeat_interleave(blocksize)[:n]
    w = w.view(out_features, in_features)
    return w.to(torch.bfloat16).float() if round_bf16 else w


def _bnb_linear_impl(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, quant_map: torch.Tensor | None,
                     bias: torch.Tensor | None, bits: int, out_features: int, blocksize: int,
                     round_bf16: bool) -> torch.Tensor:
    """``torch.ops.pretrained.bnb_linear``: one quantized layer as one PyTorch op, so that
    ``torch.compile`` keeps the kernel inside the compiled graph (a ctypes call would break the
    graph at every layer): the kernel where it applies, else the same weight dequantized into
    ``F.linear``. ``scale``: the float32 absmax per block (bits 4) or per-row scales (bits 8)."""
    y = None
    if x.is_cpu and weight.is_cpu:
        y = nf4_matmul(x, weight, scale, blocksize, quant_map, out_features, bias, round_bf16) if bits == 4 \
            else int8_matmul(x, weight, scale, bias)
    if y is None:
        w = _dequantized(weight, scale, quant_map, bits, out_features, x.shape[-1], blocksize, round_bf16)
        y = F.linear(x.float(), w.to(x.device), None if bias is None else bias.float()).to(x.dtype)
    return y


_OPS = torch.library.Library("pretrained", "FRAGMENT")   # (kept: the op lives as long as it)
_OPS.define("bnb_linear(Tensor x, Tensor weight, Tensor scale, Tensor? quant_map, Tensor? bias, int bits, "
            "int out_features, int blocksize, bool round_bf16) -> Tensor")
_OPS.impl("bnb_linear", _bnb_linear_impl, "CPU")


@torch.library.register_fake("pretrained::bnb_linear")
def _bnb_linear_shape(x, weight, scale, quant_map, bias, bits, out_features, blocksize, round_bf16):
    return x.new_empty((*x.shape[:-1], out_features))


bnb_linear_op = torch.ops.pretrained.bnb_linear.default

__all__ = ["nf4_matmul", "int8_matmul", "llm_int8_matmul", "bnb_linear_op", "KERNEL_MAX_ROWS"]
