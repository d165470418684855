"""Tokenizers of the encoder-decoder classes (T5, Pegasus, mBART, mBART-50, Marian) built the way
the reference's classes build them: the vocabulary order (T5's sentinels at the end, Pegasus'
offset, mBART's fairseq order and language codes), the normalizer / pre-tokenizer / decoder, and
the special-token template. From a SentencePiece model (read by :mod:`.sentencepiece_model`, no
`sentencepiece` package needed) or on top of a tokenizer.json.

Example::

    >>> from pretrained.tokenization.sentencepiece_model import read_spm_model
    >>> spm = read_spm_model("tests/fixtures/tokenizers/t5_spm/spiece.model")
    >>> backend = backend_from_spm("T5Tokenizer", spm, {})
    >>> backend.get_vocab_size(), backend.id_to_token(699)
    (700, '<extra_id_0>')
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tokenizers import Regex
from tokenizers import Tokenizer as _BackendTokenizer
from tokenizers import decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram

from ..errors import TokenizerLoadError
from .sentencepiece_model import NORMAL, USER_DEFINED, SpmModel

MBART_LANGUAGE_CODES = (
    "ar_AR", "cs_CZ", "de_DE", "en_XX", "es_XX", "et_EE", "fi_FI", "fr_XX", "gu_IN", "hi_IN", "it_IT",
    "ja_XX", "kk_KZ", "ko_KR", "lt_LT", "lv_LV", "my_MM", "ne_NP", "nl_XX", "ro_RO", "ru_RU", "si_LK",
    "tr_TR", "vi_VN", "zh_CN",
)  # fmt: skip
MBART50_LANGUAGE_CODES = MBART_LANGUAGE_CODES + (
    "af_ZA", "az_AZ", "bn_IN", "fa_IR", "he_IL", "hr_HR", "id_ID", "ka_GE", "km_KH", "mk_MK", "ml_IN",
    "mn_MN", "mr_IN", "pl_PL", "ps_AF", "pt_XX", "sv_SE", "sw_KE", "ta_IN", "te_IN", "th_TH", "tl_XX",
    "uk_UA", "ur_PK", "xh_ZA", "gl_ES", "sl_SI",
)  # fmt: skip
LANGUAGE_CODES = {"MBartTokenizer": MBART_LANGUAGE_CODES, "MBart50Tokenizer": MBART50_LANGUAGE_CODES}

#: The SentencePiece file each class reads when the folder has no tokenizer.json.
SPM_FILES = {
    "T5Tokenizer": "spiece.model",
    "PegasusTokenizer": "spiece.model",
    "MBartTokenizer": "sentencepiece.bpe.model",
    "MBart50Tokenizer": "sentencepiece.bpe.model",
}
MARIAN_FILES = ("source.spm", "target.spm", "vocab.json")
SEQ2SEQ_CLASSES = frozenset({*SPM_FILES, "MarianTokenizer"})

# Marian vocab.json entries that the SentencePiece model cannot produce get a piece no pre-token
# can match (a plain space never survives Metaspace pre-tokenization), so that they keep their id
# without changing the segmentation; decoding removes the marker.
_UNREACHABLE = " "


def _name(value: Any, default: str) -> str:
    if value is None:
        return default
    return str(value["content"]) if isinstance(value, Mapping) else str(value)


def _tokens(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else []


def _content(token: Any) -> str:
    return str(token["content"]) if isinstance(token, Mapping) else str(token)


# --- the config each class completes ----------------------------------------------------------------
def complete_config(cls_name: str, config: dict[str, Any]) -> None:
    """Add the extra special tokens the reference's class adds when the config does not list them:
    T5's ``<extra_id_N>`` sentinels, Pegasus' ``<mask_1>`` and ``<unk_2>``...``<unk_{offset-1}>``,
    mBART's language codes."""
    extra_key = "extra_special_tokens" if config.get("extra_special_tokens") else "additional_special_tokens"
    extra = _tokens(config.get(extra_key))
    names = [_content(t) for t in extra]
    if cls_name == "T5Tokenizer":
        n = int(config.get("extra_ids", 100))
        if not any("<extra_id_" in t for t in names):
            extra += [f"<extra_id_{i}>" for i in range(n)]
    elif cls_name == "PegasusTokenizer":
        sent = config.get("mask_token_sent", "<mask_1>")
        offset = int(config.get("offset", 103))
        if not names or (sent is not None and _content(sent) not in names):
            extra = ([sent] if sent is not None else []) + [f"<unk_{i}>" for i in range(2, offset)]
    elif cls_name in LANGUAGE_CODES:
        extra += [c for c in LANGUAGE_CODES[cls_name] if c not in names]
    else:
        return
    config.pop("extra_special_tokens" if extra_key == "additional_special_tokens" else "additional_special_tokens", None)
    config[extra_key] = extra


