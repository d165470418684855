"""ctypes calls into the C kernels (``rows_kernel.c``, built by :mod:`.build`): linear layers on
1-16 rows and whole post-LayerNorm encoder stacks.

At up to 16 rows (a short sentence through an encoder, a decode step) a linear layer is bound by
reading its weight from memory, and F.linear's BLAS kernels re-lay the weight out on every call;
the kernels read ``nn.Linear``'s own weight once, in order, and keep no second copy. Float32
runs on AVX2 or AVX-512 (a dot product per output; sums in another order than BLAS's, ~1e-6
apart; the exact GELU and a residual sum can run in its last step); bfloat16 on AMX tiles (equal
to F.linear bit for bit in the tests) or ``vdpbf16ps`` (within an ulp), by the variant
:mod:`.build` chose for this CPU. :func:`rows_linear_many` runs several weights of one input (q/k/v) in
one call; :func:`encoder_stack` runs all post-LayerNorm layers of a BERT-style encoder in one
call (at a few rows the ~15 torch ops per layer around the linears cost more than their math).
Each function returns None where it does not apply, and the caller runs PyTorch's kernels.
"""

from __future__ import annotations

import ctypes
from typing import Sequence

import torch

from . import build as _build

ROWS_MAX = 16           # above this BLAS's own blocking wins (float32: even at 32 rows)
_KINDS = (torch.float32, torch.bfloat16)
_MAX_WEIGHTS = 8   # MAXW in rows_kernel.c


def cpu_autocast() -> bool:
    """Whether ``torch.autocast("cpu")`` is on: then F.linear computes in the autocast dtype, and
    the kernels (which keep the inputs' dtype) must leave the call to it."""
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def few_rows(x: torch.Tensor) -> bool:
    """Cheap first test for callers: a CPU input of at most :data:`ROWS_MAX` rows, no autocast."""
    return x.is_cpu and x.numel() <= ROWS_MAX * x.shape[-1] and not cpu_autocast()


def applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`rows_linear` would take ``x`` by ``weight`` (the opt-in oneDNN packing
    steps aside then: at up to 16 rows the kernels are faster and hold no copy)."""
    return few_rows(x) and _usable(x, weight, None)


def _usable(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    # torch.compile traces F.linear (a ctypes call would break its graph); autocast computes in
    # its own dtype
    if torch.compiler.is_compiling() or cpu_autocast():
        return False
    dtype = x.dtype
    if dtype not in _KINDS or weight.dtype != dtype or not (x.is_cpu and weight.is_cpu) \
            or not weight.is_contiguous() or x.dim() == 0:
        return False
    k, n = x.shape[-1], weight.shape[0]
    rows = x.numel() // k if k else 0
    if not 0 < rows <= ROWS_MAX or n == 0 or weight.shape[1] != k:
        return False
    if bias is not None and (bias.dtype != dtype or not bias.is_cpu or bias.shape[0] != n
                             or bias.dim() != 1):
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return False
    lib = _build._lib if _build._lib is not None else _build.library()
    # bfloat16: only variants with AVX512-BF16 have it (any k: vdpbf16ps takes masked tails)
    return bool(lib) and (dtype == torch.float32 or _build._bf16)


def _rows(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """x as rows the kernels can read: (tensor, rows, row stride)."""
    k = x.shape[-1]
    rows = x.numel() // k
    if x.is_contiguous():
        return x, rows, k
    x = x.reshape(rows, k)
    if x.stride(1) != 1:
        x = x.contiguous()
    return x, rows, x.stride(0)


def rows_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                gelu: bool = False, residual: torch.Tensor | None = None) -> torch.Tensor | None:
    """``F.linear(x, weight, bias)`` through a kernel, or None where none applies: not a float32
    or bfloat16 CPU tensor, autograd recording, ``torch.compile`` or CPU autocast on, more than
    :data:`ROWS_MAX` rows, a non-contiguous weight, bfloat16 on a variant without bfloat16
    kernels (AVX2, AVX-512 without BF16), or no kernel on this machine. ``gelu``: ``F.gelu`` (exact) of
    that, fused into the float32 kernel (within ~1e-6 of torch's); ``residual``: plus that
    tensor (of the output's shape), also fused. Both float32 only: None for bfloat16 (the
    caller applies them)."""
    if not _usable(x, weight, bias) or (gelu or residual is not None) and x.dtype != torch.float32:
        return None
    ldr = 0
    if residual is not None:
        if residual.dtype != torch.float32 or not residual.is_cpu \
                or residual.shape != x.shape[:-1] + (weight.shape[0],):
            return None
        residual = residual.reshape(-1, weight.shape[0])   # a view where the rows allow
        if residual.stride(1) != 1:
            residual = residual.contiguous()
        ldr = residual.stride(0)
    shape, n = x.shape, weight.shape[0]
    x, rows, ldx = _rows(x)
    if bias is not None and not bias.is_contiguous():
        bias = bias.contiguous()
    y = x.new_empty(shape[:-1] + (n,))
    args = (x.data_ptr(), rows, ldx, weight.data_ptr(), n, shape[-1],
            None if bias is None else bias.data_ptr(), y.data_ptr(), n, torch.get_num_threads())
    post = (gelu, None if residual is None else residual.data_ptr(), ldr)
    if _build._lib.linear_f32(*args, *post) if x.dtype == torch.float32 else _build._lib.linear_bf16(*args):
        return None   # the bfloat16 kernel could not allocate its scratch
    return y


def rows_linear_many(x: torch.Tensor, weights: Sequence[torch.Tensor],
                     biases: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
    """Several linears of one input in one kernel call (q/k/v, gate/up): their outputs side by
    side along the last axis, as ``torch.cat([F.linear(x, w, b) ...], -1)``; None where
    :func:`rows_linear` would not apply to one of them (then call them one by one)."""
    count = len(weights)
    if not 0 < count <= _MAX_WEIGHTS or len(biases) != count \
            or not all(_usable(x, w, b) for w, b in zip(weights, biases)):
        return None
    shape = x.shape
    x, rows, ldx = _rows(x)
    biases = [b if b is None or b.is_contiguous() else b.contiguous() for b in biases]
    ns = [w.shape[0] for w in weights]
    total = sum(ns)
    y = x.new_empty(shape[:-1] + (total,))
    ptrs = (ctypes.c_void_p * count)(*(w.data_ptr() for w in weights))
    bptrs = (ctypes.c_void_p * count)(*(None if b is None else b.data_ptr() for b in biases))
    args = (x.data_ptr(), rows, ldx, count, ptrs, bptrs, (ctypes.c_long * count)(*ns), shape[-1],
            y.data_ptr(), total, torch.get_num_threads())
    f32 = x.dtype == torch.float32
    if _build._lib.linear_f32_n(*args, 0, None, 0) if f32 else _build._lib.linear_bf16_n(*args):
        return None
    return y


class EncoderWeights:
    """The addresses :func:`encoder_stack` passes to C for ``layers`` post-LayerNorm layers:
    per layer q, k, v, o, up, down weights and biases (None: no bias), the two LayerNorms' weight
    and bias (None: 1 / 0) and eps. Keep the tensors alive as long as this is used.

    int8 layers (:class:`~pretrained.quantization.Linear8bit`'s ``weight`` and ``SCB`` as
    ``scales``, float32 biases and norms): their ``dtype`` is the float32 they take and give;
    ``act8`` LLM.int8() with outlier ``threshold`` (already as float16 compares it), else weight-only."""

    __slots__ = ("layers", "hidden", "inter", "heads", "w", "b", "ln", "eps", "dtype", "scales", "act8",
                 "threshold")

    def __init__(self, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor | None],
                 norms: Sequence[torch.Tensor | None], eps: Sequence[float], heads: int,
                 scales: Sequence[torch.Tensor] | None = None, act8: bool = False, threshold: float = 0.0) -> None:
        ptrs = lambda vs: (ctypes.c_void_p * len(vs))(  # noqa: E731
            *(None if v is None else v.data_ptr() for v in vs))
        self.layers, self.heads = len(weights) // 6, heads
        self.inter, self.hidden = weights[4].shape
        self.dtype = torch.float32 if scales is not None else weights[0].dtype
        self.w, self.b, self.ln = ptrs(weights), ptrs(biases), ptrs(norms)
        self.eps = (ctypes.c_float * len(eps))(*eps)
        self.scales = None if scales is None else ptrs(scales)
        self.act8, self.threshold = bool(act8), float(threshold)


def encoder_stack(x: torch.Tensor, weights: EncoderWeights, keep: torch.Tensor | None,
                  first_only: bool = False) -> torch.Tensor | None:
    """Post-LayerNorm encoder layers (BERT's: ``h = LN1(x + O·attn(x))``, ``LN2(h + Down·gelu(Up·h))``,
    exact GELU) on ``x`` (B, T, H) of at most :data:`ROWS_MAX` rows, all in one C call: float32,
    or bfloat16 (AMX or ``vdpbf16ps``; rounded to bfloat16 where torch's bfloat16 ops round;
    needs H and the intermediate size multiples of 32), or float32 between int8 linears
    (``int8_rows``: LLM.int8() on AMX-INT8 tiles or ``vpdpbusd``, or weight-only int8).

    ``keep``: None or a bool mask (B, 1, 1, T), True where a key may be attended to.
    ``first_only``: the last layer at each sequence's first position only, (B, 1, H). None where it
    does not apply (the caller checks the weights; this checks ``x``, the mask and the machine)."""
    if x.dtype != weights.dtype or x.dim() != 3 or not x.is_contiguous() or not few_rows(x) \
            or x.shape[-1] != weights.hidden or torch.compiler.is_compiling() or not _build.available():
        return None
    f32 = x.dtype == torch.float32
    if not f32 and (not _build._bf16 or weights.hidden % 32 or weights.inter % 32):
        return None
    n = weights.layers   # the C side reads 6 weights and biases, 4 norms and 2 eps per layer
    if n < 1 or (len(weights.w), len(weights.b), len(weights.ln), len(weights.eps)) != (6 * n, 6 * n, 4 * n, 2 * n):
        return None
    b, t, h = x.shape
    if keep is not None:
        if keep.dtype != torch.bool or keep.shape != (b, 1, 1, t):
            return None
        keep = keep.reshape(b, t).contiguous()
    y = x.new_empty((b, 1 if first_only else t, h))
    args = (x.data_ptr(), b, t, h, weights.heads, weights.inter, weights.layers, weights.w)
    if weights.scales is not None:   # int8 layers
        run = _int8_encoder(_build._lib)
        if run(*args, weights.scales, weights.b, weights.ln, weights.eps, None if keep is None else keep.data_ptr(),
               int(first_only), y.data_ptr(), torch.get_num_threads(), weights.threshold, int(weights.act8)):
            return None
        return y
    run = _build._lib.encoder_f32 if f32 else _build._lib.encoder_bf16
    if run(*args, weights.b, weights.ln, weights.eps, None if keep is None else keep.data_ptr(),
           int(first_only), y.data_ptr(), torch.get_num_threads()):
        return None
    return y


def _int8_encoder(lib: ctypes.CDLL):
    """``encoder_i8`` of ``lib``, typed for ctypes on first use."""
    fn = lib.encoder_i8
    if fn.argtypes is None:
        p, n, i = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
        fn.argtypes = [p, n, n, n, i, n, i, p, p, p, p, p, p, i, p, i, ctypes.c_float, i]
        fn.restype = ctypes.c_int
    return fn
