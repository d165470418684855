"""``GroupQuantLinear``: a linear layer with GPTQ or AWQ weights, kept packed in the checkpoint's
own layout (``qweight``, ``qzeros``, ``scales``, and for GPTQ ``g_idx``; see
:mod:`.packing`), so ``state_dict`` / ``save_pretrained`` write back exactly what was read.

Its forward is the plain math: unpack the codes, ``W = scales[g] * (q - zeros[g])`` per input
column's group ``g``, and a dense product in the input's dtype. The backend
(:mod:`pretrained.backends.group_quant`) swaps in ``torch._weight_int4pack_mm_for_cpu`` for
4-bit codes and ``torch._weight_int8pack_mm`` for 8-bit ones.

``fmt`` names the layout: "gptq" (v1 zeros), "gptq_v2", "gemm" or "gemv" (AWQ).

Example::

    >>> import torch
    >>> q = torch.randint(0, 16, (8, 64), dtype=torch.uint8)
    >>> zeros = torch.full((2, 8), 8, dtype=torch.int32)
    >>> scales = torch.full((2, 8), 0.125, dtype=torch.float16)
    >>> m = GroupQuantLinear.from_codes(q, zeros, scales, None, None, bits=4, group_size=32, fmt="gemm")
    >>> sorted(m.state_dict()), list(m.qweight.shape)
    (['qweight', 'qzeros', 'scales'], [64, 1])
    >>> torch.equal(m.dequantize(), (q.float() - 8) * 0.125)
    True
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointCorruptError
from .int8 import QuantizedLinear
from .packing import (awq_deinterleave, default_g_idx, gemv_zeros_width, pack_awq_gemm, pack_awq_gemv, pack_gptq,
                      unpack_bits, words_for)

FORMATS = ("gptq", "gptq_v2", "gemm", "gemv")


def n_groups(in_features: int, group_size: int) -> int:
    return 1 if group_size == -1 else -(-in_features // group_size)


def layout_shapes(fmt: str, bits: int, in_features: int, out_features: int, group_size: int
                  ) -> dict[str, tuple[int, ...]]:
    """The tensor shapes of one layer in layout ``fmt``."""
    g = n_groups(in_features, group_size)
    if fmt in ("gptq", "gptq_v2"):
        return {"qweight": (words_for(in_features, bits), out_features),
                "qzeros": (g, words_for(out_features, bits)), "scales": (g, out_features), "g_idx": (in_features,)}
    if fmt == "gemm":
        return {"qweight": (in_features, out_features // 8), "qzeros": (g, out_features // 8),
                "scales": (g, out_features)}
    width = gemv_zeros_width(in_features, group_size)
    return {"qweight": (out_features, in_features // 8), "qzeros": (out_features, width),
            "scales": (out_features, width * 8)}


class GroupQuantLinear(QuantizedLinear):
    """GPTQ / AWQ codes in groups of input columns (see the module doc)."""

    _keep_dtype = ("scales",)

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, bits: int = 4,
                 group_size: int = 128, fmt: str = "gptq", device: Any = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if fmt not in FORMATS:
            raise ValueError(f"unknown layout {fmt!r}; use one of {FORMATS}")
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.group_size, self.fmt = bits, group_size, fmt
        shapes = layout_shapes(fmt, bits, in_features, out_features, group_size)
        self.register_buffer("qweight", torch.zeros(shapes["qweight"], dtype=torch.int32, device=device))
        self.register_buffer("qzeros", torch.zeros(shapes["qzeros"], dtype=torch.int32, device=device))
        self.register_buffer("scales", torch.zeros(shapes["scales"], dtype=torch.float16, device=device))
        # AWQ checkpoints have no g_idx: there it is derived, and not saved
        self.register_buffer("g_idx", default_g_idx(in_features, group_size).to(device),
                             persistent=fmt in ("gptq", "gptq_v2"))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device)) if bias else None

    @property
    def weight(self) -> torch.Tensor:
        """The packed codes (what LoRA and ``.device`` look at; never a float weight)."""
        return self.qweight

    @property
    def groups(self) -> int:
        return n_groups(self.in_features, self.group_size)

    # --- building ---------------------------------------------------------------------------
    @classmethod
    def _empty(cls, in_features: int, out_features: int, bias: torch.Tensor | None, **kw: Any) -> "GroupQuantLinear":
        with torch.device("meta"):
            m = cls(in_features, out_features, bias is not None, **kw)
        m.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=bias.requires_grad)
        return m

    @classmethod
    def from_codes(cls, q: torch.Tensor, zeros: torch.Tensor, scales: torch.Tensor, g_idx: torch.Tensor | None,
                   bias: torch.Tensor | None, *, bits: int, group_size: int, fmt: str) -> "GroupQuantLinear":
        """Pack codes (out, in), true zeros (groups, out), scales (groups, out) and the columns'
        groups (None: ``i // group_size``) into layout ``fmt``."""
        out, n_in = q.shape
        m = cls._empty(n_in, out, bias, bits=bits, group_size=group_size, fmt=fmt)
        g = default_g_idx(n_in, group_size) if g_idx is None else g_idx.to(torch.int32)
        scales = scales.to(torch.float16)
        if fmt in ("gptq", "gptq_v2"):
            qweight, qzeros = pack_gptq(q, zeros, bits, v1=fmt == "gptq")
        elif not torch.equal(g, default_g_idx(n_in, group_size)):
            raise ValueError("AWQ layouts have no g_idx: its groups are consecutive input columns")
        elif fmt == "gemm":
            qweight, qzeros = pack_awq_gemm(q, zeros)
        else:
            qweight, qzeros, scales = pack_awq_gemv(q, zeros, scales, group_size)
        m.qweight, m.qzeros, m.scales, m.g_idx = qweight, qzeros, scales.contiguous(), g.contiguous()
        return m

    @classmethod
    def from_checkpoint(cls, tensors: dict[str, torch.Tensor], bias: torch.Tensor | None, *, in_features: int,
                        out_features: int, bits: int, group_size: int, fmt: str, where: str = "") -> "GroupQuantLinear":
        """From one layer's checkpoint tensors (``qweight``, ``qzeros``, ``scales``, optional
        ``g_idx``), checked against the sizes the model and config give."""
        want = layout_shapes(fmt, bits, in_features, out_features, group_size)
        for name, shape in want.items():
            t = tensors.get(name)
            if name == "g_idx" and t is None:
                continue
            if t is None:
                raise CheckpointCorruptError(f"{where}: the {fmt} layout needs {name!r}, which is missing")
            if tuple(t.shape) != shape:
                raise CheckpointCorruptError(
                    f"{where}: {name} has shape {list(t.shape)}, but {bits}-bit {fmt} with group_size {group_size} "
                    f"for a {in_features} -> {out_features} layer has {list(shape)}; the quantization_config "
                    "(bits, group_size, format) does not match the weights")
            if name != "scales" and t.dtype not in (torch.int32, torch.uint32):
                raise CheckpointCorruptError(f"{where}: {name} is {t.dtype}, expected int32 words")
        m = cls._empty(in_features, out_features, bias, bits=bits, group_size=group_size, fmt=fmt)
        m.qweight = tensors["qweight"].view(torch.int32).contiguous()
        m.qzeros = tensors["qzeros"].view(torch.int32).contiguous()
        m.scales = tensors["scales"].to(torch.float16).contiguous()
        if "g_idx" in tensors:
            g = tensors["g_idx"].view(torch.int32).contiguous()
            if int(g.min()) < 0 or int(g.max()) >= m.groups:
                raise CheckpointCorruptError(f"{where}: g_idx names groups outside [0, {m.groups})")
            m.g_idx = g
        else:
            m.g_idx = default_g_idx(in_features, group_size)
        return m

    # --- computing --------------------------------------------------------------------------
    def unpacked_codes(self) -> torch.Tensor:
        """The uint8 codes (out, in), in the checkpoint's column order."""
        if self.fmt in ("gptq", "gptq_v2"):
            return unpack_bits(self.qweight.t(), self.bits, self.in_features)
        if self.fmt == "gemm":
            return awq_deinterleave(unpack_bits(self.qweight, 4, self.out_features)).t().contiguous()
        return unpack_bits(self.qweight, 4, self.in_features)

    def zeros_scales(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(true zeros int32 (groups, out), scales float16 (groups, out)); GPTQ v1 adds its 1 back."""
        if self.fmt in ("gptq", "gptq_v2"):
            z = unpack_bits(self.qzeros, self.bits, self.out_features).to(torch.int32) + int(self.fmt == "gptq")
            return z, self.scales
        if self.fmt == "gemm":
            return awq_deinterleave(unpack_bits(self.qzeros, 4, self.out_features)).to(torch.int32), self.scales
        z = unpack_bits(self.qzeros, 4, self.groups).to(torch.int32).t().contiguous()
        return z, self.scales[:, : self.groups].t().contiguous()

    def codes(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(q uint8 (out, in), zeros int32 (groups, out), scales float16 (groups, out), g_idx)."""
        return (self.unpacked_codes(), *self.zeros_scales(), self.g_idx)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The (out, in) weight: ``scales[g] * (q - zeros[g])`` in float32, then ``dtype``."""
        q, z, s, g = self.codes()
        g = g.long()
        w = (q.float() - z.index_select(0, g).t().float()) * s.index_select(0, g).t().float()
        return w.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantize(x.dtype), bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bits={self.bits}, group_size={self.group_size}, fmt={self.fmt}"


__all__ = ["GroupQuantLinear", "FORMATS", "layout_shapes", "n_groups"]
