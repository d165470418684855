"""Bit packing of the GPTQ and AWQ checkpoint layouts, as plain tensor math.

Every layout here holds the same four things, which this module calls the *codes*:

- ``q``      uint8 (out, in): the integer code of each weight, in ``[0, 2**bits)``;
- ``zeros``  int32 (groups, out): the true zero point of each group (no offset);
- ``scales`` float16 (groups, out);
- ``g_idx``  int32 (in,): the group of each input column,

so that ``W[o, i] = scales[g_idx[i], o] * (q[o, i] - zeros[g_idx[i], o])``. The layouts differ
only in how ``q`` and ``zeros`` sit in int32 words:

- **GPTQ** (AutoGPTQ / GPTQModel): ``qweight`` int32 (ceil(in * bits / 32), out), each output
  column a little-endian bit stream *along the input*: code ``i`` at bit ``bits * i`` of the
  stream (3-bit codes cross word boundaries: 32 codes in 3 words). ``qzeros`` int32 (groups,
  ceil(out * bits / 32)): each group's zeros a bit stream *along the output*. The v1 format
  (``checkpoint_format: "gptq"``) stores ``zero - 1`` in a field of ``bits`` bits (so a zero of
  0 cannot be stored: it reads back as ``2**bits``); v2 (``"gptq_v2"``) stores the zero itself.
- **AWQ GEMM** (AutoAWQ ``version: "gemm"``, 4-bit): ``qweight`` int32 (in, out / 8) and
  ``qzeros`` int32 (groups, out / 8), eight codes a word *along the output*, interleaved: the
  code at nibble ``k`` belongs to output ``8 * word + AWQ_ORDER[k]``. ``scales`` (groups, out).
- **AWQ GEMV** (``version: "gemv"``, 4-bit): ``qweight`` int32 (out, in / 8), eight codes a word
  along the input in plain order; ``qzeros`` int32 (out, W) the zeros along the groups, and
  ``scales`` float16 (out, 8 W), both padded with zeros to a width ``W`` (see
  :func:`gemv_zeros_width`).

Example::

    >>> import torch
    >>> q = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]], dtype=torch.uint8)
    >>> hex(pack_bits(q, 4).item() & 0xFFFFFFFF)   # int32 words: the top bit is the sign
    '0x87654321'
    >>> unpack_bits(pack_bits(q, 3), 3, 8).tolist()
    [[1, 2, 3, 4, 5, 6, 7, 0]]
"""

from __future__ import annotations

from functools import lru_cache

import torch

BITS = (2, 3, 4, 8)
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)          # nibble k of a word holds output AWQ_ORDER[k]
AWQ_REVERSE_ORDER = (0, 4, 1, 5, 2, 6, 3, 7)  # its inverse: output j sits at nibble REVERSE[j]
_MASK32 = (1 << 32) - 1


