"""GGUF weights kept as the file's blocks: :class:`GGUFLinear`, :class:`GGUFEmbedding`, and the
loading step that puts them in a model's place.

``from_pretrained(..., gguf_file=f)`` (without ``dequantize=True``) builds the model as usual
(plain ``nn.Linear`` / GPT-2 ``Conv1D`` / ``nn.Embedding``), then :func:`keep_packed` swaps every
one whose GGUF tensor is a block type (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) for a
module whose ``weight`` is the tensor's bytes as they lie in the memory-mapped file: a uint8
``(out_features, bytes per row)`` parameter (frozen), never copied, never dequantized at load.
Float tensors (norms, F32/F16 weights) load as before. (A layer like any other here: the
file format itself is :mod:`pretrained.gguf`, which imports nothing of the model side.)

The math here is the plain fallback: the weight dequantized a layer at a time (numpy, the
arithmetic of :mod:`pretrained.gguf.dequant`) into ``F.linear``, an embedding dequantizing only
the rows it looks up. The fast path is a backend swap (:mod:`pretrained.backends.gguf_linear`:
integer dot products on the blocks in C). Llama files store the q/k rows in llama.cpp's rotary
order; instead of reordering bytes, ``out_index`` says where each stored row's output goes.

Example::

    >>> import torch
    >>> from pretrained.gguf.quantize import quantize
    >>> from pretrained.gguf.dequant import GGML_Q8_0
    >>> w = torch.randn(4, 64)
    >>> lin = GGUFLinear.from_blocks(quantize(w, GGML_Q8_0), GGML_Q8_0, 64)
    >>> bool((lin.dequantize() - w).abs().max() < 0.02)
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidInputError, UnsupportedOptionError
from ..gguf.dequant import (GGML_Q4_0, GGML_Q4_1, GGML_Q4_K, GGML_Q5_0, GGML_Q5_1, GGML_Q5_K,
                            GGML_Q6_K, GGML_Q8_0, GGML_TYPES, dequantize, type_name)
from .conv1d import Conv1D

__all__ = ["GGUFLinear", "GGUFEmbedding", "PACKED_TYPES", "keep_packed", "row_bytes",
           "packed_modules", "dequantized_state"]

#: the block types kept packed (the types of the common Q4_0 .. Q8_0 and Q4_K_M / Q5_K_M files)
PACKED_TYPES = (GGML_Q8_0, GGML_Q4_0, GGML_Q4_1, GGML_Q5_0, GGML_Q5_1, GGML_Q4_K, GGML_Q5_K, GGML_Q6_K)


def row_bytes(ggml_type: int, in_features: int) -> int:
    """Bytes one row of ``in_features`` values takes in ``ggml_type``'s blocks."""
    _, block, size = GGML_TYPES[ggml_type]
    return in_features // block * size


def _on_cpu(weight: torch.Tensor) -> None:
    if weight.device.type != "cpu":
        raise UnsupportedOptionError(
            f"GGUF packed weights are computed on the CPU, but this one is on {weight.device}; "
            "load with from_pretrained(..., gguf_file=..., dequantize=True) to run the model on "
            "another device")


def _dequantize_rows(blocks: torch.Tensor, ggml_type: int, in_features: int) -> torch.Tensor:
    _on_cpu(blocks)
    rows = blocks.shape[0]
    return dequantize(blocks.detach().reshape(-1), ggml_type, (rows, in_features))


