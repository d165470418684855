"""``Linear4bit``: a linear layer with NF4 or FP4 weights in blocks (QLoRA's format), with the
state_dict of bitsandbytes' serialized ``Linear4bit``:

    weight                                  uint8 (out * in / 2, 1): two codes a byte, high first
    weight.absmax                           float32 per block, or uint8 codes (double quant)
    weight.quant_map                        float32 (16,): the code values
    weight.nested_absmax                    float32 per 256 absmax values      (double quant)
    weight.nested_quant_map                 float32 (256,): the dynamic map    (double quant)
    weight.quant_state.bitsandbytes__nf4    uint8: JSON {quant_type, blocksize, dtype, shape,
                                            nested_blocksize, nested_dtype, nested_offset}

Its forward is the plain math: dequantize (code value x block absmax, in float32, then the dtype
the weight had) and a dense product in ``compute_dtype``; the backend
(:mod:`pretrained.backends.quantized`) swaps in a faster dequantization with the same numbers.

Example::

    >>> import torch
    >>> lin = torch.nn.Linear(64, 8)
    >>> q = Linear4bit.from_float(lin.weight, lin.bias, quant_type="nf4", double_quant=True)
    >>> sorted(q.state_dict())[:3]
    ['bias', 'weight', 'weight.absmax']
    >>> bool((q(torch.randn(2, 64)) - lin(torch.randn(2, 64))).abs().max() < 10)
    True
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointCorruptError
from .formats import (BLOCKSIZES, NESTED_BLOCKSIZE, QUANT_TYPES, code_4bit, compress_absmax,
                      decompress_absmax, dequantize_4bit, dynamic_map, pack_json, quantize_4bit,
                      unpack_json)
from .int8 import QuantizedLinear

STATE_PREFIX = "quant_state.bitsandbytes__"
_DTYPE_NAMES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class Linear4bit(QuantizedLinear):
    """4-bit blockwise weights (NF4 or FP4), optionally double-quantized; computed in
    ``compute_dtype`` and returned in the input's dtype."""

    _keep_dtype = ("absmax", "quant_map", "nested_absmax", "nested_quant_map")

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, quant_type: str = "nf4",
                 blocksize: int = 64, compute_dtype: torch.dtype = torch.float32,
                 weight_dtype: torch.dtype = torch.float32, quant_storage: torch.dtype = torch.uint8,
                 device: Any = None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.quant_type, self.blocksize = quant_type, blocksize
        self.compute_dtype, self.weight_dtype, self.quant_storage = compute_dtype, weight_dtype, quant_storage
        self.nested_offset: float | None = None   # set when the absmax is double-quantized
        n = in_features * out_features
        self.weight = nn.Parameter(torch.empty((n + 1) // 2, 1, dtype=torch.uint8, device=device),
                                   requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=weight_dtype, device=device)) if bias else None
        # non-persistent: _save_to_state_dict writes them under bitsandbytes' names
        self.register_buffer("absmax", torch.ones(-(-n // blocksize), device=device), persistent=False)
        self.register_buffer("quant_map", code_4bit(quant_type, device or "cpu"), persistent=False)
        self.register_buffer("nested_absmax", None, persistent=False)
        self.register_buffer("nested_quant_map", None, persistent=False)

    @property
    def double_quant(self) -> bool:
        return self.nested_offset is not None

    # --- building ---------------------------------------------------------------------------
    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: torch.Tensor | None, *, quant_type: str = "nf4",
                   blocksize: int = 64, double_quant: bool = False, compute_dtype: torch.dtype = torch.float32,
                   quant_storage: torch.dtype = torch.uint8) -> "Linear4bit":
        """Quantize an (out, in) float weight; the bias is kept as it is."""
        w = weight.detach()
        packed, absmax = quantize_4bit(w, blocksize, quant_type)
        m = cls._empty(w.shape, bias, quant_type, blocksize, compute_dtype, w.dtype, quant_storage)
        m.weight = nn.Parameter(packed, requires_grad=False)
        if double_quant:
            codes, nested, offset = compress_absmax(absmax)
            m._set_stats(codes, code_4bit(quant_type), nested, dynamic_map(), offset)
        else:
            m._set_stats(absmax, code_4bit(quant_type))
        return m

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], bias: torch.Tensor | None, *,
                   compute_dtype: torch.dtype, where: str = "") -> "Linear4bit":
        """From a checkpoint's tensors of one layer, named as in the module doc without the
        ``weight.`` prefix (``""`` for the packed weight itself). Checked before use:
        a damaged or foreign state is a :class:`CheckpointCorruptError` naming ``where``."""
        def bad(why: str) -> CheckpointCorruptError:
            return CheckpointCorruptError(f"{where}: not a bitsandbytes 4-bit weight: {why}")

        states = [k for k in tensors if k.startswith(STATE_PREFIX)]
        if len(states) != 1:
            raise bad(f"expected one {STATE_PREFIX}nf4 or ...fp4 entry, found {states}")
        try:
            info = unpack_json(tensors[states[0]])
        except (ValueError, UnicodeDecodeError) as e:
            raise bad(f"its quant_state is not JSON ({e})") from None
        qt, bs, shape = info.get("quant_type"), info.get("blocksize"), info.get("shape")
        if qt not in QUANT_TYPES or states[0] != STATE_PREFIX + qt:
            raise bad(f"quant_type {qt!r}")
        if bs not in BLOCKSIZES or not (isinstance(shape, list) and len(shape) == 2
                                        and all(isinstance(s, int) and s > 0 for s in shape)):
            raise bad(f"blocksize {bs!r} / shape {shape!r}")
        dtype = _DTYPE_NAMES.get(info.get("dtype"))
        if dtype is None:
            raise bad(f"dtype {info.get('dtype')!r}")
        n = shape[0] * shape[1]
        packed = tensors[""].reshape(-1).contiguous().view(torch.uint8)
        blocks = -(-n // bs)
        absmax = tensors.get("absmax")
        if packed.numel() != (n + 1) // 2 or absmax is None or absmax.numel() != blocks:
            raise bad(f"sizes do not fit shape {shape} (weight {packed.numel()} bytes, absmax "
                      f"{None if absmax is None else absmax.numel()} values)")
        m = cls._empty(torch.Size(shape), bias, qt, bs, compute_dtype, dtype,
                       tensors[""].dtype if tensors[""].dtype != torch.uint8 else torch.uint8)
        m.weight = nn.Parameter(packed.reshape(-1, 1), requires_grad=False)
        qmap = tensors.get("quant_map", code_4bit(qt)).float()
        if qmap.numel() != 16:
            raise bad(f"quant_map has {qmap.numel()} values, not 16")
        if "nested_absmax" in tensors:
            nested, nmap = tensors["nested_absmax"], tensors.get("nested_quant_map")
            if info.get("nested_blocksize", NESTED_BLOCKSIZE) != NESTED_BLOCKSIZE or nmap is None \
                    or nmap.numel() != 256 or nested.numel() != -(-blocks // NESTED_BLOCKSIZE) \
                    or absmax.dtype != torch.uint8 or not isinstance(info.get("nested_offset"), (int, float)):
                raise bad("its double-quantization entries do not fit together")
            m._set_stats(absmax, qmap, nested.float(), nmap.float(), float(info["nested_offset"]))
        else:
            m._set_stats(absmax.float(), qmap)
        return m

    @classmethod
    def _empty(cls, shape: torch.Size, bias: torch.Tensor | None, quant_type: str, blocksize: int,
               compute_dtype: torch.dtype, weight_dtype: torch.dtype, quant_storage: torch.dtype) -> "Linear4bit":
        with torch.device("meta"):
            m = cls(shape[1], shape[0], bias is not None, quant_type=quant_type, blocksize=blocksize,
                    compute_dtype=compute_dtype, weight_dtype=weight_dtype, quant_storage=quant_storage)
        m.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=bias.requires_grad)
        return m

    def _set_stats(self, absmax: torch.Tensor, quant_map: torch.Tensor, nested_absmax: torch.Tensor | None = None,
                   nested_quant_map: torch.Tensor | None = None, offset: float | None = None) -> None:
        self.absmax, self.quant_map = absmax, quant_map
        self.nested_absmax, self.nested_quant_map = nested_absmax, nested_quant_map
        self.nested_offset = offset

    # --- computing --------------------------------------------------------------------------
    def block_absmax(self) -> torch.Tensor:
        """The float32 absmax of every block (decompressed when double-quantized)."""
        if self.nested_offset is None:
            return self.absmax.float()
        return decompress_absmax(self.absmax, self.nested_absmax, self.nested_quant_map, self.nested_offset)

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The (out, in) weight, in ``dtype`` (default: the dtype it was quantized from)."""
        w = dequantize_4bit(self.weight, self.block_absmax(), self.blocksize, self.quant_map,
                            (self.out_features, self.in_features), self.weight_dtype)
        return w if dtype is None else w.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cd = self.compute_dtype
        w = self.dequantize().to(cd)
        bias = None if self.bias is None else self.bias.to(cd)
        return F.linear(x.to(cd), w, bias).to(x.dtype)

    # --- saving -----------------------------------------------------------------------------
    def quant_state_dict(self) -> dict[str, torch.Tensor]:
        """The quantization state under bitsandbytes' names (after ``weight.``)."""
        info: dict[str, Any] = {"quant_type": self.quant_type, "blocksize": self.blocksize,
                                "dtype": str(self.weight_dtype).replace("torch.", ""),
                                "shape": [self.out_features, self.in_features]}
        out = {"absmax": self.absmax, "quant_map": self.quant_map}
        if self.nested_offset is not None:
            out["nested_absmax"] = self.nested_absmax
            out["nested_quant_map"] = self.nested_quant_map.clone()
            info.update(nested_blocksize=NESTED_BLOCKSIZE, nested_dtype="float32", nested_offset=self.nested_offset)
        out[STATE_PREFIX + self.quant_type] = pack_json(info)
        return out

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        weight = self.weight if keep_vars else self.weight.detach()
        if self.quant_storage != torch.uint8:   # bitsandbytes' quant_storage: the same bytes
            weight = weight.reshape(-1).view(self.quant_storage).unsqueeze(1)
        destination[prefix + "weight"] = weight
        if self.bias is not None:
            destination[prefix + "bias"] = self.bias if keep_vars else self.bias.detach()
        for k, v in self.quant_state_dict().items():
            destination[prefix + "weight." + k] = v if keep_vars else v.detach()

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, quant_type={self.quant_type}, blocksize={self.blocksize}, "
                f"double_quant={self.double_quant}, compute_dtype={self.compute_dtype}")


__all__ = ["Linear4bit", "STATE_PREFIX"]
