"""What a GGUF file's names and numbers mean for a model: llama.cpp's hyperparameter keys as a
``config.json`` dict, its tensor names as state-dict keys, and the weights put back the way the
model expects them (Llama's Q/K row order for rotary embeddings undone, GPT-2's Conv1D
transposition). :class:`GGUFCheckpoint` is what :func:`pretrained.io.loading.load_checkpoint_into`
streams into a meta-built model, one tensor at a time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import CheckpointCorruptError, UnknownModelTypeError

if TYPE_CHECKING:
    from .reader import GGUFFile

__all__ = ["GGUFCheckpoint", "SUPPORTED_ARCHITECTURES", "arch_for"]


class _Arch:
    """How one llama.cpp architecture maps onto a model type: config keys and tensor names."""

    def __init__(self, model_type: str, config_keys: dict[str, str], names: dict[str, str],
                 globals_: dict[str, str], transposed: tuple[str, ...] = (),
                 permute_qk: bool = False, skip: tuple[str, ...] = ()) -> None:
        self.model_type, self.config_keys, self.names = model_type, config_keys, names
        self.globals, self.transposed, self.permute_qk, self.skip = (
            globals_, transposed, permute_qk, skip)

    def rename(self, name: str) -> str:
        base, dot, suffix = name.rpartition(".")
        if not dot:
            return name
        if base in self.globals:
            return f"{self.globals[base]}.{suffix}"
        m = re.fullmatch(r"blk\.(\d+)\.(\w+)", base)
        if m and m.group(2) in self.names:
            return self.names[m.group(2)].format(i=m.group(1)) + "." + suffix
        return name

    def config(self, f: GGUFFile) -> dict[str, Any]:
        arch, md = f.architecture, f.metadata
        out: dict[str, Any] = {"model_type": self.model_type}
        for key, field in self.config_keys.items():
            if f"{arch}.{key}" in md and field not in out:
                out[field] = md[f"{arch}.{key}"]
        if "vocab_size" not in out:
            tokens = md.get("tokenizer.ggml.tokens")
            if isinstance(tokens, list):
                out["vocab_size"] = len(tokens)
            elif "token_embd.weight" in f.tensor_infos:
                out["vocab_size"] = f.tensor_infos["token_embd.weight"].shape[0]
        if self.model_type == "llama":   # Llama's optional biases: there when the file has them
            if "blk.0.attn_q.bias" in f.tensor_infos:
                out["attention_bias"] = True
            if "blk.0.ffn_up.bias" in f.tensor_infos:
                out["mlp_bias"] = True
        # llama.cpp writes the output projection only when it is not the embedding matrix
        out["tie_word_embeddings"] = "output.weight" not in f.tensor_infos
        # the file's ids (the reference keeps its config class defaults, e.g. 50256 for gpt2)
        for field in ("bos_token_id", "eos_token_id"):
            if isinstance(md.get(f"tokenizer.ggml.{field}"), int):
                out[field] = md[f"tokenizer.ggml.{field}"]
        if self.model_type == "gpt2" and out.get("n_inner") == 4 * out.get("n_embd", -1):
            out["n_inner"] = None  # the reference's default, the same width
        scaling = md.get(f"{arch}.rope.scaling.type")
        if scaling in ("linear", "yarn") and md.get(f"{arch}.rope.scaling.factor"):
            rope = {"rope_type": scaling, "factor": float(md[f"{arch}.rope.scaling.factor"])}
            orig = md.get(f"{arch}.rope.scaling.original_context_length")
            if scaling == "yarn" and orig:
                rope["original_max_position_embeddings"] = int(orig)
            out["rope_scaling"] = rope
        return out


_LLAMA_KEYS = {
    "context_length": "max_position_embeddings", "block_count": "num_hidden_layers",
    "feed_forward_length": "intermediate_size", "embedding_length": "hidden_size",
    "attention.key_length": "head_dim", "rope.dimension_count": "head_dim",
    "rope.freq_base": "rope_theta", "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps", "vocab_size": "vocab_size",
}
_LLAMA_NAMES = {
    "attn_norm": "model.layers.{i}.input_layernorm",
    "attn_q": "model.layers.{i}.self_attn.q_proj", "attn_k": "model.layers.{i}.self_attn.k_proj",
    "attn_v": "model.layers.{i}.self_attn.v_proj",
    "attn_output": "model.layers.{i}.self_attn.o_proj",
    "attn_q_norm": "model.layers.{i}.self_attn.q_norm",
    "attn_k_norm": "model.layers.{i}.self_attn.k_norm",
    "ffn_norm": "model.layers.{i}.post_attention_layernorm",
    "ffn_gate": "model.layers.{i}.mlp.gate_proj", "ffn_up": "model.layers.{i}.mlp.up_proj",
    "ffn_down": "model.layers.{i}.mlp.down_proj",
}
_LLAMA_GLOBALS = {"token_embd": "model.embed_tokens", "output_norm": "model.norm",
                  "output": "lm_head"}
_GPT2_KEYS = {
    "block_count": "n_layer", "context_length": "n_positions", "embedding_length": "n_embd",
    "feed_forward_length": "n_inner", "attention.head_count": "n_head",
    "attention.layer_norm_epsilon": "layer_norm_epsilon", "vocab_size": "vocab_size",
}
_GPT2_NAMES = {
    "attn_norm": "transformer.h.{i}.ln_1", "attn_qkv": "transformer.h.{i}.attn.c_attn",
    "attn_output": "transformer.h.{i}.attn.c_proj", "ffn_norm": "transformer.h.{i}.ln_2",
    "ffn_up": "transformer.h.{i}.mlp.c_fc", "ffn_down": "transformer.h.{i}.mlp.c_proj",
}
_GPT2_GLOBALS = {"token_embd": "transformer.wte", "position_embd": "transformer.wpe",
                 "output_norm": "transformer.ln_f", "output": "lm_head"}

# llama.cpp architecture name -> mapping. Only llama permutes Q/K rows: its converter reorders
# them for llama.cpp's rotary layout; qwen2/qwen3 files keep the HF order.
_ARCHS: dict[str, _Arch] = {
    "llama": _Arch("llama", _LLAMA_KEYS, _LLAMA_NAMES, _LLAMA_GLOBALS, permute_qk=True,
                   skip=("rope_freqs.weight",)),
    "qwen2": _Arch("qwen2", _LLAMA_KEYS, _LLAMA_NAMES, _LLAMA_GLOBALS),
    "qwen3": _Arch("qwen3", _LLAMA_KEYS, _LLAMA_NAMES, _LLAMA_GLOBALS),
    "gpt2": _Arch("gpt2", _GPT2_KEYS, _GPT2_NAMES, _GPT2_GLOBALS,
                  transposed=("attn_qkv.weight", "attn_output.weight", "ffn_up.weight",
                              "ffn_down.weight")),
}
SUPPORTED_ARCHITECTURES: tuple[str, ...] = tuple(_ARCHS)


def arch_for(f: GGUFFile) -> _Arch:
    """The mapping for ``f``'s ``general.architecture``."""
    arch = _ARCHS.get(f.architecture)
    if arch is None:
        raise UnknownModelTypeError(
            f"{f.path}: GGUF architecture {f.architecture!r} is not supported by pretrained; "
            f"supported GGUF architectures: {', '.join(SUPPORTED_ARCHITECTURES)}")
    return arch