# --- vocabularies from a SentencePiece model -----------------------------------------------------
def _class_vocab(cls_name: str, spm: SpmModel, config: Mapping[str, Any]) -> tuple[list[tuple[str, float]], int]:
    """(vocabulary in id order, unk id) in the layout of the reference's class."""
    vocab = spm.vocab()
    unk = _name(config.get("unk_token"), "<unk>")
    if cls_name == "T5Tokenizer":
        n = int(config.get("extra_ids", 100))
        vocab = vocab + [(f"<extra_id_{i}>", 0.0) for i in range(n - 1, -1, -1)]
        return vocab, 2  # the reference's class fixes <unk> at 2, where T5's models have it
    if cls_name == "PegasusTokenizer":
        # <pad>, </s>, the two mask tokens, <unk_2>..<unk_{offset-1}>, then the model's pieces from 2
        mask = str(config.get("mask_token", "<mask_1>"))
        sent = str(config.get("mask_token_sent", "<mask_2>"))
        head = [(_name(config.get("pad_token"), "<pad>"), 0.0), (_name(config.get("eos_token"), "</s>"), 0.0)]
        if mask != "None":
            head.append((mask, 0.0))
        if sent not in ("None", mask):
            head.append((sent, 0.0))
        head += [(f"<unk_{i}>", -100.0) for i in range(2, int(config.get("offset", 103)))]
        vocab = head + vocab[2:]
        # as the reference's class: the first (unk, 0.0) entry after <pad>
        return vocab, next((i for i, entry in enumerate(vocab) if i >= 1 and entry == (unk, 0.0)), 0)
    if cls_name in LANGUAGE_CODES:
        # fairseq's order: <s>, <pad>, </s>, <unk>, the model's pieces from 3, language codes, <mask>
        first = "bos_token" if cls_name == "MBartTokenizer" else "cls_token"
        head = [(_name(config.get(first), "<s>"), 0.0), (_name(config.get("pad_token"), "<pad>"), 0.0),
                (_name(config.get("eos_token"), "</s>"), 0.0), (unk, 0.0)]  # fmt: skip
        tail = [(c, 0.0) for c in LANGUAGE_CODES[cls_name]] + [(_name(config.get("mask_token"), "<mask>"), 0.0)]
        return head + vocab[3:] + tail, 3
    raise TokenizerLoadError(f"no SentencePiece conversion for {cls_name}")


def backend_from_spm(cls_name: str, spm: SpmModel, config: Mapping[str, Any]) -> _BackendTokenizer:
    """A `tokenizers` tokenizer for ``cls_name`` from its SentencePiece model (post-processor aside:
    it needs the special-token ids, see :func:`post_processor`)."""
    vocab, unk_id = _class_vocab(cls_name, spm, config)
    backend = _BackendTokenizer(Unigram(vocab, unk_id=unk_id, byte_fallback=False))
    apply_pipeline(backend, cls_name, spm.precompiled_charsmap or None)
    return backend


def precompiled_charsmap(backend: _BackendTokenizer) -> bytes | None:
    """The SentencePiece charsmap of a tokenizer.json's ``Precompiled`` normalizer, if any."""
    import base64

    if backend.normalizer is None:
        return None
    state = json.loads(backend.normalizer.__getstate__())
    for part in state.get("normalizers", [state]) if state.get("type") == "Sequence" else [state]:
        if part.get("type") == "Precompiled" and part.get("precompiled_charsmap"):
            return base64.b64decode(part["precompiled_charsmap"])
    return None


