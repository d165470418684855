"""Tokenizers built from the files of the reference's slow classes when a checkpoint has no
tokenizer.json: WordPiece from vocab.txt (BERT), byte-level BPE from vocab.json + merges.txt
(GPT-2, RoBERTa), with those classes' post-processors; and their settings applied to a
tokenizer.json."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenizers import Tokenizer as _BackendTokenizer
from tokenizers import decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE, WordPiece

from ..errors import TokenizerLoadError
from .constants import _BERT_CLASSES, _GPT2_CLASSES, _ROBERTA_CLASSES
from .inputs import _error_detail, _is_fatal

if TYPE_CHECKING:
    from .tokenizer import Tokenizer


def _wordpiece_from_vocab(path: Path, config: dict[str, Any], specials: dict[str, Any]) -> _BackendTokenizer:
    unk = specials.get("unk_token") or "[UNK]"
    unk = unk["content"] if isinstance(unk, Mapping) else str(unk)
    try:
        vocab = WordPiece.read_file(str(path))
        model = WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100)
    except BaseException as e:
        if _is_fatal(e):
            raise
        raise TokenizerLoadError(f"{path}: cannot read the WordPiece vocabulary: {e}") from None
    if not vocab:
        raise TokenizerLoadError(f"{path}: vocab.txt is empty")
    backend = _BackendTokenizer(model)
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=bool(config.get("tokenize_chinese_chars", True)),
        strip_accents=config.get("strip_accents"),
        lowercase=bool(config.get("do_lower_case", True)),
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    return backend


def _bpe_from_vocab_merges(vocab_path: Path, merges_path: Path, config: dict[str, Any]) -> _BackendTokenizer:
    try:
        vocab, merges = BPE.read_file(str(vocab_path), str(merges_path))
        model = BPE(
            vocab, merges, dropout=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False
        )
    except BaseException as e:
        if _is_fatal(e):
            raise
        detail = _error_detail(e)
        raise TokenizerLoadError(
            f"{vocab_path.parent}: cannot build a BPE tokenizer from vocab.json + merges.txt ({detail})"
        ) from None
    backend = _BackendTokenizer(model)
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(
        add_prefix_space=bool(config.get("add_prefix_space", False))
    )
    backend.decoder = decoders.ByteLevel()
    return backend


def _apply_class_settings(
    backend: _BackendTokenizer, cls_name: str | None, config: Mapping[str, Any]
) -> None:
    """The reference's BERT and GPT-2/RoBERTa classes rebuild part of a tokenizer.json pipeline from
    ``do_lower_case``/``strip_accents``/``tokenize_chinese_chars`` and ``add_prefix_space``. When the
    config (or a ``from_pretrained`` keyword) sets one of these, apply it the same way; when it does
    not, the tokenizer.json is kept as it is."""
    if cls_name in _BERT_CLASSES and isinstance(backend.normalizer, normalizers.BertNormalizer):
        norm = backend.normalizer
        if "do_lower_case" in config:
            norm.lowercase = bool(config["do_lower_case"])
        if "strip_accents" in config:
            norm.strip_accents = config["strip_accents"]
        if "tokenize_chinese_chars" in config:
            norm.handle_chinese_chars = bool(config["tokenize_chinese_chars"])
    if (cls_name in _GPT2_CLASSES or cls_name in _ROBERTA_CLASSES) and "add_prefix_space" in config:
        if isinstance(backend.pre_tokenizer, pre_tokenizers.ByteLevel):
            backend.pre_tokenizer.add_prefix_space = bool(config["add_prefix_space"])


def _add_conversion_post_processor(tok: Tokenizer, cls_name: str | None, config: Mapping[str, Any]) -> None:
    model = type(tok.backend_tokenizer.model).__name__
    if model == "WordPiece":
        cls, sep = tok.cls_token, tok.sep_token
        if cls is None or sep is None:
            return
        tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0",
            pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, tok.cls_token_id), (sep, tok.sep_token_id)],
        )
    elif cls_name in _ROBERTA_CLASSES and tok.cls_token is not None and tok.sep_token is not None:
        tok.backend_tokenizer.post_processor = processors.RobertaProcessing(
            (tok.sep_token, tok.sep_token_id),
            (tok.cls_token, tok.cls_token_id),
            trim_offsets=bool(config.get("trim_offsets", True)),
            add_prefix_space=bool(config.get("add_prefix_space", False)),
        )
    else:
        tok._set_bos_eos_template(
            bool(config.get("add_bos_token", False)), bool(config.get("add_eos_token", False))
        )
