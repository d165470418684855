"""A model as a GGUF file: the llama family (llama, mistral, qwen2, qwen3) and GPT-2 in F32, F16,
BF16, Q8_0, Q4_0 or Q4_1, for llama.cpp, Ollama and LM Studio (``model.save_pretrained(out,
gguf="q8_0")``, ``pretrained convert <model> --to gguf --type q4_0``).

The inverse of :mod:`pretrained.gguf.architectures`: the config as llama.cpp's hyperparameter
keys (typed as llama.cpp reads them: counts uint32, sizes float32), state-dict keys as its
tensor names, Llama's q/k rows put in llama.cpp's rotary order (Mistral is written as
``llama``, as llama.cpp's converter does), GPT-2's ``Conv1D`` weights transposed. The matrices
(linear weights, the token embedding, an untied output) are stored in the asked type
(:mod:`pretrained.gguf.quantize`; a row that does not fill whole blocks of 32 stays F16);
norms, biases and GPT-2's position table stay F32. A tied LM head is not written (llama.cpp
reuses the embedding). Packed GGUF layers are dequantized and quantized again.

The tokenizer goes into the ``tokenizer.*`` metadata: copied as it was from the GGUF file the
model was loaded from, else built from a tokenizer (given, or found beside the model's
``name_or_path``) by :mod:`pretrained.gguf.tokenizer_export`. The file itself is written by
:func:`pretrained.gguf.writer.write_gguf`.

Example::

    >>> model.save_pretrained("out", gguf="q8_0")                         # doctest: +SKIP
    PosixPath('out/model.Q8_0.gguf')
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import TokenizerLoadError, UnsupportedOptionError
from ..gguf.dequant import GGML_BF16, GGML_F16, GGML_F32, type_name
from ..gguf.quantize import quantize
from ..gguf.writer import EXPORT_TYPES, write_gguf

__all__ = ["save_gguf"]


# --- a model as llama.cpp's names and keys ------------------------------------------------------
_LLAMA_FAMILY = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}


def _arch_name(config: Any) -> str:
    model_type = getattr(config, "model_type", None)
    if model_type == "gpt2":
        return "gpt2"
    if model_type in _LLAMA_FAMILY:
        return _LLAMA_FAMILY[model_type]
    raise UnsupportedOptionError(
        f"writing GGUF is implemented for llama, mistral, qwen2, qwen3 and gpt2 models, not "
        f"{model_type!r}; save it with save_pretrained(folder) (safetensors) instead")


def _hparams(config: Any, arch: str) -> dict[str, Any]:
    c = config
    if arch == "gpt2":
        return {"gpt2.context_length": c.n_positions, "gpt2.embedding_length": c.n_embd,
                "gpt2.block_count": c.n_layer, "gpt2.feed_forward_length": c.n_inner or 4 * c.n_embd,
                "gpt2.attention.head_count": c.n_head,
                "gpt2.attention.layer_norm_epsilon": float(c.layer_norm_epsilon),
                "gpt2.vocab_size": c.vocab_size}
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    rope = dict(getattr(c, "rope_parameters", None) or {})
    out = {f"{arch}.context_length": c.max_position_embeddings, f"{arch}.embedding_length": c.hidden_size,
           f"{arch}.block_count": c.num_hidden_layers, f"{arch}.feed_forward_length": c.intermediate_size,
           f"{arch}.attention.head_count": c.num_attention_heads,
           f"{arch}.attention.head_count_kv": c.num_key_value_heads or c.num_attention_heads,
           f"{arch}.rope.freq_base": float(rope.get("rope_theta", 10000.0)),
           f"{arch}.rope.dimension_count": head_dim,
           f"{arch}.attention.layer_norm_rms_epsilon": float(c.rms_norm_eps),
           f"{arch}.vocab_size": c.vocab_size}
    if head_dim * c.num_attention_heads != c.hidden_size:
        out[f"{arch}.attention.key_length"] = out[f"{arch}.attention.value_length"] = head_dim
    kind = rope.get("rope_type", "default")
    if kind != "default":
        if kind not in ("linear", "yarn"):
            raise UnsupportedOptionError(f"rope type {kind!r} has no GGUF form here; linear and "
                                         "yarn scaling are written (and the default)")
        out[f"{arch}.rope.scaling.type"] = kind
        out[f"{arch}.rope.scaling.factor"] = float(rope["factor"])
        if rope.get("original_max_position_embeddings"):
            out[f"{arch}.rope.scaling.original_context_length"] = int(rope["original_max_position_embeddings"])
    return out


def _name_map(arch: str) -> list[tuple[re.Pattern, str]]:
    """(regex over a state-dict key's module part, GGUF name template) from the reader's tables."""
    from ..gguf.architectures import _ARCHS

    a = _ARCHS[arch]
    pairs = [(re.compile(re.escape(hf) + "$"), g) for g, hf in a.globals.items()]
    for g, template in a.names.items():
        pattern = re.escape(template).replace(re.escape("{i}"), r"(\d+)")
        pairs.append((re.compile(pattern + "$"), "blk.{i}." + g))
    return pairs


def _gguf_name(key: str, pairs: list[tuple[re.Pattern, str]]) -> str | None:
    module, _, suffix = key.rpartition(".")
    for pattern, name in pairs:
        m = pattern.match(module)
        if m:
            return name.format(i=m.group(1) if m.groups() else "") + "." + suffix
    return None


def _permute_rows(t: torch.Tensor, heads: int) -> torch.Tensor:
    """HF q/k rows -> llama.cpp's rotary order (the inverse of the reader's ``_unpermute_rows``)."""
    rows = t.shape[0]
    return t.reshape(heads, 2, rows // heads // 2, -1).transpose(1, 2).reshape(t.shape)


def _tensors(model: Any, arch: str, matrix_type: int) -> list[tuple[str, int, tuple[int, ...], torch.Tensor]]:
    from ..layers.gguf import dequantized_state

    config = model.config
    state = dequantized_state(model, model._unique_state_dict())
    tied = getattr(config, "tie_word_embeddings", True) and set(model.tied_weights)
    pairs, out = _name_map(arch), []
    heads = getattr(config, "num_attention_heads", None)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    for key, t in state.items():
        if tied and key in model.tied_weights:
            if model.tied_weights[key] in state:
                continue   # llama.cpp reuses the embedding for a missing output
            key = model.tied_weights[key]
        name = _gguf_name(key, pairs)
        if name is None:
            if key.endswith(("rotary_emb.inv_freq", ".attn.bias", ".attn.masked_bias")):
                continue   # buffers the math rebuilds
            raise UnsupportedOptionError(f"{key!r} has no GGUF name in llama.cpp's {arch} layout; "
                                         "this model cannot be written as GGUF")
        t = t.detach().to(torch.float32)
        if arch == "gpt2" and t.dim() == 2 and name.endswith(("attn_qkv.weight", "attn_output.weight",
                                                               "ffn_up.weight", "ffn_down.weight")):
            t = t.t()   # Conv1D (in, out) -> (out, in)
        if arch == "llama" and (".attn_q." in name or ".attn_k." in name):
            n = kv_heads if ".attn_k." in name else heads
            t = _permute_rows(t if t.dim() == 2 else t.reshape(-1, 1), n).reshape(t.shape)
        kind = GGML_F32
        if t.dim() == 2 and name != "position_embd.weight":
            kind = matrix_type
            if t.shape[-1] % 32 and matrix_type not in (GGML_F32, GGML_F16, GGML_BF16):
                kind = GGML_F16
        elif t.dim() == 2 and matrix_type in (GGML_F16, GGML_BF16):
            kind = matrix_type
        out.append((name, kind, tuple(t.shape), quantize(t.contiguous(), kind)))
    return out


def _tokenizer_metadata(model: Any, tokenizer: Any) -> dict[str, Any]:
    source = model.__dict__.get("_gguf_file")
    if tokenizer is None and source is not None:   # the file it came from: its tokenizer as it was
        from ..gguf.reader import load_gguf

        md = load_gguf(source).metadata
        return {k: v for k, v in md.items() if k.startswith("tokenizer.")}
    if tokenizer is None:
        name = getattr(model.config, "name_or_path", "")
        try:
            from ..tokenization import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
        except Exception as e:  # noqa: BLE001 - any reason it cannot load: the same advice
            raise TokenizerLoadError(
                f"no tokenizer to write into the GGUF file ({name or 'the model has no name_or_path'}: "
                f"{str(e).splitlines()[0] if str(e) else type(e).__name__}); pass one: "
                "pretrained.gguf.save_gguf(model, path, type, tokenizer=tok)") from None
    from ..gguf.tokenizer_export import tokenizer_metadata

    return tokenizer_metadata(tokenizer, model.config.vocab_size)


def save_gguf(model: Any, target: str | os.PathLike, gguf_type: str = "q8_0",
              tokenizer: Any = None) -> Path:
    """Write ``model`` as one GGUF file: ``target`` itself when it ends in ``.gguf``, else
    ``target/model.<TYPE>.gguf``. ``gguf_type``: f32, f16, bf16, q8_0, q4_0 or q4_1.
    ``tokenizer``: the tokenizer to store (default: the model's source GGUF's, or the one
    beside its ``name_or_path``). Returns the file's path."""
    kind = EXPORT_TYPES.get(str(gguf_type).lower())
    if kind is None:
        raise UnsupportedOptionError(f"gguf={gguf_type!r}: writable types are "
                                     f"{', '.join(EXPORT_TYPES)}")
    matrix_type, file_type = kind
    config = model.config
    arch = _arch_name(config)
    target = Path(target)
    path = target if target.suffix == ".gguf" else target / f"model.{type_name(matrix_type)}.gguf"
    path.parent.mkdir(parents=True, exist_ok=True)
    name = Path(str(getattr(config, "name_or_path", "") or "model")).name
    metadata = {"general.architecture": arch, "general.name": name,
                "general.file_type": file_type, "general.quantization_version": 2,
                **_hparams(config, arch), **_tokenizer_metadata(model, tokenizer)}
    return write_gguf(path, metadata, _tensors(model, arch, matrix_type))
