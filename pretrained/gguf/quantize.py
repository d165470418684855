"""Float weights to GGML block types (what the GGUF writer stores): F32, F16, BF16, Q8_0, Q4_0,
Q4_1, Q5_0, Q5_1. Vectorised numpy over whole tensors, one block of 32 values per row of work.

The rules are the GGML formats' round-to-nearest quantizers (the inverse of
:mod:`pretrained.gguf.dequant`):

* ``Q8_0``: ``d = max|x| / 127``, ``q = round(x / d)``.
* ``Q4_0`` / ``Q5_0``: ``d = v / -8`` (``/ -16``) where ``v`` is the value of largest magnitude
  (sign kept, so it maps to code 0 exactly), ``q = clip(trunc(x / d + 8.5), 0, 15)``
  (``+ 16.5``, 31).
* ``Q4_1`` / ``Q5_1``: ``m = min``, ``d = (max - min) / 15`` (31), ``q = clip(trunc((x - m) / d
  + 0.5))``.

Rounding halves go away from zero, as GGML's reference code does. The scales are stored as
IEEE half; the codes are computed against the float32 scale before that rounding, as GGML does.

Example::

    >>> import torch
    >>> from pretrained.gguf.dequant import GGML_Q8_0, dequantize
    >>> w = torch.linspace(-1, 1, 64).reshape(2, 32)
    >>> raw = quantize(w, GGML_Q8_0)
    >>> raw.dtype, raw.shape
    (torch.uint8, torch.Size([68]))
    >>> bool((dequantize(raw, GGML_Q8_0, (2, 32)) - w).abs().max() < 0.005)
    True
"""

from __future__ import annotations

import numpy as np
import torch

from .dequant import (GGML_BF16, GGML_F16, GGML_F32, GGML_Q4_0, GGML_Q4_1, GGML_Q5_0, GGML_Q5_1,
                      GGML_Q8_0, type_name)

__all__ = ["quantize", "QUANTIZE_TYPES"]


def _round_away(v: np.ndarray) -> np.ndarray:
    return np.copysign(np.floor(np.abs(v) + np.float32(0.5)), v)


def _inverse(d: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(d != 0, np.float32(1.0) / d, np.float32(0.0)).astype(np.float32)


def _f16_bytes(v: np.ndarray) -> np.ndarray:
    return v.astype(np.float16).reshape(-1, 1).view(np.uint8)


def _nibbles(q: np.ndarray) -> np.ndarray:
    """(n, 32) codes 0..15 -> (n, 16) bytes: value j in the low nibble of byte j, j + 16 high."""
    return (q[:, :16] | (q[:, 16:] << 4)).astype(np.uint8)


def _fifth_bits(q: np.ndarray) -> np.ndarray:
    """(n, 32) codes 0..31 -> (n, 4) bytes: a little-endian u32 with bit j = bit 4 of value j."""
    bits = ((q >> 4) & 1).astype(np.uint32) << np.arange(32, dtype=np.uint32)
    return bits.sum(axis=1, dtype=np.uint32).astype("<u4").reshape(-1, 1).view(np.uint8)


def _q8_0(b: np.ndarray) -> np.ndarray:
    d = np.abs(b).max(axis=1, keepdims=True) / np.float32(127)
    q = _round_away(b * _inverse(d)).astype(np.int8)
    return np.concatenate([_f16_bytes(d), q.view(np.uint8)], axis=1)


def _signed_max(b: np.ndarray) -> np.ndarray:
    idx = np.abs(b).argmax(axis=1)
    return b[np.arange(len(b)), idx].reshape(-1, 1)


def _q_0(b: np.ndarray, five: bool) -> np.ndarray:
    half = 16 if five else 8
    d = _signed_max(b) / np.float32(-half)
    q = np.trunc(b * _inverse(d) + np.float32(half + 0.5))
    q = np.clip(q, 0, 2 * half - 1).astype(np.uint8)
    parts = [_f16_bytes(d)] + ([_fifth_bits(q)] if five else []) + [_nibbles(q & 0x0F)]
    return np.concatenate(parts, axis=1)


def _q_1(b: np.ndarray, five: bool) -> np.ndarray:
    top = 31 if five else 15
    lo, hi = b.min(axis=1, keepdims=True), b.max(axis=1, keepdims=True)
    d = (hi - lo) / np.float32(top)
    q = np.clip(np.trunc((b - lo) * _inverse(d) + np.float32(0.5)), 0, top).astype(np.uint8)
    parts = [_f16_bytes(d), _f16_bytes(lo)] + ([_fifth_bits(q)] if five else []) + [_nibbles(q & 0x0F)]
    return np.concatenate(parts, axis=1)


_BLOCKS = {GGML_Q8_0: _q8_0, GGML_Q4_0: lambda b: _q_0(b, False), GGML_Q5_0: lambda b: _q_0(b, True),
           GGML_Q4_1: lambda b: _q_1(b, False), GGML_Q5_1: lambda b: _q_1(b, True)}
QUANTIZE_TYPES = (GGML_F32, GGML_F16, GGML_BF16, *_BLOCKS)


def quantize(tensor: torch.Tensor, ggml_type: int) -> torch.Tensor:
    """``tensor`` (its last dimension a multiple of 32 for the block types) as the flat uint8
    bytes GGUF stores for ``ggml_type``. Raises ``ValueError`` for a type it cannot write."""
    t = tensor.detach().to("cpu")
    if ggml_type == GGML_F32:
        return t.to(torch.float32).contiguous().reshape(-1).view(torch.uint8)
    if ggml_type == GGML_F16:
        return t.to(torch.float16).contiguous().reshape(-1).view(torch.uint8)
    if ggml_type == GGML_BF16:
        return t.to(torch.bfloat16).contiguous().reshape(-1).view(torch.uint8)
    fn = _BLOCKS.get(ggml_type)
    if fn is None:
        raise ValueError(f"cannot quantize to {type_name(ggml_type)}; supported: "
                         f"{', '.join(type_name(q) for q in QUANTIZE_TYPES)}")
    if t.shape[-1] % 32:
        raise ValueError(f"rows of {t.shape[-1]} values do not split into {type_name(ggml_type)}'s "
                         "blocks of 32")
    blocks = t.to(torch.float32).contiguous().numpy().reshape(-1, 32)
    return torch.from_numpy(np.ascontiguousarray(fn(blocks)).reshape(-1))