def apply_pipeline(backend: _BackendTokenizer, cls_name: str, charsmap: bytes | None) -> None:
    """Normalizer, pre-tokenizer and decoder as the reference's class sets them (it rebuilds them
    even when it loads a tokenizer.json, so a hub file with another pipeline behaves the same)."""
    pre = [normalizers.Precompiled(charsmap)] if charsmap else []
    metaspace = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    split_then_metaspace = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), metaspace])
    if cls_name == "T5Tokenizer":
        backend.normalizer = pre[0] if pre else None
        backend.pre_tokenizer = split_then_metaspace
    elif cls_name == "PegasusTokenizer":
        base = pre or [normalizers.Replace(Regex(r"\n"), " ")]
        backend.normalizer = normalizers.Sequence([*base, normalizers.Replace(Regex(r" {2,}"), " ")])
        backend.pre_tokenizer = metaspace
    elif cls_name == "MBartTokenizer":
        backend.normalizer = normalizers.Sequence(
            [*pre, normalizers.Strip(left=False, right=True), normalizers.Replace(Regex(" {2,}"), "▁")]
        )
        backend.pre_tokenizer = split_then_metaspace
    elif cls_name == "MBart50Tokenizer":
        backend.normalizer = normalizers.Sequence(
            [*pre, normalizers.Strip(left=False, right=True), normalizers.Replace(Regex(r" {2,}"), " ")]
        )
        backend.pre_tokenizer = metaspace
    else:
        return
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)


def template(prefix: list[tuple[str, int]], suffix: list[tuple[str, int]], pair_eos: bool) -> processors.TemplateProcessing:
    """``prefix $A suffix`` (pair: ``prefix $A $B suffix``, or with ``pair_eos`` T5's
    ``$A </s> $B </s>``)."""
    before = [t for t, _ in prefix]
    after = [t for t, _ in suffix]
    pair = before + ["$A", *after, "$B", *after] if pair_eos else before + ["$A", "$B", *after]
    return processors.TemplateProcessing(
        single=before + ["$A", *after], pair=pair, special_tokens=list(dict(prefix + suffix).items())
    )


# --- Marian -------------------------------------------------------------------------------------
def check_marian_vocab(vocab: Any, path: Path) -> dict[str, int]:
    """vocab.json's token -> id map, checked (ids 0..n-1, each once)."""
    if not isinstance(vocab, dict) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in vocab.values()
    ):
        raise TokenizerLoadError(f"{path}: a Marian vocabulary must map token -> integer id")
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise TokenizerLoadError(f"{path}: the ids must run from 0 to {len(vocab) - 1}, each once")
    return vocab


def marian_backend(spm: SpmModel, vocab: Mapping[str, int], unk: str, keep: set[str]) -> _BackendTokenizer:
    """A Unigram over ``vocab``'s ids that segments like the SentencePiece model ``spm``.

    The reference (a slow tokenizer) segments with SentencePiece and then looks each piece up in
    vocab.json. Here the pieces of ``spm`` carry their scores; the entries ``keep`` (special tokens,
    language codes: added tokens, matched before the model) keep their text; every other entry is
    made unreachable, as it is for SentencePiece (MarianTokenizer looks the text of unknown pieces
    up in vocab.json afterwards, as the reference does)."""
    if unk not in vocab:
        raise TokenizerLoadError(f"the unknown token {unk!r} is not in the Marian vocabulary (vocab.json)")
    scores = {p: s for p, s, kind in spm.pieces if kind in (NORMAL, USER_DEFINED)}
    floor = min(scores.values(), default=0.0)  # never below the model's own minimum (unk penalty)
    table = []
    for token, _ in sorted(vocab.items(), key=lambda kv: kv[1]):
        if token in scores:
            table.append((token, scores[token]))
        elif token in keep or token == unk:
            table.append((token, floor))
        else:
            table.append((_UNREACHABLE + token, floor))
    backend = _BackendTokenizer(Unigram(table, unk_id=vocab[unk], byte_fallback=False))
    if spm.precompiled_charsmap:
        backend.normalizer = normalizers.Precompiled(spm.precompiled_charsmap)
    scheme = "always" if spm.add_dummy_prefix else "never"
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=True)]
    )
    backend.decoder = decoders.Sequence(
        [decoders.Replace(_UNREACHABLE, ""), decoders.Metaspace(replacement="▁", prepend_scheme=scheme, split=True)]
    )
    return backend


def marian_token(token: str) -> str:
    """The vocab.json text of a Marian backend token."""
    return token[len(_UNREACHABLE) :] if token.startswith(_UNREACHABLE) else token


def marian_language_codes(vocab: Mapping[str, int]) -> list[str]:
    """The ``>>xx<<`` target-language codes of a Marian vocabulary."""
    return [t for t in vocab if t.startswith(">>") and t.endswith("<<")]
