"""A tokenizer as GGUF ``tokenizer.*`` metadata (the inverse of :mod:`pretrained.gguf.tokenizer`).

Two kinds, as llama.cpp reads them:

* byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM): ``tokenizer.ggml.model = "gpt2"``, the tokens
  spelled in the byte alphabet as the vocabulary has them, merges as ``"a b"``, and
  ``tokenizer.ggml.pre`` naming the split regex (``llama-bpe``, ``qwen2``, else ``gpt-2``);
* SentencePiece-style BPE with byte fallback (Llama 2, Mistral): ``"llama"``, with a score per
  token (the merge rank, negated: llama.cpp merges the best-scored pair first, which is BPE's
  order) and ``<0xNN>`` tokens typed BYTE.

Token types: special added tokens CONTROL, other added tokens USER_DEFINED, the rows a model
has beyond its tokenizer ``[PAD<i>]`` UNUSED (llama.cpp needs one token per embedding row).
Special token ids, whether BOS/EOS are added, and the chat template are written too.

Example::

    >>> from pretrained.gguf.tokenizer_export import tokenizer_metadata    # doctest: +SKIP
    >>> tokenizer_metadata(tok, 49152)["tokenizer.ggml.model"]               # doctest: +SKIP
    'gpt2'
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import UnsupportedOptionError
from .tokenizer import _LLAMA3, _QWEN2

__all__ = ["tokenizer_metadata"]

_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def _has(node: Any, kind: str) -> bool:
    """Whether a tokenizer.json component (or a Sequence of them) is or holds ``kind``."""
    if not isinstance(node, dict):
        return False
    if node.get("type") == kind:
        return True
    return any(_has(n, kind) for n in node.get("pretokenizers", node.get("normalizers", [])) or [])


def _pre_name(pre: Any) -> str:
    """llama.cpp's name for a byte-level split regex."""
    parts = pre.get("pretokenizers", [pre]) if isinstance(pre, dict) else []
    for p in parts:
        if p.get("type") == "Split":
            regex = (p.get("pattern") or {}).get("Regex")
            if regex == _LLAMA3:
                return "llama-bpe"
            if regex == _QWEN2:
                return "qwen2"
    return "gpt-2"


def tokenizer_metadata(tok: Any, vocab_size: int | None = None) -> dict[str, Any]:
    """The ``tokenizer.*`` metadata of ``tok`` (a pretrained tokenizer with a BPE backend),
    its token list padded to ``vocab_size`` rows."""
    backend = getattr(tok, "_backend", None)
    if backend is None:
        raise UnsupportedOptionError(f"{type(tok).__name__} has no tokenizers backend; GGUF "
                                     "export needs a fast (tokenizer.json) BPE tokenizer")
    spec = json.loads(backend.to_str())
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise UnsupportedOptionError(
            f"GGUF export writes BPE tokenizers (byte-level or SentencePiece-style); this one is "
            f"{model.get('type')!r}")
    spm = _has(spec.get("pre_tokenizer"), "Metaspace") or bool(model.get("byte_fallback"))
    vocab = backend.get_vocab(with_added_tokens=True)
    n = max(max(vocab.values()) + 1 if vocab else 0, vocab_size or 0)
    tokens: list[str | None] = [None] * n
    for t, i in vocab.items():
        tokens[i] = t
    added = backend.get_added_tokens_decoder()
    unk = getattr(tok, "unk_token", None)
    types = []
    for i, t in enumerate(tokens):
        if t is None:
            tokens[i], kind = f"[PAD{i}]", _UNUSED
        elif i in added:
            kind = _CONTROL if added[i].special else _USER_DEFINED
        elif spm and t == unk:
            kind = _UNKNOWN
        elif spm and _BYTE_TOKEN.fullmatch(t):
            kind = _BYTE
        else:
            kind = _NORMAL
        types.append(kind)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    md: dict[str, Any] = {"tokenizer.ggml.model": "llama" if spm else "gpt2"}
    if not spm:
        md["tokenizer.ggml.pre"] = _pre_name(spec.get("pre_tokenizer"))
    md["tokenizer.ggml.tokens"] = tokens
    md["tokenizer.ggml.token_type"] = types
    if spm:
        # BPE's merge order as scores: the token a merge makes scores -rank; others below all
        rank = {}
        for r, m in enumerate(merges):
            rank.setdefault(m.replace(" ", ""), r)
        md["tokenizer.ggml.scores"] = [float(-rank.get(t, len(merges) + i)) if k == _NORMAL
                                       else 0.0 for i, (t, k) in enumerate(zip(tokens, types))]
        pre = spec.get("pre_tokenizer") or {}
        md["tokenizer.ggml.add_space_prefix"] = pre.get("prepend_scheme", "always") != "never" \
            if pre.get("type") == "Metaspace" else False
    md["tokenizer.ggml.merges"] = merges
    for name, key in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("unk", "unknown_token_id"),
                      ("pad", "padding_token_id")):
        idx = getattr(tok, f"{name}_token_id", None)
        if isinstance(idx, int) and idx >= 0:
            md[f"tokenizer.ggml.{key}"] = idx
    plain = backend.encode("a", add_special_tokens=False).ids
    full = backend.encode("a", add_special_tokens=True).ids
    bos, eos = getattr(tok, "bos_token_id", None), getattr(tok, "eos_token_id", None)
    md["tokenizer.ggml.add_bos_token"] = len(full) > len(plain) and bos is not None and full[0] == bos
    md["tokenizer.ggml.add_eos_token"] = len(full) > len(plain) and eos is not None and full[-1] == eos
    template = getattr(tok, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default")
    if isinstance(template, str):
        md["tokenizer.chat_template"] = template
    return md