def words_for(n: int, bits: int) -> int:
    """How many int32 words hold ``n`` codes of ``bits`` bits."""
    return -(-n * bits // 32)


@lru_cache(maxsize=64)
def _positions(n: int, bits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each of ``n`` codes: its word, its bit offset there, and whether it spills into the
    next word."""
    start = torch.arange(n, dtype=torch.int64) * bits
    word, offset = start // 32, start % 32
    return word, offset, offset + bits > 32


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes (..., n) in ``[0, 2**bits)`` -> int32 words (..., ceil(n * bits / 32)): a
    little-endian bit stream along the last axis (unused high bits zero)."""
    n = codes.shape[-1]
    word, offset, spills = _positions(n, bits)
    v = codes.to(torch.int64) & ((1 << bits) - 1)
    out = torch.zeros(*codes.shape[:-1], words_for(n, bits), dtype=torch.int64)
    # fields never overlap, so adding them is OR-ing them
    out.index_add_(-1, word, (v << offset) & _MASK32)
    if bool(spills.any()):
        cols = spills.nonzero().view(-1)
        out.index_add_(-1, word[cols] + 1, v[..., cols] >> (32 - offset[cols]))
    return (out - ((out >> 31) << 32)).to(torch.int32)   # unsigned 32 -> the same bits as int32


def unpack_bits(words: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """The first ``n`` codes (uint8, ``bits`` <= 8) of the bit streams in int32 ``words`` (..., w)."""
    word, offset, spills = _positions(n, bits)
    w = words.to(torch.int64) & _MASK32
    low = w.index_select(-1, word) >> offset
    if bool(spills.any()):
        nxt = torch.where(spills, word + 1, word).clamp(max=w.shape[-1] - 1)
        high = (w.index_select(-1, nxt) << (32 - offset)) * spills
        low = low | high
    return (low & ((1 << bits) - 1)).to(torch.uint8)


# --- GPTQ --------------------------------------------------------------------------------------
def pack_gptq(q: torch.Tensor, zeros: torch.Tensor, bits: int, v1: bool = True
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes (out, in) and zeros (groups, out) -> (qweight, qzeros) in GPTQ's layout; ``v1``
    stores ``zero - 1`` (AutoGPTQ's convention; a zero of 0 then needs v2)."""
    if v1 and bool((zeros < 1).any()):
        raise ValueError("a zero point of 0 has no GPTQ v1 form (it stores zero - 1); write checkpoint_format "
                         "'gptq_v2', or quantize with zeros >= 1")
    qweight = pack_bits(q, bits)           # one stream along the input per output column
    return qweight.t().contiguous(), pack_bits(zeros - int(v1), bits)


def unpack_gptq(qweight: torch.Tensor, qzeros: torch.Tensor, bits: int, in_features: int,
                out_features: int, v1: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(qweight, qzeros) in GPTQ's layout -> codes uint8 (out, in) and zeros int32 (groups, out).
    v1 adds the 1 back after reading the field (a stored 2**bits - 1 reads as 2**bits)."""
    q = unpack_bits(qweight.t(), bits, in_features)
    zeros = unpack_bits(qzeros, bits, out_features).to(torch.int32) + int(v1)
    return q, zeros


def default_g_idx(in_features: int, group_size: int) -> torch.Tensor:
    """Each input column's group without act-order: ``i // group_size`` (-1: one group)."""
    gs = in_features if group_size in (-1, 0) or group_size >= in_features else group_size
    return (torch.arange(in_features) // gs).to(torch.int32)


# --- AWQ ---------------------------------------------------------------------------------------
def awq_interleave(x: torch.Tensor) -> torch.Tensor:
    """(rows, out) -> the same values in AWQ's nibble order within each run of 8 outputs; see
    :func:`awq_deinterleave` for the way back."""
    rows, out = x.shape
    return x.reshape(rows, out // 8, 8)[..., list(AWQ_ORDER)].reshape(rows, out)


def awq_deinterleave(x: torch.Tensor) -> torch.Tensor:
    rows, out = x.shape
    return x.reshape(rows, out // 8, 8)[..., list(AWQ_REVERSE_ORDER)].reshape(rows, out)


def pack_awq_gemm(q: torch.Tensor, zeros: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes (out, in) and zeros (groups, out) -> (qweight (in, out/8), qzeros (groups, out/8))."""
    return pack_bits(awq_interleave(q.t()), 4), pack_bits(awq_interleave(zeros), 4)


def unpack_awq_gemm(qweight: torch.Tensor, qzeros: torch.Tensor, out_features: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """AWQ GEMM's (qweight, qzeros) -> codes uint8 (out, in) and zeros int32 (groups, out)."""
    q = awq_deinterleave(unpack_bits(qweight, 4, out_features)).t().contiguous()
    return q, awq_deinterleave(unpack_bits(qzeros, 4, out_features)).to(torch.int32)


def gemv_zeros_width(in_features: int, group_size: int) -> int:
    """AutoAWQ GEMV's qzeros width: the groups in words of 8, rounded up to a multiple of 1, 2 or
    4 words for group sizes >= 128, 64, 32 (its kernels read zeros in those strides)."""
    gs = in_features if group_size == -1 else group_size
    mult = 1 if gs >= 128 else {64: 2, 32: 4}.get(gs)
    if mult is None:
        raise ValueError(f"AWQ GEMV has no layout for group_size {group_size} (it takes 32, 64 or >= 128)")
    base = -(-(-(-in_features // gs)) // 8)
    return -(-base // mult) * mult


def pack_awq_gemv(q: torch.Tensor, zeros: torch.Tensor, scales: torch.Tensor, group_size: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Codes (out, in), zeros and scales (groups, out) -> GEMV's (qweight, qzeros, scales)."""
    out, n_in = q.shape
    width = gemv_zeros_width(n_in, group_size)
    z = torch.zeros(out, width * 8, dtype=torch.int32)
    z[:, : zeros.shape[0]] = zeros.t()
    s = torch.zeros(out, width * 8, dtype=torch.float16)
    s[:, : scales.shape[0]] = scales.t()
    return pack_bits(q, 4), pack_bits(z, 4)[:, :width].contiguous(), s


def unpack_awq_gemv(qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor, in_features: int,
                    groups: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GEMV's (qweight, qzeros, scales) -> codes (out, in), zeros int32 and scales (groups, out)."""
    q = unpack_bits(qweight, 4, in_features)
    zeros = unpack_bits(qzeros, 4, groups).to(torch.int32).t().contiguous()
    return q, zeros, scales[:, :groups].t().contiguous()


__all__ = ["BITS", "AWQ_ORDER", "AWQ_REVERSE_ORDER", "words_for", "pack_bits", "unpack_bits", "pack_gptq",
           "awq_interleave", "awq_deinterleave",
           "unpack_gptq", "default_g_idx", "pack_awq_gemm", "unpack_awq_gemm", "gemv_zeros_width",
           "pack_awq_gemv", "unpack_awq_gemv"]
