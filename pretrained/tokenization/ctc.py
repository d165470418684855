"""The CTC character tokenizer of Wav2Vec2 / HuBERT speech recognisers (``Wav2Vec2CTCTokenizer``).

Why a class of its own: a CTC model emits one token per audio frame, so its ids are decoded
differently from text tokens. Runs of the same id are one character (``group_tokens``), the
``<pad>`` token is the CTC blank and disappears, and ``|`` is the word delimiter (a space). With
``output_char_offsets`` / ``output_word_offsets`` the frame span of each character / word comes
back too (times: ``offset * model.config.inputs_to_logits_ratio / sampling_rate``), as the
reference's class returns them. The checkpoint has only ``vocab.json`` (character -> id; nested
by language for multilingual MMS vocabularies, picked with ``target_lang``) and
``tokenizer_config.json`` (``do_lower_case``: the vocabulary is upper case, so text is upper-cased
when encoded and decoded text lower-cased; ``word_delimiter_token``; ``replace_word_delimiter_char``).
Encoding text (labels for CTC training) splits it into characters, a space becoming ``|``;
multi-character vocabulary entries (``<s>``, ``<unk>``) stay whole, swallowing the spaces around
them, as in the reference.

Example::

    >>> from pretrained.tokenization import AutoTokenizer
    >>> tok = AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/wav2vec2_ctc")
    >>> type(tok).__name__
    'Wav2Vec2CTCTokenizer'
    >>> ids = tok("HI YOU").input_ids
    >>> ids
    [11, 10, 4, 22, 8, 16]
    >>> frames = [11, 11, 0, 10, 4, 4, 0, 22, 8, 8, 0, 16]   # repeats and blanks, per frame
    >>> tok.decode(frames)
    'HI YOU'
    >>> tok.decode(frames, output_word_offsets=True).word_offsets
    [{'word': 'HI', 'start_offset': 0, 'end_offset': 4}, {'word': 'YOU', 'start_offset': 7, 'end_offset': 12}]
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, fields
from itertools import groupby
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, models, normalizers, pre_tokenizers
from tokenizers import Tokenizer as _BackendTokenizer

from ..errors import InvalidInputError, TokenizerLoadError, TokenizerNotFoundError
from .constants import CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE, _TOKENIZER_CLASSES
from .decoding import clean_up_tokenization
from .inputs import _as_id, _to_python_ids
from .tokenizer import Tokenizer

VOCAB_FILE = "vocab.json"
_DEFAULTS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}


@dataclass
class Wav2Vec2CTCTokenizerOutput:
    """``decode(..., output_char_offsets=True)`` / ``output_word_offsets=True``: the text and the
    offsets (frame indices; ``end_offset`` exclusive). Attribute and key access (``out["text"]``);
    as the reference's output, ``keys()`` lists only the fields that are set."""

    text: str | list[str]
    char_offsets: list | None = None
    word_offsets: list | None = None

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()


