"""The encoder-decoder tokenizer classes: T5, Pegasus, mBART, mBART-50 and Marian.

Each is a :class:`Tokenizer` (``AutoTokenizer`` returns the one named by ``tokenizer_class`` in
tokenizer_config.json) with what its reference class adds: the special-token template (``</s>``
appended; mBART's language codes), ``src_lang`` / ``tgt_lang`` and ``lang_code_to_id``, T5's
sentinels, Marian's target-side SentencePiece model and vocab.json ids. ``text_target=`` in the
call encodes the target side (see :meth:`Tokenizer.__call__`).

Example::

    >>> from pretrained.tokenization import AutoTokenizer
    >>> tok = AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/mbart", src_lang="en_XX", tgt_lang="fr_XX")
    >>> type(tok).__name__, tok.src_lang, tok.lang_code_to_id["fr_XX"]
    ('MBartTokenizer', 'en_XX', 707)
    >>> batch = tok("Hello", text_target="Bonjour")
    >>> tok.convert_ids_to_tokens([batch["input_ids"][-1], batch["labels"][-1]])
    ['en_XX', 'fr_XX']
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, UnknownLanguageCodeError
from .constants import CONFIG_FILE, _TOKENIZER_CLASSES
from .inputs import _to_python_ids
from .seq2seq_conversion import LANGUAGE_CODES, marian_language_codes, marian_token, template
from .tokenizer import Tokenizer


class T5Tokenizer(Tokenizer):
    """T5: ``tokens </s>`` (pairs: ``a </s> b </s>``), sentinels ``<extra_id_0>``... at the end of the
    vocabulary in reverse order.

    Example::

        >>> t5 = AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/t5")
        >>> t5.convert_tokens_to_ids(["<extra_id_0>", "<extra_id_99>"]), t5.get_sentinel_token_ids()[:2]
        ([699, 600], [699, 698])
    """

    def _post_load(self) -> None:
        self._backend.post_processor = template([], [(self.eos_token, self.eos_token_id)], pair_eos=True)

    def get_sentinel_tokens(self) -> list[str]:
        """The ``<extra_id_N>`` tokens, by N."""
        found = [t for t in self.extra_special_tokens if re.fullmatch(r"<extra_id_\d+>", t)]
        return sorted(found, key=lambda t: int(t[10:-1]))

    def get_sentinel_token_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.get_sentinel_tokens())


class PegasusTokenizer(Tokenizer):
    """Pegasus: ``tokens </s>`` (pairs: ``a b </s>``); ``<mask_1>``, ``<mask_2>`` and ``<unk_2>``...
    ``<unk_102>`` before the SentencePiece pieces (``offset``).

    Example::

        >>> peg = AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/pegasus")
        >>> peg.convert_ids_to_tokens([0, 1, 2, 3, 4, 105])
        ['<pad>', '</s>', '<mask_1>', '<mask_2>', '<unk_2>', '<unk>']
    """

    def _post_load(self) -> None:
        self._backend.post_processor = template([], [(self.eos_token, self.eos_token_id)], pair_eos=False)


class _LanguageCodeTokenizer(Tokenizer):
    """mBART-style tokenizers: a language code token added to every sequence (``src_lang`` for the
    text, ``tgt_lang`` for ``text_target``)."""

    _code_first = False  # mBART: tokens </s> code; mBART-50: code tokens </s>

    @property
    def language_codes(self) -> tuple[str, ...]:
        return LANGUAGE_CODES[type(self).__name__]

    @property
    def lang_code_to_id(self) -> dict[str, int]:
        """Language code -> token id (``forced_bos_token_id=tok.lang_code_to_id["fr_XX"]``)."""
        return {code: self.convert_tokens_to_ids(code) for code in self.language_codes}

    @property
    def id_to_lang_code(self) -> dict[int, str]:
        return {i: code for code, i in self.lang_code_to_id.items()}

    def _check_code(self, code: Any, what: str) -> str:
        if code not in self.language_codes or self._backend.token_to_id(code) is None:
            raise UnknownLanguageCodeError(
                f"{what}={code!r} is not a language code of this {type(self).__name__}; use one of: "
                + ", ".join(self.language_codes)
            )
        return code

    @property
    def src_lang(self) -> str:
        """The source language code; setting it changes the template of ``text``."""
        return self._src_lang

    @src_lang.setter
    def src_lang(self, code: str) -> None:
        self._src_lang = self._check_code(code, "src_lang")
        self._extra_config["src_lang"] = code
        with self._lock:
            self._backend.post_processor = self._template(code)

    @property
    def tgt_lang(self) -> str | None:
        """The target language code (of ``text_target``); None: the source's."""
        return self._tgt_lang

    @tgt_lang.setter
    def tgt_lang(self, code: str | None) -> None:
        self._tgt_lang = None if code is None else self._check_code(code, "tgt_lang")
        self._extra_config["tgt_lang"] = code

    def _template(self, code: str):
        lang = [(code, self.convert_tokens_to_ids(code))]
        eos = [(self.eos_token, self.eos_token_id)]
        return template(lang, eos, False) if self._code_first else template([], eos + lang, False)

    def _post_load(self) -> None:
        self._tgt_lang = None
        self.src_lang = self._extra_config.get("src_lang") or "en_XX"
        self.tgt_lang = self._extra_config.get("tgt_lang")

    def _target_mode(self):
        # as the reference, a target without tgt_lang takes the source's language
        source = self._backend.post_processor
        self._backend.post_processor = self._template(self._tgt_lang or self._src_lang)

        def undo() -> None:
            self._backend.post_processor = source

        return self._backend, undo


