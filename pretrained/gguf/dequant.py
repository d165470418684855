"""Dequantizers for the GGML tensor types a GGUF file stores, vectorised with numpy.

Each quantized type packs ``block`` values into ``size`` bytes; a row of a tensor is a run of
whole blocks. :func:`dequantize` turns the raw bytes of a tensor into float32 values with the
same arithmetic (and the same float32 rounding) as the ``gguf`` package's reference
implementation, so results are bit-identical to it. The work is done in numpy, in place:
single-threaded, it is both faster and steadier than torch's thread pool on a busy 2-core CPU.

Block layouts (little-endian; ``f16`` = IEEE half):

* ``Q8_0``: f16 d, 32 x int8 q;                      x = q * d
* ``Q4_0``: f16 d, 16 bytes of nibbles;              x = (q - 8) * d
* ``Q4_1``: f16 d, f16 m, 16 bytes of nibbles;       x = q * d + m
* ``Q5_0``/``Q5_1``: as Q4 plus a u32 of fifth bits;  x = (q - 16) * d  /  q * d + m
* ``Q4_K``: super-block of 256 = 8 sub-blocks of 32: f16 d, f16 dmin, 12 bytes of 6-bit
  scales/mins, 128 bytes of nibbles;                  x = d*sc * q - dmin*m
* ``Q5_K``: as Q4_K plus 32 bytes of fifth bits.
* ``Q6_K``: 128 bytes low nibbles, 64 bytes high 2-bit pairs, 16 int8 scales, f16 d;
  16 sub-blocks of 16;                                x = d*sc * (q - 32)

In a nibble block of 32 the low nibbles hold values 0..15 and the high nibbles 16..31.

Example::

    >>> import torch
    >>> from pretrained.gguf.dequant import dequantize, GGML_Q8_0
    >>> block = torch.tensor([0, 0x3C] + [2] * 32, dtype=torch.uint8)   # d = 1.0, q = 2
    >>> dequantize(block, GGML_Q8_0, (32,))[:3]
    tensor([2., 2., 2.])
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

__all__ = ["GGML_TYPES", "SUPPORTED_TYPES", "type_name", "tensor_nbytes", "dequantize",
           "GGML_F32", "GGML_F16", "GGML_BF16", "GGML_Q4_0", "GGML_Q4_1", "GGML_Q5_0",
           "GGML_Q5_1", "GGML_Q8_0", "GGML_Q4_K", "GGML_Q5_K", "GGML_Q6_K"]

GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q4_1, GGML_Q5_0, GGML_Q5_1, GGML_Q8_0 = 0, 1, 2, 3, 6, 7, 8
GGML_Q4_K, GGML_Q5_K, GGML_Q6_K, GGML_BF16 = 12, 13, 14, 30

# ggml type id -> (name, values per block, bytes per block), for every type a GGUF may hold,
# so an error can name the type even where we cannot read it.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
}


def type_name(ggml_type: int) -> str:
    entry = GGML_TYPES.get(ggml_type)
    return entry[0] if entry else f"unknown type {ggml_type}"


def tensor_nbytes(ggml_type: int, n_values: int) -> int | None:
    """Bytes a tensor of ``n_values`` takes, or ``None`` for a type we do not know."""
    entry = GGML_TYPES.get(ggml_type)
    if entry is None:
        return None
    _, block, size = entry
    return (n_values // block) * size


# --- helpers: numpy, single-threaded and in place (no thread pool to stall on a busy machine) --
def _f16(blocks: np.ndarray, start: int, count: int = 1) -> np.ndarray:
    """``count`` f16 values at byte ``start`` of each block, as float32 of shape (n, count)."""
    return np.ascontiguousarray(blocks[:, start:start + 2 * count]).view(np.float16).astype(np.float32)


def _split_nibbles(qs: np.ndarray, out: np.ndarray) -> np.ndarray:
    """(..., k) bytes -> ``out`` (..., 2, k): low nibbles first, then high nibbles."""
    np.bitwise_and(qs, 0x0F, out=out[..., 0, :], casting="unsafe")
    np.right_shift(qs, 4, out=out[..., 1, :], casting="unsafe")
    return out


def _k_scales(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K/Q5_K: 12 bytes -> eight 6-bit scales and eight 6-bit mins, as float32 (n, 8).

    Bytes 0-3 hold scales 0-3 (low 6 bits) and the top 2 bits of scales 4-7; bytes 4-7 the same
    for the mins; bytes 8-11 hold the low 4 bits of scales 4-7 (low nibble) and mins 4-7 (high)."""
    d, m, md = scales[:, 0:4], scales[:, 4:8], scales[:, 8:12]
    sc = np.concatenate((d & 0x3F, (md & 0x0F) | ((d >> 2) & 0x30)), axis=1)
    mn = np.concatenate((m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)), axis=1)
    return sc.astype(np.float32), mn.astype(np.float32)


# --- one function per type: (n_blocks, bytes) uint8 -> (n_blocks, values) float32 ---------------
def _q8_0(b: np.ndarray) -> np.ndarray:
    out = b[:, 2:].view(np.int8).astype(np.float32)
    out *= _f16(b, 0)
    return out


def _q4_0(b: np.ndarray) -> np.ndarray:
    out = _split_nibbles(b[:, 2:], np.empty((len(b), 2, 16), np.float32)).reshape(len(b), 32)
    out -= 8.0
    out *= _f16(b, 0)
    return out