class GGUFLinear(nn.Module):
    """A linear layer on GGUF blocks: ``y = x W^T + b`` with ``W`` dequantized from ``weight``
    (uint8, ``(out_features, row bytes)``, the stored rows), a float ``bias``.

    ``out_index`` (int32, or None): stored row ``n`` is output ``out_index[n]``."""

    def __init__(self, in_features: int, out_features: int, ggml_type: int, bias: bool = True, *,
                 device: Any = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if ggml_type not in PACKED_TYPES:
            raise UnsupportedOptionError(f"GGUFLinear keeps the block types "
                                         f"{', '.join(type_name(t) for t in PACKED_TYPES)}, not "
                                         f"{type_name(ggml_type)}")
        self.in_features, self.out_features, self.ggml_type = in_features, out_features, ggml_type
        self.weight = nn.Parameter(torch.empty((out_features, row_bytes(ggml_type, in_features)),
                                               dtype=torch.uint8, device=device), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype)) if bias else None
        self.out_index: torch.Tensor | None = None

    @classmethod
    def from_blocks(cls, blocks: torch.Tensor, ggml_type: int, in_features: int,
                    bias: torch.Tensor | None = None) -> "GGUFLinear":
        """A layer over ``blocks`` (uint8, one row of blocks per output; kept, not copied)."""
        out = blocks.numel() // row_bytes(ggml_type, in_features)
        lin = cls(in_features, out, ggml_type, bias is not None, device="meta")
        lin.weight = nn.Parameter(blocks.reshape(out, -1), requires_grad=False)
        if bias is not None:
            lin.bias = nn.Parameter(bias.detach().clone())
        return lin

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The float weight ``(out_features, in_features)``, in output order."""
        w = _dequantize_rows(self.weight, self.ggml_type, self.in_features)
        if self.out_index is not None:
            ordered = torch.empty_like(w)
            ordered[self.out_index.long()] = w
            w = ordered
        return w if dtype == torch.float32 else w.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the fallback: the whole layer dequantized for this call, then dropped
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantize(x.dtype), bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"type={type_name(self.ggml_type)}, bias={self.bias is not None}")


class GGUFEmbedding(nn.Module):
    """An embedding table on GGUF blocks: a lookup dequantizes only the rows it reads.

    Its output dtype follows the model's casts (``model.to(torch.bfloat16)``)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, ggml_type: int,
                 padding_idx: int | None = None, *, device: Any = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.ggml_type = num_embeddings, embedding_dim, ggml_type
        self.padding_idx = padding_idx
        self.compute_dtype = dtype or torch.float32
        self.weight = nn.Parameter(torch.empty((num_embeddings, row_bytes(ggml_type, embedding_dim)),
                                               dtype=torch.uint8, device=device), requires_grad=False)

    def _apply(self, fn: Any, recurse: bool = True) -> "GGUFEmbedding":
        super()._apply(fn, recurse)
        # learn a cast from what fn does to a float tensor (.to(dtype), .half(), .float())
        self.compute_dtype = fn(torch.empty(0, dtype=self.compute_dtype)).dtype
        return self

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        rows = self.weight[input_ids.reshape(-1)]   # only these rows' blocks
        out = _dequantize_rows(rows, self.ggml_type, self.embedding_dim)
        return out.to(self.compute_dtype).reshape(*input_ids.shape, self.embedding_dim)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The whole float table ``(num_embeddings, embedding_dim)``."""
        return _dequantize_rows(self.weight, self.ggml_type, self.embedding_dim).to(dtype)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, type={type_name(self.ggml_type)}"


def packed_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every GGUF-packed module of ``model`` (subclasses included)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (GGUFLinear, GGUFEmbedding))]


def dequantized_state(model: nn.Module, state: dict[str, torch.Tensor],
                      dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """``state`` (a state dict of ``model``) with every packed weight as its float values, in
    the plain module's layout (a GPT-2 ``Conv1D``'s is ``(in, out)``): what ``save_pretrained``
    writes, so the saved folder is an ordinary float checkpoint."""
    out = dict(state)
    for name, module in packed_modules(model):
        key = f"{name}.weight" if name else "weight"
        if key in out:
            w = module.dequantize(dtype)
            out[key] = w.t().contiguous() if getattr(module, "_conv1d", False) else w
    return out


# --- loading -------------------------------------------------------------------------------------
class _PackedCheckpoint:
    """A :class:`~pretrained.gguf.GGUFCheckpoint` that hands the packed layers' weights as the
    stored bytes (a view of the mapped file) and everything else as before."""

    def __init__(self, ckpt: Any, packed: dict[str, tuple[int, ...]]) -> None:
        self._ckpt, self._packed = ckpt, packed
        self.format, self.paths, self.file = ckpt.format, ckpt.paths, ckpt.file

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ckpt, name)

    def keys(self) -> list[str]:
        return self._ckpt.keys()

    def shape(self, key: str) -> tuple[int, ...]:
        return self._packed[key] if key in self._packed else self._ckpt.shape(key)

    def get(self, key: str) -> torch.Tensor:
        if key not in self._packed:
            return self._ckpt.get(key)
        return self.file.raw(self._ckpt._gguf_name[key]).view(self._packed[key])


def _unpermute_index(ckpt: Any, gguf_name: str, rows: int) -> torch.Tensor | None:
    """Llama q/k: where each stored row's output goes (None where rows are in the model's order)."""
    arch = ckpt._arch
    if not (arch.permute_qk and (".attn_q." in gguf_name or ".attn_k." in gguf_name)):
        return None
    from ..gguf.architectures import _unpermute_rows

    heads = ckpt._heads if ".attn_q." in gguf_name else ckpt._kv_heads
    perm = _unpermute_rows(np.arange(rows).reshape(rows, 1), heads, ckpt.file.path, gguf_name)
    index = np.empty(rows, np.int32)
    index[perm.reshape(-1)] = np.arange(rows, dtype=np.int32)   # model row r is stored row perm[r]
    return torch.from_numpy(index)


def keep_packed(model: nn.Module, ckpt: Any, prefix: str, device: Any = "cpu",
                dequantize: bool = False, quantizing: Any = None) -> Any:
    """Put a :class:`GGUFLinear` / :class:`GGUFEmbedding` (on meta) in the place of every
    ``nn.Linear``, ``Conv1D`` and ``nn.Embedding`` of ``model`` (built on meta) whose weight the
    GGUF checkpoint ``ckpt`` stores in a block type; returns the checkpoint view that
    :func:`pretrained.io.loading.load_checkpoint_into` then reads (the packed weights as the stored
    bytes). Tied weights (an LM head sharing the embedding table) share one packed weight.
    ``device``: where the model loads; packed blocks compute on the CPU only.
    ``dequantize``: the caller's ``dequantize=True``: ``ckpt`` is returned as it is (float
    weights). ``quantizing``: a bitsandbytes plan is also asked for (refused: the blocks are
    quantized already)."""
    from ..io.loading import _slots, checkpoint_key_map

    if getattr(ckpt, "format", None) != "gguf":
        raise InvalidInputError("dequantize=True applies to a GGUF file; pass gguf_file= too")
    model.__dict__["_gguf_file"] = ckpt.file.path   # its tokenizer, for a GGUF written later
    if dequantize:
        return ckpt
    if quantizing:
        raise UnsupportedOptionError(
            "a GGUF file's weights are already quantized; pass dequantize=True to quantize its "
            "float values again with bitsandbytes")
    if torch.device(device).type != "cpu":
        raise UnsupportedOptionError(
            f"a GGUF file's blocks are computed on the CPU, not on {device}; load with "
            "from_pretrained(..., gguf_file=..., dequantize=True) to run the model there")

    infos, gguf_name = ckpt.file.tensor_infos, ckpt._gguf_name
    slots = _slots(model)
    key_map = checkpoint_key_map([n for s in slots for n in s], ckpt.keys(), prefix,
                                 bool(prefix) and hasattr(model, prefix))
    packed: dict[str, tuple[int, ...]] = {}
    for names in slots:
        key = next((key_map[n] for n in names if n in key_map), None)
        if key is None:
            continue
        info = infos[gguf_name[key]]
        if info.ggml_type not in PACKED_TYPES or len(info.shape) != 2:
            continue
        owners = [(n, model.get_submodule(n.rpartition(".")[0])) for n in names]
        if not all(n.endswith(".weight") and _fits(m, info.shape) for n, m in owners):
            continue   # a module type or shape this cannot stand in for: loaded as floats
        out_f, in_f = info.shape
        shape = (out_f, row_bytes(info.ggml_type, in_f))
        weight = nn.Parameter(torch.empty(shape, dtype=torch.uint8, device="meta"), requires_grad=False)
        index = _unpermute_index(ckpt, gguf_name[key], out_f)
        for name, module in owners:
            new = _replacement(module, info.ggml_type, in_f, out_f)
            new.weight = weight
            if isinstance(new, GGUFLinear):
                new.out_index = index
            parent_name, _, child = name.rpartition(".")[0].rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
        packed[key] = shape
    return _PackedCheckpoint(ckpt, packed)


def _fits(module: nn.Module, shape: tuple[int, ...]) -> bool:
    out_f, in_f = shape
    if type(module) is nn.Linear:
        return (module.out_features, module.in_features) == (out_f, in_f)
    if type(module) is Conv1D:
        return tuple(module.weight.shape) == (in_f, out_f)
    if type(module) is nn.Embedding:
        return (module.num_embeddings, module.embedding_dim) == (out_f, in_f) \
            and module.max_norm is None and not module.sparse
    return False


def _replacement(module: nn.Module, ggml_type: int, in_f: int, out_f: int) -> nn.Module:
    """The packed module for ``module`` (its bias, still on meta, kept for the load to fill)."""
    if isinstance(module, nn.Embedding):
        return GGUFEmbedding(out_f, in_f, ggml_type, module.padding_idx, device="meta")
    new = GGUFLinear(in_f, out_f, ggml_type, bias=module.bias is not None, device="meta")
    if module.bias is not None:
        new.bias = module.bias
    if isinstance(module, Conv1D):
        new._conv1d = True   # saved back as a Conv1D weight (in, out) by dequantized_state
    return new
