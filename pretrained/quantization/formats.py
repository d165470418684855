"""The number formats of bitsandbytes-style quantization, as plain tensor math (no kernels).

- **int8 per row** (LLM.int8()'s weight format): each output row scaled by its absolute maximum
  to [-127, 127] and rounded; the row maxima (``SCB``, float32) undo it. As bitsandbytes does, the
  weight is rounded to float16 first, so a checkpoint written here is byte-equal to its own.
- **4-bit blockwise** (QLoRA): the flattened weight in blocks of ``blocksize`` (64) values, each
  block divided by its absolute maximum (``absmax``, float32) and rounded to the nearest of 16
  code values: NF4 (quantiles of a normal distribution) or FP4 (1 sign, 2 exponent, 1 mantissa
  bit). Two codes per byte, the first in the high nibble.
- **8-bit blockwise with the dynamic map** (double quantization): the 4-bit ``absmax`` values,
  less their mean (``offset``), in blocks of 256, each rounded to the nearest of 256 values of the
  signed dynamic-exponent map; their own float32 maxima (``nested_absmax``) undo it.
- the quantization state's non-tensor fields (type, block size, dtype, shape, nested fields) as
  JSON bytes in a uint8 tensor, the way bitsandbytes stores them in a safetensors file.

Example::

    >>> import torch
    >>> w = torch.randn(8, 64)
    >>> packed, absmax = quantize_4bit(w, 64, "nf4")
    >>> packed.shape, absmax.shape
    (torch.Size([256, 1]), torch.Size([8]))
    >>> back = dequantize_4bit(packed, absmax, 64, "nf4", (8, 64), torch.float32)
    >>> bool((back - w).abs().max() <= w.abs().max() * 0.16)   # the widest NF4 gap is 0.3
    True
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import torch

BLOCKSIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)
NESTED_BLOCKSIZE = 256      # bitsandbytes' block size for the quantized absmax (double quant)
QUANT_TYPES = ("nf4", "fp4")

# NF4: the 16 values of the QLoRA paper (quantiles of N(0, 1) normalised to [-1, 1], with an
# exact zero), in code order 0..15.
_NF4 = (-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
        -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
        0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
        0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0)
# FP4 (e2m1 with bitsandbytes' exponent order): codes 0..7 are the positive values of the bit
# patterns 000..111, codes 8..15 the same with the sign bit set; normalised by the largest (12).
_FP4_MAGNITUDES = (0.0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0)


@lru_cache(maxsize=None)
def _code_cpu(quant_type: str) -> torch.Tensor:
    if quant_type == "nf4":
        return torch.tensor(_NF4, dtype=torch.float32, device="cpu")
    if quant_type == "fp4":
        mags = torch.tensor(_FP4_MAGNITUDES, dtype=torch.float32, device="cpu") / 12.0
        code = torch.cat([mags, -mags])
        code[8] = 0.0   # the sign bit over zero: +0.0 in bitsandbytes' table (the saved bytes)
        return code
    raise ValueError(f"unknown 4-bit type {quant_type!r}; use one of {QUANT_TYPES}")


def code_4bit(quant_type: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """The 16 float32 values a 4-bit code stands for (``quant_map`` in a checkpoint); a new
    tensor each call (safetensors refuses tensors that share storage)."""
    return _code_cpu(quant_type).to(device, copy=True)


@lru_cache(maxsize=None)
def _dynamic_map_cpu() -> torch.Tensor:
    # Dettmers' signed dynamic map: for exponent e = 0..6, 2**e evenly spaced fractions in
    # [0.1, 1] (midpoints of 2**e + 1 float32 edges) scaled by 10**(e - 6), both signs, plus 0 and
    # 1: 256 values, sorted. Edges and products in float32, as bitsandbytes computes them, so the
    # table is the same to the bit.
    values = [0.0, 1.0]
    for e in range(7):
        edges = torch.linspace(0.1, 1.0, 2 ** e + 1, dtype=torch.float32, device="cpu")
        mids = (edges[:-1] + edges[1:]) / 2.0
        scale = 10.0 ** (e - 6)
        values += (scale * mids).tolist() + (-scale * mids).tolist()
    return torch.tensor(sorted(values), dtype=torch.float32, device="cpu")


def dynamic_map(device: torch.device | str = "cpu") -> torch.Tensor:
    """The 256-value signed dynamic map the nested absmax is quantized with (a new tensor)."""
    return _dynamic_map_cpu().to(device, copy=True)


def _nearest(scaled: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code value (ties to the lower value), for a code in any order."""
    values, order = torch.sort(code, stable=True)
    bounds = (values[:-1] + values[1:]) / 2
    return order.to(scaled.device)[torch.bucketize(scaled, bounds.to(scaled.device))]