class Wav2Vec2CTCTokenizer(Tokenizer):
    """A :class:`Tokenizer` over ``vocab.json`` with the reference's CTC decoding (see the module).

    Build one from a folder with ``AutoTokenizer.from_pretrained`` (``tokenizer_class``
    "Wav2Vec2CTCTokenizer") or from a vocabulary with :meth:`from_vocab`."""

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_vocab(cls, vocab: str | os.PathLike | dict, **config: Any) -> "Wav2Vec2CTCTokenizer":
        """A tokenizer from a ``vocab.json`` path or a token -> id dict, with
        tokenizer_config.json's keys as keyword arguments (``do_lower_case=True``...).

        Example::

            >>> tok = Wav2Vec2CTCTokenizer.from_vocab({"<pad>": 0, "<unk>": 1, "|": 2, "A": 3, "B": 4})
            >>> tok.decode([3, 3, 0, 3, 2, 4]), tok("AB A").input_ids
            ('AA B', [3, 4, 2, 3])
        """
        data = dict(vocab) if isinstance(vocab, dict) else _read_vocab(Path(vocab))
        tok = cls.__new__(cls)
        config = {"tokenizer_class": cls.__name__, **config}
        backend = tok._build_backend(data, config, str(vocab) if not isinstance(vocab, dict) else "")
        tok._setup(backend, config, name_or_path="", from_tokenizer_json=False)
        tok._set_bos_eos_template(False, False)
        return tok

    def _backend_from_files(self, files: Any, name: str, config: dict[str, Any]) -> _BackendTokenizer:
        """Called by the loader (tokenization/loading.py) in place of tokenizer.json: the backend
        built from vocab.json and the class's own config keys (taken out of ``config``)."""
        path = files.get(VOCAB_FILE)
        if path is None:
            raise TokenizerNotFoundError(f"{name}: Wav2Vec2CTCTokenizer needs vocab.json (character -> id); "
                                         "it is not in the folder")
        return self._build_backend(_read_vocab(Path(path)), config, name)

    def _build_backend(self, vocab: dict, config: dict[str, Any], name: str) -> _BackendTokenizer:
        self._full_vocab = vocab
        self.target_lang = config.pop("target_lang", None)
        nested = bool(vocab) and all(isinstance(v, dict) for v in vocab.values())
        if nested:
            if self.target_lang not in vocab:
                raise TokenizerLoadError(
                    f"{name}: vocab.json holds one vocabulary per language ({', '.join(sorted(vocab)[:8])}"
                    f"{'...' if len(vocab) > 8 else ''}); pass target_lang= one of them")
            encoder = vocab[self.target_lang]
        else:
            encoder = vocab
        if not encoder or not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                                  for k, v in encoder.items()):
            raise TokenizerLoadError(f"{name}: vocab.json must map characters to integer ids")
        self.do_lower_case = bool(config.pop("do_lower_case", False))
        self.replace_word_delimiter_char = config.pop("replace_word_delimiter_char", " ")
        # a named special token, as in the reference (in all_special_ids; never skipped in decode)
        for key, default in {**_DEFAULTS, "word_delimiter_token": "|"}.items():
            config.setdefault(key, default)
        delimiter = config["word_delimiter_token"]
        self._encoder = dict(encoder)
        self._decoder = {i: t for t, i in encoder.items()}
        backend = _BackendTokenizer(models.WordLevel(dict(encoder), unk_token=_content(config["unk_token"])))
        if delimiter is not None:
            backend.normalizer = normalizers.Replace(" ", _content(delimiter))
        backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        # multi-character entries are never split; spaces next to them are swallowed (the reference)
        backend.add_tokens([AddedToken(t, lstrip=True, rstrip=True, normalized=False)
                            for t in encoder if len(t) > 1])
        return backend

    def _post_load(self) -> None:
        self._set_bos_eos_template(False, False)   # the reference adds no special tokens

    def set_target_lang(self, target_lang: str) -> None:
        """Switch a multilingual (nested) vocabulary to another language."""
        if not all(isinstance(v, dict) for v in self._full_vocab.values()):
            raise InvalidInputError("this vocabulary is not multilingual (nested by language); "
                                    "there is no target language to set")
        config = {"target_lang": target_lang, "do_lower_case": self.do_lower_case,
                  "replace_word_delimiter_char": self.replace_word_delimiter_char,
                  **{k: self._get_special(k) for k in (*_DEFAULTS, "word_delimiter_token")}}
        backend = self._build_backend(self._full_vocab, config, self.name_or_path)
        for tok in [*self._special.values(), *self._extra]:
            if tok is not None and backend.token_to_id(tok.content) is None:
                backend.add_tokens([tok])
        with self._lock:
            self._backend = backend
        self._set_bos_eos_template(False, False)

    @property
    def word_delimiter_token(self) -> str | None:
        """The token that separates words (``|``); decoded as ``replace_word_delimiter_char``."""
        return self._get_special("word_delimiter_token")

    @word_delimiter_token.setter
    def word_delimiter_token(self, value: str | None) -> None:
        self._set_special("word_delimiter_token", value)

    @property
    def word_delimiter_token_id(self) -> int | None:
        return None if self.word_delimiter_token is None else self.convert_tokens_to_ids(self.word_delimiter_token)

    @property
    def vocab_size(self) -> int:
        """The characters of the (chosen language's) vocabulary."""
        return len(self._decoder)

    # ---------------------------------------------------------------- encoding
    def _backend_encode(self, inputs, **kwargs):   # type: ignore[override]
        if self.do_lower_case:   # an upper-case vocabulary: the text is upper-cased first
            up = self._upper
            inputs = [tuple(up(t) for t in x) if isinstance(x, tuple) else
                      ([up(w) for w in x] if isinstance(x, list) else up(x)) for x in inputs]
        return super()._backend_encode(inputs, **kwargs)

    def _upper(self, text: str) -> str:
        """Upper case outside the whole-token entries (``<s>`` stays ``<s>``: the reference
        splits those out before it upper-cases the rest)."""
        whole = sorted((t.content for t in self._backend.get_added_tokens_decoder().values() if len(t.content) > 1),
                       key=len, reverse=True)
        if not whole:
            return text.upper()
        parts = re.split("(" + "|".join(map(re.escape, whole)) + ")", text)
        return "".join(p if i % 2 else p.upper() for i, p in enumerate(parts))

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False,
                 **kwargs: Any) -> list[str]:
        """The characters (and whole multi-character tokens) of ``text``, ``|`` for a space; a
        character outside the vocabulary is itself here and ``<unk>``'s id when encoded."""
        enc = self(text, pair, add_special_tokens=add_special_tokens, **kwargs).encodings[0]
        source = self._upper(text) if self.do_lower_case else text
        unk = self._get_special("unk_token")
        unk_id = self.convert_tokens_to_ids(unk) if unk is not None else None
        out = []
        for i, t, (a, b) in zip(enc.ids, enc.tokens, enc.offsets):
            piece = source[a:b].strip() or source[a:b]
            out.append(piece if i == unk_id and piece != unk else self._decoder.get(i, t.strip() or t))
        return out

    # ---------------------------------------------------------------- decoding
    def convert_ids_to_tokens(self, ids: Any, skip_special_tokens: bool = False) -> Any:
        """Id(s) -> token(s), the vocabulary first; an unknown id is ``<unk>``."""
        ids = _to_python_ids(ids)
        unk = self._get_special("unk_token")
        if isinstance(ids, int):
            return self._decoder.get(ids, self._backend.id_to_token(ids) if ids >= 0 else None) or unk
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self.convert_ids_to_tokens(int(i)) for i in ids if int(i) not in skip]

    def decode(self, token_ids: Any, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None, output_char_offsets: bool = False,
               output_word_offsets: bool = False, group_tokens: bool = True,
               spaces_between_special_tokens: bool = False, **kwargs: Any) -> Any:
        """Frame ids -> text: repeats collapsed (``group_tokens``), blanks (``<pad>``) dropped,
        ``|`` -> ``replace_word_delimiter_char``. With ``output_char_offsets`` /
        ``output_word_offsets`` a :class:`Wav2Vec2CTCTokenizerOutput`. ``skip_special_tokens``
        drops the special tokens (the delimiter excepted) *before* repeats are collapsed, so
        ``A <pad> A`` becomes ``A``, as in the reference. A batch (list of lists) decodes each."""
        ids = _to_python_ids(token_ids)
        opts = dict(skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=clean_up_tokenization_spaces,
                    output_char_offsets=output_char_offsets, output_word_offsets=output_word_offsets,
                    group_tokens=group_tokens, spaces_between_special_tokens=spaces_between_special_tokens)
        if isinstance(ids, list) and ids and isinstance(ids[0], (list, tuple)):
            return [self.decode(list(seq), **opts) for seq in ids]
        if isinstance(ids, bool) or not isinstance(ids, (int, list)):
            raise InvalidInputError(f"token ids must be an int or a list of ints, got {type(ids).__name__}")
        return self._ctc_decode([ids] if isinstance(ids, int) else [_as_id(i) for i in ids], **opts)

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None, output_char_offsets: bool = False,
                     output_word_offsets: bool = False, **kwargs: Any) -> Any:
        """One :meth:`decode` per row; with offsets one :class:`Wav2Vec2CTCTokenizerOutput` whose
        fields are lists (one entry per row)."""
        rows = _to_python_ids(sequences)
        out = [self.decode(row, skip_special_tokens, clean_up_tokenization_spaces, output_char_offsets,
                           output_word_offsets, **kwargs) for row in rows]
        if not (output_char_offsets or output_word_offsets):
            return out
        keys = out[0].keys() if out else ["text"]
        return Wav2Vec2CTCTokenizerOutput(**{k: [o[k] for o in out] for k in keys})

    def _ctc_decode(self, ids: list[int], *, skip_special_tokens: bool, clean_up_tokenization_spaces: bool | None,
                    output_char_offsets: bool, output_word_offsets: bool, group_tokens: bool,
                    spaces_between_special_tokens: bool) -> Any:
        tokens = self.convert_ids_to_tokens(ids)
        if skip_special_tokens:
            special = set(self.all_special_tokens) - {self.word_delimiter_token}
            tokens = [t for t in tokens if t not in special]
        if group_tokens:
            runs = [(t, len(list(g))) for t, g in groupby(tokens)]
        else:
            runs = [(t, 1) for t in tokens]
        blank = self._get_special("pad_token")
        chars = [self.replace_word_delimiter_char if t == self.word_delimiter_token else t
                 for t, _ in runs if t != blank]
        text = (" " if spaces_between_special_tokens else "").join(chars).strip()
        if self.do_lower_case:
            text = text.lower()
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None \
            else clean_up_tokenization_spaces
        if clean:
            text = clean_up_tokenization(text)
        if not (output_char_offsets or output_word_offsets):
            return text
        char_offsets, end = [], 0
        for t, n in runs:
            if t != blank:
                char_offsets.append({"char": t, "start_offset": end, "end_offset": end + n})
            end += n
        for entry, char in zip(char_offsets, chars):
            entry["char"] = char
        words = _word_offsets(char_offsets, self.replace_word_delimiter_char) if output_word_offsets else None
        return Wav2Vec2CTCTokenizerOutput(text=text, char_offsets=char_offsets if output_char_offsets else None,
                                          word_offsets=words)

    # ---------------------------------------------------------------- saving
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> tuple[str, ...]:
        """vocab.json, tokenizer_config.json and special_tokens_map.json: the files the
        reference's class reads (no tokenizer.json: it has no fast class to read one)."""
        super().save_pretrained(save_directory, **kwargs)
        directory = Path(save_directory)
        (directory / "tokenizer.json").unlink()
        vocab_path = directory / VOCAB_FILE
        vocab_path.write_text(json.dumps(self._full_vocab, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                              encoding="utf-8")
        config_path = directory / CONFIG_FILE
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config.update(tokenizer_class="Wav2Vec2CTCTokenizer", do_lower_case=self.do_lower_case,
                      target_lang=self.target_lang,
                      replace_word_delimiter_char=self.replace_word_delimiter_char)
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                               encoding="utf-8")
        return (str(config_path), str(directory / SPECIAL_TOKENS_MAP_FILE), str(vocab_path))

    def __deepcopy__(self, memo: dict) -> "Wav2Vec2CTCTokenizer":
        new = super().__deepcopy__(memo)
        new._full_vocab = copy.deepcopy(self._full_vocab, memo)
        return new


def _word_offsets(char_offsets: list[dict], delimiter: str) -> list[dict]:
    """Characters with offsets -> words with the first character's start and the last's end."""
    words: list[dict] = []
    for is_space, group in groupby(char_offsets, key=lambda c: c["char"] == delimiter):
        if not is_space:
            group = list(group)
            words.append({"word": "".join(c["char"] for c in group), "start_offset": group[0]["start_offset"],
                          "end_offset": group[-1]["end_offset"]})
    return words


def _read_vocab(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TokenizerLoadError(f"{path}: cannot read vocab.json ({e})") from None
    if not isinstance(data, dict):
        raise TokenizerLoadError(f"{path}: vocab.json must hold a JSON object of character -> id")
    return data


def _content(token: Any) -> str:
    return str(token["content"]) if isinstance(token, dict) else str(token)


_TOKENIZER_CLASSES[Wav2Vec2CTCTokenizer.__name__] = Wav2Vec2CTCTokenizer