class GGUFCheckpoint:
    """What :func:`pretrained.io.loading.load_checkpoint_into` reads: HF keys, HF shapes, and
    each tensor dequantized to float32 in HF layout when asked for.

    Every tensor's type is checked up front, so an unsupported quantization fails before the
    model is built rather than halfway through loading it."""

    format = "gguf"

    def __init__(self, f: GGUFFile) -> None:
        self.file = f
        self.paths = [f.path]
        arch = f._arch()
        self._arch = arch
        self._gguf_name = {hf: g for g, hf in f.hf_names().items()}
        for g in self._gguf_name.values():
            f._check_type(f.tensor_infos[g])
        md = f.metadata
        self._heads = md.get(f"{f.architecture}.attention.head_count")
        kv = md.get(f"{f.architecture}.attention.head_count_kv", self._heads)
        self._kv_heads = kv

    def __repr__(self) -> str:
        return f"GGUFCheckpoint({str(self.file.path)!r}, {len(self._gguf_name)} tensors)"

    def keys(self) -> list[str]:
        return list(self._gguf_name)

    def path_of(self, key: str) -> Path:
        return self.file.path

    def _transposed(self, gguf_name: str) -> bool:
        return gguf_name.endswith(self._arch.transposed) and len(
            self.file.tensor_infos[gguf_name].shape) == 2

    def shape(self, key: str) -> tuple[int, ...]:
        g = self._gguf_name[key]
        shape = self.file.tensor_infos[g].shape
        return tuple(reversed(shape)) if self._transposed(g) else shape

    def get(self, key: str) -> torch.Tensor:
        g = self._gguf_name[key]
        f, info = self.file, self.file.tensor_infos[g]
        raw = f.raw(g).numpy()
        if self._arch.permute_qk and (".attn_q." in g or ".attn_k." in g):
            # a row permutation commutes with dequantizing (blocks never cross rows), so it is
            # done on the stored bytes, several times smaller than the float32 result
            heads = self._heads if ".attn_q." in g else self._kv_heads
            raw = _unpermute_rows(raw.reshape(info.shape[0], -1), heads, f.path, g).reshape(-1)
        t = f.read(g, torch.float32, raw=raw)
        if self._transposed(g):
            return torch.from_numpy(np.ascontiguousarray(t.numpy().T))
        if np.shares_memory(t.numpy(), f._buf):  # F32 as stored: own it, not a view of the file
            t = t.clone()
        return t

    def first_float_dtype(self) -> torch.dtype:
        # The reference dequantizes llama/gpt2 GGUF weights to float32 whatever they were stored as.
        return torch.float32

    def close(self) -> None:
        pass


def _unpermute_rows(rows: np.ndarray, heads: Any, path: Path, name: str) -> np.ndarray:
    """Undo llama.cpp's row order for rotary embeddings.

    Its converter interleaves each head's two halves of rows, ``[x0, x_h, x1, x_h+1, ...]``
    (HF: ``[x0, x1, ..., x_h, ...]``); this puts them back. ``rows`` is (rows, anything)."""
    n = rows.shape[0]
    if not isinstance(heads, int) or heads <= 0 or n % (2 * heads):
        raise CheckpointCorruptError(
            f"{path}: cannot undo the rotary row order of {name!r}: {n} rows do not split "
            f"into {heads!r} heads of pairs; the head counts in the metadata are wrong")
    half = n // heads // 2
    return np.ascontiguousarray(
        rows.reshape(heads, half, 2, -1).swapaxes(1, 2)).reshape(rows.shape)
