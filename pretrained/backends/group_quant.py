"""CPU fast path for GPTQ / AWQ linears (:class:`~pretrained.quantization.GroupQuantLinear`),
swapped in by :func:`pretrained.backends.accelerate`.

On its first inference call a :class:`CpuGroupQuantLinear` converts its codes once, and from
then on holds the converted form *instead of* ``qweight`` (the same bytes, so memory stays 4 or
8 bits a weight):

- **4-bit** -> ``torch._convert_weight_to_int4pack_for_cpu`` / ``torch._weight_int4pack_mm_for_cpu``.
  That op computes ``(q - 8) * scale + zero`` per group of 32, 64, 128 or 256 input columns, so a
  GPTQ/AWQ group (any multiple of one of those; -1 is one group) becomes runs of op groups with
  the same scale, and the zero point becomes ``zero = (8 - z) * scale``: the same weights as the
  plain math, up to the rounding of the input's dtype.
- **8-bit** -> ``torch._weight_int8pack_mm`` once per group (int8 ``q - 128`` times the group's
  per-row scales), plus the zero point's share ``sum(x over the group) * (128 - z) * scale``.
- **act-order** (a ``g_idx`` that is a permutation of the groups): the weight's input columns are
  permuted once at conversion so each group is contiguous, and each call permutes the input's
  columns the same way (``x[:, perm] @ W[:, perm]^T = x W^T``).

Above ``DENSE_ROWS`` rows (prefill) the int4 op is slower than a dense product, so the codes are
expanded from the packed form (its layout read back and checked against the codes once) into a
weight in the input's dtype for one ``F.linear``; decode steps stay on the op.

2- and 3-bit codes, groups that are no multiple of 32 (8-bit: that do not divide the input),
out sizes not a multiple of 16, and uneven act-order groups keep the plain dequantize-then-matmul.
It also steps aside (restoring ``qweight`` first) for autograd through the input (LoRA training),
other devices, ``torch.compile`` tracing and other dtypes. ``state_dict`` always writes the
checkpoint layout (``qweight`` rebuilt from the converted codes), and :func:`plain` restores it.

Example::

    >>> import torch
    >>> from pretrained.quantization import GroupQuantLinear
    >>> from pretrained.backends import accelerate
    >>> q = torch.randint(0, 16, (32, 64), dtype=torch.uint8)
    >>> z, s = torch.full((2, 32), 8, dtype=torch.int32), torch.full((2, 32), 0.1, dtype=torch.float16)
    >>> m = torch.nn.Sequential(GroupQuantLinear.from_codes(q, z, s, None, None, bits=4, group_size=32,
    ...                                                     fmt="gptq"))
    >>> x = torch.randn(2, 64)
    >>> want = m(x)
    >>> accelerate(m), type(m[0]).__name__
    (1, 'CpuGroupQuantLinear')
    >>> bool(torch.allclose(m(x), want, atol=1e-4)), sorted(m[0].state_dict())
    (True, ['g_idx', 'qweight', 'qzeros', 'scales'])
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..heap import release_freed_heap
from ..quantization.group_linear import GroupQuantLinear
from ..quantization.packing import default_g_idx, pack_awq_gemm, pack_bits, pack_gptq
from .linear import _version

RUNTIME_KEYS = ("_gq", "_gq_scales", "_gq_dense")   # conversion facts, per-dtype scales; never pickled
DENSE_ROWS = 32   # above this many rows (prefill) the 4-bit codes are expanded for one dense product
_FAST_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_OP_GROUPS = (256, 128, 64, 32)


def _unpack_int4pack(packed: torch.Tensor) -> torch.Tensor | None:
    """The codes (out, in) of ``torch._convert_weight_to_int4pack_for_cpu``'s output, for its
    layout when out is a multiple of 64 (rows ``64 b + d`` and ``64 b + 32 + d`` share a byte, low
    nibble first, bytes in (block, column, d) order); None for other sizes. A private layout, so
    it is checked against the codes it came from before it is used (``_gq_dense``)."""
    n, half = packed.shape
    if n % 64:
        return None
    v = packed.view(n // 64, 2 * half, 32)
    both = torch.stack([v & 15, v >> 4], dim=1)            # (blocks, 2, in, 32)
    return both.permute(0, 1, 3, 2).reshape(n, 2 * half)


def _steps_aside(x: torch.Tensor) -> bool:
    return (x.device.type != "cpu" or (x.requires_grad and torch.is_grad_enabled())
            or torch.compiler.is_compiling() or x.dtype not in _FAST_DTYPES or x.numel() == 0)


class CpuGroupQuantLinear(GroupQuantLinear):
    """:class:`GroupQuantLinear` through PyTorch's int4 / int8 CPU ops (see the module doc)."""

    @property
    def weight(self) -> torch.Tensor:
        return next(self._buffers[k] for k in ("qweight", "_int4", "_int8") if k in self._buffers)

    # --- conversion ---------------------------------------------------------------------------
    def _plan(self) -> dict[str, Any] | None:
        """How this layer converts (None: it keeps the plain math); decided once."""
        facts = self.__dict__.get("_gq")
        if facts is not None:
            return facts or None
        facts = {}
        n_in, out, gs = self.in_features, self.out_features, self.group_size
        gs = n_in if gs == -1 or gs >= n_in else gs
        g = self.g_idx.long()
        perm = None
        if not torch.equal(g, default_g_idx(n_in, gs).long()):
            perm = torch.argsort(g, stable=True)
            if not torch.equal(g[perm], default_g_idx(n_in, gs).long()):
                perm = "uneven"
        if self.bits == 4 and perm != "uneven" and out % 16 == 0:
            op = next((o for o in _OP_GROUPS if gs % o == 0 and n_in % o == 0), None)
            if op is not None:
                facts = {"kind": 4, "op_group": op, "group": gs, "perm": perm}
        elif self.bits == 8 and perm != "uneven" and n_in % gs == 0:
            facts = {"kind": 8, "group": gs, "perm": perm}
        self.__dict__["_gq"] = facts
        return facts or None

    def _convert(self, facts: dict[str, Any]) -> None:
        q = self.unpacked_codes()
        if facts["perm"] is not None:
            q = q[:, facts["perm"]]
        if facts["kind"] == 4:
            packed = torch._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).contiguous(), 1)
            self.register_buffer("_int4", packed, persistent=False)
            unpacked = _unpack_int4pack(packed)
            self.__dict__["_gq_dense"] = unpacked is not None and torch.equal(unpacked, q)
        else:
            out, n_in, gs = self.out_features, self.in_features, facts["group"]
            w8 = (q.to(torch.int16) - 128).to(torch.int8).view(out, n_in // gs, gs).transpose(0, 1).contiguous()
            self.register_buffer("_int8", w8, persistent=False)
        del self._buffers["qweight"]
        self.__dict__.pop("_gq_scales", None)
        # the unpacking's int32 and comparison temporaries (several MiB a layer) would otherwise stay
        # in glibc's heap: SmolLM2-135M GPTQ-4 kept ~310 MiB after its first forward
        release_freed_heap()

    def _codes_from_converted(self) -> torch.Tensor:
        """The uint8 codes (out, in) back from the converted form, in the checkpoint's column order."""
        facts = self._plan()   # (recomputed after a pickle)
        if "_int4" in self._buffers:
            n_in, op = self.in_features, facts["op_group"]
            unit = torch.zeros(n_in // op, self.out_features, 2)
            unit[..., 0] = 1.0   # scale 1, zero 0: the op returns q - 8 exactly (small integers)
            got = torch._weight_int4pack_mm_for_cpu(torch.eye(n_in), self._buffers["_int4"], op, unit)
            q = (got.t() + 8).round().to(torch.uint8)
        else:
            w8 = self._buffers["_int8"]
            q = (w8.transpose(0, 1).reshape(self.out_features, self.in_features).to(torch.int16) + 128)
            q = q.to(torch.uint8)
        if facts["perm"] is not None:
            back = torch.empty_like(q)
            back[:, facts["perm"]] = q
            q = back
        return q.contiguous()

    def _packed_qweight(self) -> torch.Tensor:
        q = self._codes_from_converted()
        if self.fmt in ("gptq", "gptq_v2"):
            ones = torch.ones(1, self.out_features, dtype=torch.int32)
            return pack_gptq(q, ones, self.bits, v1=False)[0]
        if self.fmt == "gemm":
            return pack_awq_gemm(q, torch.zeros(1, self.out_features, dtype=torch.int32))[0]
        return pack_bits(q, 4)

    def _restore(self) -> None:
        """Back to ``qweight`` (for the plain math, a move, or :func:`plain`)."""
        if "qweight" in self._buffers:
            return
        self._buffers["qweight"] = self._packed_qweight()
        self._buffers.pop("_int4", None)
        self._buffers.pop("_int8", None)
        self.__dict__.pop("_gq_scales", None)
        self.__dict__.pop("_gq_dense", None)

    _before_plain = _restore   # called by pretrained.backends.plain

    # --- computing ------------------------------------------------------------------------------
    def _scales_for(self, dtype: torch.dtype, facts: dict[str, Any]) -> Any:
        key = (dtype, _version(self.scales), _version(self.qzeros))   # (None for inference tensors)
        cached = self.__dict__.get("_gq_scales")
        if cached is not None and cached[0] == key:
            return cached[1]
        z, s = self.zeros_scales()
        s, z = s.float(), z.float()
        if facts["kind"] == 4:
            rep = torch.arange(self.in_features // facts["op_group"]) * facts["op_group"] // facts["group"]
            s, z = s[rep], z[rep]
            value = torch.stack([s, (8 - z) * s], dim=2).to(dtype).contiguous()
        else:
            shift = (128 - z) * s   # the zero point's share: zero for symmetric codes
            value = (s.to(dtype), None if bool((shift == 0).all()) else shift.to(dtype))
        self.__dict__["_gq_scales"] = (key, value)
        return value

    def unpacked_codes(self) -> torch.Tensor:
        if "qweight" not in self._buffers:
            return self._codes_from_converted()
        return super().unpacked_codes()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        facts = None if _steps_aside(x) else self._plan()
        if facts is None:
            self._restore()
            return super().forward(x)
        if "qweight" in self._buffers:
            self._convert(facts)
        x2 = x.reshape(-1, self.in_features)
        if facts["perm"] is not None:
            x2 = x2.index_select(1, facts["perm"])
        if facts["kind"] == 4 and x2.shape[0] > DENSE_ROWS and self._dense_ok():
            y = F.linear(x2, self._dense_weight(x.dtype, facts))   # prefill: one dense product
        elif facts["kind"] == 4:
            y = torch._weight_int4pack_mm_for_cpu(x2.contiguous(), self._buffers["_int4"], facts["op_group"],
                                                  self._scales_for(x.dtype, facts))
        else:
            y = self._int8_product(x2, facts)
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y.view(*x.shape[:-1], self.out_features)

    def _dense_ok(self) -> bool:
        """Whether the int4pack layout reads back here (checked at conversion; once after a pickle)."""
        ok = self.__dict__.get("_gq_dense")
        if ok is None:
            unpacked = _unpack_int4pack(self._buffers["_int4"])
            q = self._codes_from_converted()
            perm = self._plan()["perm"]
            ok = self.__dict__["_gq_dense"] = unpacked is not None and torch.equal(
                unpacked, q if perm is None else q[:, perm])
        return ok

    def _dense_weight(self, dtype: torch.dtype, facts: dict[str, Any]) -> torch.Tensor:
        """The (out, in) weight in the op's own terms, ``(q - 8) * scale + zero`` per op group."""
        sz = self._scales_for(dtype, facts)                                   # (op groups, out, 2)
        q = _unpack_int4pack(self._buffers["_int4"]).to(dtype) - 8
        op = facts["op_group"]
        s = sz[..., 0].t().repeat_interleave(op, dim=1)
        z = sz[..., 1].t().repeat_interleave(op, dim=1)
        return q * s + z

    def _int8_product(self, x2: torch.Tensor, facts: dict[str, Any]) -> torch.Tensor:
        scales, shift = self._scales_for(x2.dtype, facts)
        w8, gs = self._buffers["_int8"], facts["group"]
        xg = x2.view(x2.shape[0], -1, gs)
        y = None
        for g in range(w8.shape[0]):
            part = torch._weight_int8pack_mm(xg[:, g].contiguous(), w8[g], scales[g])
            y = part if y is None else y + part
        if shift is not None:
            y = y + xg.sum(dim=2) @ shift
        return y

    # --- what must see the checkpoint layout --------------------------------------------------
    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if "qweight" not in self._buffers:
            destination[prefix + "qweight"] = self._packed_qweight()

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        self._restore()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _apply(self, fn: Any, recurse: bool = True) -> "CpuGroupQuantLinear":
        self._restore()   # a move or cast sees the checkpoint layout; the next CPU call converts again
        return super()._apply(fn, recurse)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in RUNTIME_KEYS}


__all__ = ["CpuGroupQuantLinear", "RUNTIME_KEYS"]