class MBartTokenizer(_LanguageCodeTokenizer):
    """mBART (cc25): ``tokens </s> src_lang`` for the text, ``tokens </s> tgt_lang`` for the target."""


class MBart50Tokenizer(_LanguageCodeTokenizer):
    """mBART-50: ``src_lang tokens </s>`` for the text, ``tgt_lang tokens </s>`` for the target.

    Example::

        >>> m50 = AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/mbart50", src_lang="de_DE")
        >>> m50.convert_ids_to_tokens(m50("Hallo").input_ids)[0]
        'de_DE'
    """

    _code_first = True


class MarianTokenizer(Tokenizer):
    """Marian (opus-mt): two SentencePiece models (source.spm for the text, target.spm for
    ``text_target``) whose pieces take their ids from vocab.json (target_vocab.json with
    ``separate_vocabs``); ``tokens </s>``; ``>>xx<<`` target-language codes as whole tokens.

    Example::

        >>> mt = AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/marian")
        >>> mt.supported_language_codes, mt(">>de<< Hello").input_ids[0]
        (['>>de<<', '>>fr<<'], 2)
    """

    _marian_files: dict[str, Path]

    @property
    def separate_vocabs(self) -> bool:
        return bool(self._extra_config.get("separate_vocabs", False))

    @property
    def source_lang(self) -> str | None:
        return self._extra_config.get("source_lang")

    @property
    def target_lang(self) -> str | None:
        return self._extra_config.get("target_lang")

    @property
    def supported_language_codes(self) -> list[str]:
        vocab = self.get_vocab()
        return [] if self.separate_vocabs else sorted(marian_language_codes(vocab), key=vocab.__getitem__)

    def _post_load(self) -> None:
        specials = [t for t in [*self._special.values(), *self._extra] if t is not None]
        self._target_backend.add_special_tokens(specials)
        for backend in (self._backend, self._target_backend):
            backend.post_processor = template([], [(self.eos_token, self.eos_token_id)], pair_eos=False)

    def _fix_encodings(self, inputs: list, encodings: list, is_pretokenized: bool, target: bool) -> list:
        # SentencePiece gives an unknown stretch of text as a piece of its own, which the reference
        # then looks up in vocab.json: a character only the other side's model knows gets its id
        if is_pretokenized:
            return encodings
        unk = self.unk_token_id
        if not any(unk in enc.ids for enc in encodings):
            return encodings
        vocab = self.get_tgt_vocab() if target else self.get_vocab()
        out = []
        for item, enc in zip(inputs, encodings, strict=True):
            texts = item if isinstance(item, tuple) else (item,)
            out.append(_UnknownPieces(enc, texts, vocab, unk) if unk in enc.ids else enc)
        return out

    def get_vocab(self) -> dict[str, int]:
        """vocab.json (the source side) and the added tokens."""
        return dict(self._vocab_of(self._backend))

    def get_tgt_vocab(self) -> dict[str, int]:
        return dict(self._vocab_of(self._target_backend))

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_vocab_cache", None)  # keyed by id(backend): meaningless in a copy
        return state

    def _vocab_of(self, backend: Any) -> dict[str, int]:
        # cached per backend and size: looked up for every encoding with an unknown piece
        key = (id(backend), backend.get_vocab_size(with_added_tokens=True))
        cache = self.__dict__.setdefault("_vocab_cache", {})
        if key not in cache:
            cache[key] = {marian_token(t): i for t, i in backend.get_vocab(with_added_tokens=True).items()}
        return cache[key]

    def _token_to_id(self, token: str) -> int | None:
        idx = self._backend.token_to_id(token)
        if idx is None and self._backend.token_to_id(" " + token) is not None:
            return self._backend.token_to_id(" " + token)  # a vocab.json entry the model never produces
        return super()._token_to_id(token)

    def _decode_side(self, use_source_tokenizer: bool | None):
        # as the reference: ids are read with the target vocabulary only when the two differ
        use_source = not self.separate_vocabs if use_source_tokenizer is None else use_source_tokenizer
        return self._backend if use_source else self._target_backend

    def convert_ids_to_tokens(self, ids: Any, skip_special_tokens: bool = False) -> Any:
        """Id(s) -> vocab.json token(s) (target_vocab.json's with ``separate_vocabs``, as the reference)."""
        backend = self._decode_side(None)
        ids = _to_python_ids(ids)
        if isinstance(ids, int):
            token = backend.id_to_token(ids) if ids >= 0 else None
            return None if token is None else marian_token(token)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        out = []
        for i in (int(i) for i in ids):
            if i not in skip:
                token = backend.id_to_token(i) if i >= 0 else None
                out.append(None if token is None else marian_token(token))
        return out

    def decode(self, token_ids: Any, skip_special_tokens: bool = False, clean_up_tokenization_spaces=None,
               use_source_tokenizer: bool | None = None, **kwargs: Any) -> str | list[str]:  # fmt: skip
        """Ids -> text the way the reference's Marian decodes: the text between special tokens is
        decoded piece by piece, each special token followed by a space, the whole stripped."""
        ids = _to_python_ids(token_ids)
        if isinstance(ids, list) and ids and isinstance(ids[0], (list, tuple)):
            return [self.decode(seq, skip_special_tokens, use_source_tokenizer=use_source_tokenizer) for seq in ids]
        if isinstance(ids, int):
            ids = [ids]
        backend = self._decode_side(use_source_tokenizer)
        special = set(self.all_special_ids)
        text, chunk = "", []
        for i in ids:
            if not isinstance(i, int) or isinstance(i, bool) or i < 0:
                raise InvalidInputError(f"token ids must be integers >= 0, got {i!r}")
            token = backend.id_to_token(i)
            if i in special:
                if not skip_special_tokens:
                    text += self._pieces_to_text(chunk) + (token or "") + " "
                    chunk = []
                continue
            chunk.append(marian_token(token) if token is not None else self.unk_token)
        text += self._pieces_to_text(chunk)
        return text.replace("▁", " ").strip()

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = False, clean_up_tokenization_spaces=None,
                     **kwargs: Any) -> list[str]:  # fmt: skip
        seqs = _to_python_ids(sequences)
        return [self.decode(seq, skip_special_tokens, **kwargs) for seq in seqs]

    @staticmethod
    def _pieces_to_text(pieces: list[str]) -> str:
        # SentencePiece's decoding: pieces joined, "▁" is a space, the dummy prefix's space dropped
        text = "".join(pieces).replace("▁", " ")
        return text[1:] if text.startswith(" ") else text

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> tuple[str, ...]:
        """tokenizer_config.json and special_tokens_map.json, plus the SentencePiece models and
        vocabularies (Marian has no tokenizer.json, in the reference either)."""
        written = super().save_pretrained(save_directory, **kwargs)
        directory = Path(save_directory)
        (directory / "tokenizer.json").unlink()
        files = ["source.spm", "target.spm", "vocab.json"] + (["target_vocab.json"] if self.separate_vocabs else [])
        for name in files:
            source = self._marian_files[name]
            if source.resolve() != (directory / name).resolve():
                shutil.copyfile(source, directory / name)
        config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
        config["separate_vocabs"] = self.separate_vocabs
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                                             encoding="utf-8")  # fmt: skip
        return tuple(w for w in written if not w.endswith("tokenizer.json")) + tuple(str(directory / f) for f in files)


class _UnknownPieces:
    """A `tokenizers` Encoding whose <unk> ids are replaced by the vocabulary id of the text they
    cover, where the vocabulary has that text (everything else is the Encoding's own)."""

    def __init__(self, enc: Any, texts: tuple[str, ...], vocab: dict[str, int], unk: int) -> None:
        self._enc = enc
        ids = list(enc.ids)
        for i, (token_id, special, seq, (start, end)) in enumerate(
            zip(ids, enc.special_tokens_mask, enc.sequence_ids, enc.offsets, strict=True)
        ):
            if token_id == unk and not special and seq is not None and seq < len(texts):
                ids[i] = vocab.get(texts[seq][start:end], unk)
        self.ids = ids
        self.overflowing = [_UnknownPieces(o, texts, vocab, unk) for o in enc.overflowing]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._enc, name)


for _cls in (T5Tokenizer, PegasusTokenizer, MBartTokenizer, MBart50Tokenizer, MarianTokenizer):
    _TOKENIZER_CLASSES[_cls.__name__] = _cls
del _cls
