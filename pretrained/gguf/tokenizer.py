"""The tokenizer a GGUF file describes in its ``tokenizer.*`` metadata, as a `tokenizers` object.

Two kinds, named by ``tokenizer.ggml.model``:

* ``"gpt2"``: byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM...): tokens already spelled in the
  byte alphabet, merges as ``"a b"`` strings; ``tokenizer.ggml.pre`` picks the split regex.
* ``"llama"``: SentencePiece-style BPE (Llama 1/2, Mistral...): ``▁`` for spaces, byte tokens
  ``<0xNN>`` as fallback; when the file has no merges they are rebuilt from the token scores.

Tokens typed CONTROL (3) become special added tokens, USER_DEFINED (4) plain added tokens, so
neither is split. Special token ids, ``add_bos_token``/``add_eos_token`` and the chat template
go into the tokenizer config, as the reference reads them.

Example::

    >>> from pretrained.gguf import load_gguf                         # doctest: +SKIP
    >>> backend, config = load_gguf("model.gguf").tokenizer()         # doctest: +SKIP
    >>> config["eos_token"]                                           # doctest: +SKIP
    '<|im_end|>'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tokenizers import AddedToken, Regex, decoders, pre_tokenizers, processors
from tokenizers import Tokenizer as _Backend
from tokenizers.models import BPE

from ..errors import TokenizerLoadError

__all__ = ["build_tokenizer"]

_CONTROL, _USER_DEFINED = 3, 4

# tokenizer.ggml.pre -> the split regex its merges were learned with (the GPT-2 regex of the
# ByteLevel pre-tokenizer is used for every other value).
_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
           r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_SPLITS = {name: _LLAMA3 for name in ("llama3", "llama-v3", "llama-bpe", "falcon3", "smaug-bpe",
                                      "dbrx", "pixtral", "lfm2")}
_SPLITS.update({name: _QWEN2 for name in ("qwen2", "deepseek-r1-qwen", "megrez")})


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's byte -> printable character table."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _byte_level(tokens: list[str], merges: list[str] | None, pre: Any) -> _Backend:
    spell = _byte_alphabet()
    alphabet = set(spell.values())
    vocab = {}
    for i, tok in enumerate(tokens):
        # a token outside the byte alphabet (rare: an added token) is respelled byte by byte
        key = tok if set(tok) <= alphabet else "".join(spell[b] for b in tok.encode("utf-8"))
        vocab[key] = i
    backend = _Backend(_bpe(vocab=vocab, merges=_split_merges(merges or []), dropout=None,
                            continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    split = _SPLITS.get(pre) if isinstance(pre, str) else None
    if split is None:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    backend.decoder = decoders.ByteLevel()
    return backend


def _bpe(**kwargs: Any) -> Any:
    """``tokenizers``' BPE model, whose bare Exception for a merge that names a token the
    vocabulary lacks becomes a named error."""
    try:
        return BPE(**kwargs)
    except Exception as e:  # noqa: BLE001 - tokenizers raises a plain Exception here
        raise TokenizerLoadError(f"the GGUF tokenizer's merges do not fit its vocabulary ({e}); "
                                 "the file is damaged or was written wrongly") from None


def _split_merges(merges: list[str]) -> list[tuple[str, str]]:
    out = []
    for m in merges:
        left, sep, right = m.partition(" ")
        if not sep:
            raise TokenizerLoadError(f"GGUF merge {m!r} is not two tokens separated by a space")
        out.append((left, right))
    return out


def _merges_from_scores(tokens: list[str], scores: list[float]) -> list[tuple[str, str]]:
    """Rebuild BPE merges from a SentencePiece vocabulary: every split of a token into two
    tokens is a merge, ranked by the merged token's score (highest first), ties broken by the
    shorter left then right part; within one token, by the ids of its parts."""
    vocab = {t: i for i, t in enumerate(tokens)}
    candidates = []
    for tok, score in dict(zip(tokens, scores)).items():
        local = [(tok[:k], tok[k:], score) for k in range(1, len(tok))
                 if tok[:k] in vocab and tok[k:] in vocab]
        local.sort(key=lambda c: (vocab[c[0]], vocab[c[1]]))
        candidates.extend(local)
    candidates.sort(key=lambda c: (c[2], len(c[0]), len(c[1])), reverse=True)
    return [(a, b) for a, b, _ in candidates]


def _sentencepiece_bpe(tokens: list[str], scores: list[float] | None,
                       merges: list[str] | None) -> _Backend:
    vocab = {t: i for i, t in enumerate(tokens)}
    if merges is not None:
        pairs = _split_merges(merges)
    elif scores is not None and len(scores) == len(tokens):
        pairs = _merges_from_scores(tokens, scores)
    else:
        raise TokenizerLoadError("the GGUF SentencePiece tokenizer has neither merges nor one "
                                 "score per token (tokenizer.ggml.scores)")
    backend = _Backend(_bpe(vocab=vocab, merges=pairs, fuse_unk=True, byte_fallback=True,
                            dropout=None))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first",
                                                     split=False)
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                         decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    return backend


def build_tokenizer(md: Mapping[str, Any], path: Any) -> tuple[_Backend, dict[str, Any]]:
    """``(backend, tokenizer_config)`` for the tokenizer in a GGUF file's metadata ``md``
    (``path`` names the file in errors)."""
    kind = md.get("tokenizer.ggml.model")
    tokens = md.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or not tokens:
        raise TokenizerLoadError(f"{path}: the GGUF file has no tokenizer "
                                 "(tokenizer.ggml.tokens is missing)")
    merges = md.get("tokenizer.ggml.merges")
    if kind == "gpt2":
        backend = _byte_level(tokens, merges, md.get("tokenizer.ggml.pre"))
    elif kind == "llama":
        backend = _sentencepiece_bpe(tokens, md.get("tokenizer.ggml.scores"), merges)
    else:
        raise TokenizerLoadError(
            f"{path}: GGUF tokenizer model {kind!r} is not supported; supported: 'gpt2' "
            "(byte-level BPE) and 'llama' (SentencePiece BPE)")

    types = md.get("tokenizer.ggml.token_type") or []
    alphabet = set(_byte_alphabet().values()) if kind == "gpt2" else None
    # A byte-level token marked CONTROL but spelled outside the byte alphabet is a converter
    # mislabel; adding it would grow the vocabulary past the model's, so it is skipped.
    control = [AddedToken(t, normalized=False, special=True) for t, ty in zip(tokens, types)
               if ty == _CONTROL and (alphabet is None or set(t) <= alphabet)]
    if control:
        backend.add_special_tokens(control)
    vocab = backend.get_vocab()
    user = [AddedToken(t, normalized=False, special=False) for t, ty in zip(tokens, types)
            if ty == _USER_DEFINED and t in vocab]
    if user:
        backend.add_tokens(user)

    config: dict[str, Any] = {}
    for name, key in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"),
                      ("unk_token", "unknown_token_id"), ("pad_token", "padding_token_id")):
        idx = md.get(f"tokenizer.ggml.{key}")
        config[name] = tokens[idx] if isinstance(idx, int) and 0 <= idx < len(tokens) else None
    # llama.cpp adds BOS to a SentencePiece vocabulary unless the file says otherwise
    add_bos = md.get("tokenizer.ggml.add_bos_token", kind == "llama")
    add_eos = md.get("tokenizer.ggml.add_eos_token", False)
    config["add_bos_token"], config["add_eos_token"] = bool(add_bos), bool(add_eos)
    if isinstance(md.get("tokenizer.chat_template"), str):
        config["chat_template"] = md["tokenizer.chat_template"]
    # the model's context length, so truncation=True cuts where the model stops (without it the
    # tokenizer's limit is the reference's "very large" default and truncation does nothing)
    context = md.get(f"{md.get('general.architecture')}.context_length")
    if isinstance(context, int) and context > 0:
        config["model_max_length"] = context
    backend.post_processor = _template(config, backend)
    return backend, config


def _template(config: dict[str, Any], backend: _Backend) -> processors.TemplateProcessing:
    bos = config["bos_token"] if config["add_bos_token"] else None
    eos = config["eos_token"] if config["add_eos_token"] else None
    single = " ".join([f"{bos}:0"] * bool(bos) + ["$A:0"] + [f"{eos}:0"] * bool(eos))
    pair = single + " " + " ".join([f"{bos}:1"] * bool(bos) + ["$B:1"] + [f"{eos}:1"] * bool(eos))
    specials = {t: backend.token_to_id(t) for t in (bos, eos) if t is not None}
    return processors.TemplateProcessing(single=single, pair=pair,
                                         special_tokens=list(specials.items()))