def _blocks(flat: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``flat`` (float32) scaled into [-1, 1] per block, and the block maxima (the last block may
    be short)."""
    n = flat.numel()
    pad = -n % blocksize
    padded = torch.nn.functional.pad(flat, (0, pad)).view(-1, blocksize)
    absmax = padded.abs().amax(dim=1)
    # an all-zero block scales by 0 (its values code 0.0), not by 1/0
    scale = torch.where(absmax > 0, 1.0 / absmax, torch.zeros_like(absmax))
    scaled = (padded * scale.unsqueeze(1)).clamp(-1, 1).reshape(-1)[:n]
    return scaled, absmax


def quantize_4bit(weight: torch.Tensor, blocksize: int, quant_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` (any float dtype) -> (packed uint8 of shape (ceil(n / 2), 1), absmax float32)."""
    scaled, absmax = _blocks(weight.reshape(-1).float(), blocksize)
    if scaled.numel() % 2:   # an odd count: the last byte's low nibble codes a zero
        scaled = torch.cat([scaled, scaled.new_zeros(1)])
    q = _nearest(scaled, code_4bit(quant_type)).to(torch.uint8)
    return ((q[0::2] << 4) | q[1::2]).unsqueeze(1), absmax


def unpack_4bit(packed: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n`` 4-bit codes (int64) of a packed uint8 tensor, high nibble first."""
    flat = packed.reshape(-1).view(torch.uint8)
    return torch.stack([flat >> 4, flat & 0xF], dim=1).reshape(-1)[:n].long()


def dequantize_4bit(packed: torch.Tensor, absmax: torch.Tensor, blocksize: int, quant_type: str | torch.Tensor,
                    shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Packed codes -> values: code value times its block's absmax, in float32, then ``dtype``.
    ``quant_type``: "nf4", "fp4", or the 16 code values themselves (a checkpoint's quant_map)."""
    n = 1
    for s in shape:
        n *= s
    code = code_4bit(quant_type, packed.device) if isinstance(quant_type, str) else quant_type.float()
    values = code[unpack_4bit(packed, n)]
    scales = absmax.float().repeat_interleave(blocksize)[:n]
    return (values * scales).reshape(shape).to(dtype)


def quantize_blockwise_8bit(x: torch.Tensor, blocksize: int = NESTED_BLOCKSIZE
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` -> (uint8 codes of the dynamic map, float32 block maxima)."""
    scaled, absmax = _blocks(x.reshape(-1).float(), blocksize)
    return _nearest(scaled, dynamic_map()).to(torch.uint8).reshape(x.shape), absmax


def dequantize_blockwise_8bit(codes: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor,
                              blocksize: int = NESTED_BLOCKSIZE) -> torch.Tensor:
    """Dynamic-map codes -> float32 values (code value times the block maximum)."""
    values = code.float()[codes.reshape(-1).long()]
    return values * absmax.float().repeat_interleave(blocksize)[:values.numel()]


def compress_absmax(absmax: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Double quantization: (uint8 codes, nested absmax, offset) for a float32 absmax."""
    offset = absmax.mean()
    codes, nested = quantize_blockwise_8bit(absmax - offset)
    return codes, nested, offset.item()


def decompress_absmax(codes: torch.Tensor, nested_absmax: torch.Tensor, nested_code: torch.Tensor,
                      offset: float) -> torch.Tensor:
    """The float32 absmax back from its double-quantized form."""
    return dequantize_blockwise_8bit(codes, nested_absmax, nested_code) + offset


# --- int8 per output row ----------------------------------------------------------------------
def quantize_rows_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) float weight -> (int8 weight, float32 row absmax ``SCB``); ``w ~ q * SCB / 127``.
    The weight is rounded to float16 first, as bitsandbytes does (its SCB are float16 values)."""
    w = weight.to(torch.float16)
    scb = w.abs().amax(dim=1).float()
    q = torch.round(w * (127.0 / scb.clamp(min=1e-38)).unsqueeze(1)).to(torch.int8)
    return q.contiguous(), scb


def dequantize_rows_int8(q: torch.Tensor, scb: torch.Tensor) -> torch.Tensor:
    """int8 weight and its row absmax -> float32 weight."""
    return q.float() * (scb.float() * (1.0 / 127.0)).unsqueeze(1)


# --- the quantization state's JSON ----------------------------------------------------------
def pack_json(data: dict[str, Any]) -> torch.Tensor:
    """A dict as the uint8 tensor of its JSON text (how safetensors files carry it)."""
    return torch.tensor(list(json.dumps(data).encode("utf-8")), dtype=torch.uint8)


def unpack_json(tensor: torch.Tensor) -> dict[str, Any]:
    """The dict back from :func:`pack_json`'s tensor; ValueError if it is not a JSON object."""
    data = json.loads(bytes(tensor.reshape(-1).to(torch.uint8).tolist()).decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError("the quantization state is not a JSON object")
    return data


__all__ = ["quantize_4bit", "dequantize_4bit", "unpack_4bit", "code_4bit", "dynamic_map",
           "quantize_blockwise_8bit", "dequantize_blockwise_8bit", "compress_absmax",
           "decompress_absmax", "quantize_rows_int8", "dequantize_rows_int8", "pack_json",
           "unpack_json", "BLOCKSIZES", "QUANT_TYPES", "NESTED_BLOCKSIZE"]