def _q4_1(b: np.ndarray) -> np.ndarray:
    dm = _f16(b, 0, 2)
    out = _split_nibbles(b[:, 4:], np.empty((len(b), 2, 16), np.float32)).reshape(len(b), 32)
    out *= dm[:, 0:1]
    out += dm[:, 1:2]
    return out


def _q5(b: np.ndarray, qh_at: int) -> np.ndarray:
    n = len(b)
    # 32 fifth bits in a little-endian u32: value j takes bit j
    qh = np.ascontiguousarray(b[:, qh_at:qh_at + 4]).view("<u4")
    high = ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8)
    low = _split_nibbles(b[:, qh_at + 4:], np.empty((n, 2, 16), np.uint8)).reshape(n, 32)
    return (low | (high << 4)).astype(np.float32)


def _q5_0(b: np.ndarray) -> np.ndarray:
    out = _q5(b, 2)
    out -= 16.0
    out *= _f16(b, 0)
    return out


def _q5_1(b: np.ndarray) -> np.ndarray:
    dm = _f16(b, 0, 2)
    out = _q5(b, 4)
    out *= dm[:, 0:1]
    out += dm[:, 1:2]
    return out


def _k_factors(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(b)
    dd = _f16(b, 0, 2)
    sc, mn = _k_scales(b[:, 4:16])
    return (dd[:, 0:1] * sc).reshape(n, 8, 1), (dd[:, 1:2] * mn).reshape(n, 8, 1)


def _q4_k(b: np.ndarray) -> np.ndarray:
    n = len(b)
    d, dm = _k_factors(b)
    # 4 chunks of 32 bytes; chunk i gives sub-block 2i (low nibbles) and 2i+1 (high nibbles)
    out = _split_nibbles(b[:, 16:].reshape(n, 4, 32), np.empty((n, 4, 2, 32), np.float32))
    out = out.reshape(n, 8, 32)
    out *= d
    out -= dm
    return out.reshape(n, 256)


def _q5_k(b: np.ndarray) -> np.ndarray:
    n = len(b)
    d, dm = _k_factors(b)
    low = _split_nibbles(b[:, 48:].reshape(n, 4, 32), np.empty((n, 4, 2, 32), np.uint8))
    # sub-block j takes bit j of each of the 32 qh bytes
    high = (b[:, None, 16:48] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1
    out = (low.reshape(n, 8, 32) | (high << 4)).astype(np.float32)
    out *= d
    out -= dm
    return out.reshape(n, 256)


def _q6_k(b: np.ndarray) -> np.ndarray:
    n = len(b)
    ql, qh = b[:, 0:128], b[:, 128:192]
    d = (_f16(b, 208) * b[:, 192:208].view(np.int8).astype(np.float32)).reshape(n, 16, 1)
    # two halves of 128 values; in each, 64 ql bytes give 4 groups of 32 (low nibbles of bytes
    # 0-31, of 32-63, then high nibbles of both) and 32 qh bytes their top 2 bits at shifts
    # 0, 2, 4, 6.
    low = _split_nibbles(ql.reshape(n, 2, 64), np.empty((n, 2, 2, 64), np.uint8))
    low = low.reshape(n, 2, 4, 32)
    high = (qh.reshape(n, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)) & 3
    q = (low | (high << 4)).view(np.int8).astype(np.float32)
    q -= 32.0
    q = q.reshape(n, 16, 16)
    q *= d
    return q.reshape(n, 256)


_DEQUANT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    GGML_Q8_0: _q8_0, GGML_Q4_0: _q4_0, GGML_Q4_1: _q4_1, GGML_Q5_0: _q5_0, GGML_Q5_1: _q5_1,
    GGML_Q4_K: _q4_k, GGML_Q5_K: _q5_k, GGML_Q6_K: _q6_k,
}
_FLOAT_TYPES = {GGML_F32: torch.float32, GGML_F16: torch.float16, GGML_BF16: torch.bfloat16}
SUPPORTED_TYPES: tuple[str, ...] = tuple(type_name(t) for t in (*_FLOAT_TYPES, *_DEQUANT))


def dequantize(raw: torch.Tensor | np.ndarray, ggml_type: int, shape: tuple[int, ...],
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Raw bytes (a flat uint8 tensor or array) of one tensor -> values of ``shape`` in ``dtype``.

    Float types are reinterpreted (no arithmetic); quantized ones are computed in float32 (as
    the reference does) and cast once at the end. Raises ``ValueError`` for a type without a
    dequantizer."""
    if ggml_type in _FLOAT_TYPES:
        t = torch.as_tensor(raw).view(_FLOAT_TYPES[ggml_type]).reshape(shape)
        return t.to(dtype) if t.dtype != dtype else t
    fn = _DEQUANT.get(ggml_type)
    if fn is None:
        raise ValueError(f"no dequantizer for ggml type {type_name(ggml_type)}; supported: "
                         f"{', '.join(SUPPORTED_TYPES)}")
    _, block, size = GGML_TYPES[ggml_type]
    blocks = (raw.numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw)).reshape(-1, size)
    t = torch.from_numpy(fn(blocks)).view(shape)
    return t if dtype == torch.float32 else t.to(dtype)
