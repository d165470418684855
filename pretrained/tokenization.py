"""Tokenizers: ``AutoTokenizer.from_pretrained(...)`` and the :class:`Tokenizer` it returns.

The actual tokenization is done by the Rust `tokenizers` library; this module reads a checkpoint's
tokenizer files, applies the settings from ``tokenizer_config.json`` and gives the familiar call
API (``tok(texts, padding=True, return_tensors="pt")``, ``decode``, ``apply_chat_template``,
``save_pretrained``).

Files read, in this order of preference:

* ``tokenizer.json`` (used as is: its normalizer, pre-tokenizer, model, post-processor, decoder);
* ``vocab.txt`` -> a BERT WordPiece tokenizer (``do_lower_case``, ``strip_accents``,
  ``tokenize_chinese_chars`` from ``tokenizer_config.json``);
* ``vocab.json`` + ``merges.txt`` -> a GPT-2 byte-level BPE tokenizer (``add_prefix_space``,
  ``add_bos_token``/``add_eos_token`` from the config; RoBERTa/BART classes get ``<s> ... </s>``);

plus ``tokenizer_config.json``, ``special_tokens_map.json``, ``added_tokens.json`` (legacy),
``chat_template.jinja`` and ``chat_templates/*.jinja``.

Example::

    >>> from pretrained.tokenization import AutoTokenizer
    >>> tok = AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/bert_wordpiece")
    >>> batch = tok(["Hello world!", "hi"], padding=True, return_tensors="pt")
    >>> batch["input_ids"].shape
    torch.Size([2, 5])
    >>> tok.decode(batch["input_ids"][0], skip_special_tokens=True)
    'hello world!'
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import tokenizers
from tokenizers import AddedToken, decoders, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as _BackendTokenizer
from tokenizers.models import BPE, WordPiece

from .errors import (
    InvalidInputError,
    MissingDependencyError,
    RemoteCodeError,
    TemplateError,
    TokenizerError,
    TokenizerLoadError,
    TokenizerNotFoundError,
)

__all__ = [
    "AutoTokenizer",
    "BatchEncoding",
    "CharSpan",
    "PreTrainedTokenizerFast",
    "Tokenizer",
    "SPECIAL_TOKEN_NAMES",
]

logger = logging.getLogger(__name__)

#: Named special tokens every tokenizer has (``None`` when unset).
SPECIAL_TOKEN_NAMES = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)

#: ``model_max_length`` when the checkpoint gives none (same value as the reference).
VERY_LARGE_INTEGER = int(1e30)
_LARGE_INTEGER = int(1e20)

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
CHAT_TEMPLATE_DIR = "chat_templates"

_VALID_TENSORS = ("pt", "np", "tf")
_PADDING_VALUES = (True, False, "longest", "max_length", "do_not_pad")
_TRUNCATION_VALUES = (True, False, "longest_first", "only_first", "only_second", "do_not_truncate")

# --- per-class defaults (what the reference's classes declare) ------------------------------------
_BERT_CLASSES = {
    "BertTokenizer", "ElectraTokenizer", "MobileBertTokenizer", "LayoutLMTokenizer",
    "SqueezeBertTokenizer", "LxmertTokenizer",
}  # fmt: skip
_ROBERTA_CLASSES = {"RobertaTokenizer", "BartTokenizer", "LongformerTokenizer", "LEDTokenizer"}
_GPT2_CLASSES = {"GPT2Tokenizer"}
_INPUT_NAMES_BY_CLASS: dict[str, tuple[str, ...]] = {
    **{
        name: ("input_ids", "token_type_ids", "attention_mask")
        for name in _BERT_CLASSES
        | {
            "ConvBertTokenizer",
            "DPRContextEncoderTokenizer",
            "DPRQuestionEncoderTokenizer",
            "MarkupLMTokenizer",
        }
    },
    **{
        name: ("input_ids", "attention_mask", "token_type_ids")
        for name in (
            "CanineTokenizer",
            "DebertaTokenizer",
            "DebertaV2Tokenizer",
            "LayoutLMv2Tokenizer",
            "TapasTokenizer",
        )
    },
    "FNetTokenizer": ("input_ids", "token_type_ids"),
    "LayoutLMv3Tokenizer": ("input_ids", "attention_mask", "bbox"),
}
_LEFT_PADDING_CLASSES = {
    "CodeLlamaTokenizer", "CohereTokenizer", "GemmaTokenizer", "LlamaTokenizer", "Siglip2Tokenizer",
    "XLNetTokenizer",
}  # fmt: skip
_BERT_SPECIALS = {
    "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]",
}  # fmt: skip
_GPT2_SPECIALS = {"unk_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}
_ROBERTA_SPECIALS = {
    "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>",
    "pad_token": "<pad>", "mask_token": "<mask>",
}  # fmt: skip
# Special tokens the reference's classes fall back to when tokenizer_config.json does not name them.
_DEFAULT_SPECIALS: dict[str, dict[str, str]] = {
    **dict.fromkeys(_BERT_CLASSES, _BERT_SPECIALS),
    **dict.fromkeys(_GPT2_CLASSES, _GPT2_SPECIALS),
    **dict.fromkeys(_ROBERTA_CLASSES, _ROBERTA_SPECIALS),
}
# Config keys that only make sense at load time, or are private/paths: never written back.
_CONFIG_DROP_ON_SAVE = {
    "auto_map", "name_or_path", "tokenizer_file", "vocab_file", "merges_file", "special_tokens_map_file",
    "added_tokens_file", "init_inputs", "fast_tokenizer_files", "files_loaded", "backend", "is_local",
    "local_files_only", "device_map", "slow_tokenizer_class", "use_fast", "tokenizer_type", "revision",
    "cache_dir", "token", "trust_remote_code", "additional_special_tokens", "extra_special_tokens",
    "added_tokens_decoder", "add_bos_token", "add_eos_token",
}  # fmt: skip


def _base_class_name(name: str | None) -> str | None:
    if not name:
        return None
    return name[:-4] if name.endswith("Fast") and name != "PreTrainedTokenizerFast" else name


# --- small helpers ---------------------------------------------------------------------------------
def _is_fatal(e: BaseException) -> bool:
    return isinstance(e, (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError))


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TokenizerLoadError(f"{path}: {what} is not valid UTF-8 ({e})") from None
    except OSError as e:
        raise TokenizerLoadError(f"{path}: cannot read {what}: {e}") from None


def _read_json(path: Path, what: str) -> Any:
    text = _read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise TokenizerLoadError(
            f"{path}: {what} is not valid JSON ({e}); re-download or re-save it"
        ) from None


def _to_added_token(value: Any, *, special: bool | None = None, where: str = "") -> AddedToken | None:
    """A config value (str, ``{"content": ...}`` dict, AddedToken) -> AddedToken."""
    if value is None:
        return None
    if isinstance(value, AddedToken):
        tok = value
    elif isinstance(value, str):
        tok = AddedToken(value, special=True if special is None else special)
    elif isinstance(value, Mapping) and isinstance(value.get("content"), str):
        fields = {
            k: value[k] for k in ("single_word", "lstrip", "rstrip", "normalized", "special") if k in value
        }
        fields = {k: bool(v) for k, v in fields.items()}
        if special is not None:
            fields["special"] = special
        tok = AddedToken(value["content"], **fields)
    else:
        raise TokenizerLoadError(
            f"{where}: a special token must be a string or a dict with a 'content' string, got {value!r}"
        )
    if special and not tok.special:
        state = tok.__getstate__()
        state["special"] = True
        tok = AddedToken(**state)
    return tok


def _token_state(tok: AddedToken) -> dict:
    return dict(tok.__getstate__())


def _check_text(value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise InvalidInputError(
            f"{where} must be a string (or a list of strings with is_split_into_words=True), "
            f"got {type(value).__name__}"
        )


def _find_surrogate(items: Iterable[tuple[str, Any]]) -> str | None:
    """Describe the first lone surrogate in the inputs, or None."""
    for label, value in items:
        texts = [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else []
        for j, text in enumerate(texts):
            if not isinstance(text, str):
                continue
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                sub = f" word {j}" if not isinstance(value, str) else ""
                return (
                    f"{label}{sub} holds a lone surrogate {text[e.start]!r} (U+{ord(text[e.start]):04X}) at "
                    f"character {e.start}: it is not valid Unicode text and cannot be tokenized. Fix the "
                    "input, e.g. text.encode('utf-8', 'replace').decode('utf-8')"
                )
    return None


class CharSpan(NamedTuple):
    """Character span ``[start, end)`` in the original string."""

    start: int
    end: int


class TokenSpan(NamedTuple):
    """Token span ``[start, end)`` in the encoded sequence."""

    start: int
    end: int


# --- BatchEncoding -------------------------------------------------------------------------------
class BatchEncoding(dict):
    """What calling a tokenizer returns: a ``dict`` of ``input_ids``, ``attention_mask``, ... with
    attribute access (``batch.input_ids``), ``.to(device)`` for PyTorch tensors, and the
    `tokenizers` :class:`~tokenizers.Encoding` objects behind it (``batch.encodings``) for
    alignment queries (``tokens``, ``word_ids``, ``char_to_token``, ``token_to_chars``...).

    ``batch[i]`` with an integer returns the i-th ``Encoding``, like the reference.

    Example::

        >>> batch = tok(["Hello world!", "hi"], padding=True, return_tensors="pt")
        >>> batch.to("cpu").input_ids.shape
        torch.Size([2, 5])
        >>> batch.tokens(0), batch.word_ids(0)
        (['[CLS]', 'hello', 'world', '!', '[SEP]'], [None, 0, 1, 2, None])
        >>> batch.char_to_token(0, 6), batch.token_to_chars(0, 2)
        (2, CharSpan(start=6, end=11))
    """

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        encodings: Sequence[tokenizers.Encoding] | None = None,
        n_sequences: int | None = None,
    ) -> None:
        super().__init__(data or {})
        self._encodings = list(encodings) if encodings is not None else None
        if n_sequences is None and self._encodings:
            n_sequences = self._encodings[0].n_sequences
        self._n_sequences = n_sequences

    def __getattr__(self, item: str) -> Any:
        if item.startswith("_"):
            raise AttributeError(item)
        try:
            return self[item]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no key {item!r} (keys: {list(self.keys())})") from None

    def __getitem__(self, item: Any) -> Any:
        if isinstance(item, str):
            return dict.__getitem__(self, item)
        if isinstance(item, int) and not isinstance(item, bool):
            if self._encodings is None:
                raise KeyError("this BatchEncoding has no backend encodings to index by integer")
            return self._encodings[item]
        if isinstance(item, slice):
            return {k: v[item] for k, v in self.items()}
        raise KeyError(f"invalid key {item!r}: use a string, an integer (Encoding) or a slice")

    def __reduce__(self):
        return (_rebuild_batch_encoding, (dict(self), self._encodings, self._n_sequences))

    def __copy__(self) -> "BatchEncoding":
        return BatchEncoding(dict(self), self._encodings, self._n_sequences)

    @property
    def data(self) -> dict[str, Any]:
        """The plain ``dict`` of outputs (compatibility with the reference's ``UserDict``)."""
        return dict(self)

    @property
    def encodings(self) -> list[tokenizers.Encoding] | None:
        """The `tokenizers` Encoding of each row (after truncation/overflow/padding)."""
        return self._encodings

    @property
    def n_sequences(self) -> int | None:
        """1 for single sequences, 2 for pairs, None if unknown."""
        return self._n_sequences

    @property
    def is_fast(self) -> bool:
        return self._encodings is not None

    def _encoding(self, batch_index: int) -> tokenizers.Encoding:
        if not self._encodings:
            raise InvalidInputError(
                "this BatchEncoding holds no encodings (empty batch, or not built by a tokenizer)"
            )
        try:
            return self._encodings[batch_index]
        except IndexError:
            raise InvalidInputError(
                f"batch index {batch_index} is out of range for a batch of {len(self._encodings)}"
            ) from None

    def _split_index(self, batch_or_index: int, index: int | None) -> tuple[int, int]:
        if index is None:
            if self._encodings is not None and len(self._encodings) > 1:
                raise InvalidInputError("this is a batch: pass (batch_index, index)")
            return 0, batch_or_index
        return batch_or_index, index

    def tokens(self, batch_index: int = 0) -> list[str]:
        """The token strings of row ``batch_index``."""
        return self._encoding(batch_index).tokens

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """For each token, the index of the word it comes from (``None`` for special tokens)."""
        return self._encoding(batch_index).word_ids

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """For each token, 0 or 1 for the sequence it comes from (``None`` for special tokens)."""
        return self._encoding(batch_index).sequence_ids

    def token_to_word(self, batch_or_token_index: int, token_index: int | None = None) -> int | None:
        b, t = self._split_index(batch_or_token_index, token_index)
        return self._encoding(b).token_to_word(t)

    def token_to_sequence(self, batch_or_token_index: int, token_index: int | None = None) -> int | None:
        b, t = self._split_index(batch_or_token_index, token_index)
        return self._encoding(b).token_to_sequence(t)

    def token_to_chars(self, batch_or_token_index: int, token_index: int | None = None) -> CharSpan | None:
        """Character span of a token in its original string (``None`` for special tokens)."""
        b, t = self._split_index(batch_or_token_index, token_index)
        span = self._encoding(b).token_to_chars(t)
        return CharSpan(*span) if span is not None else None

    def char_to_token(
        self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0
    ) -> int | None:
        """Index of the token that covers a character of the original string (``None`` if none)."""
        b, c = self._split_index(batch_or_char_index, char_index)
        return self._encoding(b).char_to_token(c, sequence_index)

    def word_to_tokens(
        self, batch_or_word_index: int, word_index: int | None = None, sequence_index: int = 0
    ) -> TokenSpan | None:
        b, w = self._split_index(batch_or_word_index, word_index)
        span = self._encoding(b).word_to_tokens(w, sequence_index)
        return TokenSpan(*span) if span is not None else None

    def convert_to_tensors(self, tensor_type: str | None) -> "BatchEncoding":
        """Turn the lists into ``"pt"``/``"np"``/``"tf"`` tensors in place (rows must be equally long)."""
        if tensor_type is None:
            return self
        tensor_type = _check_return_tensors(tensor_type)
        for key, value in list(self.items()):
            self[key] = _as_tensor(key, value, tensor_type)
        return self

    def to(self, device: Any, *, non_blocking: bool = False) -> "BatchEncoding":
        """Move every PyTorch tensor to ``device`` (in place; returns self)."""
        for key, value in list(self.items()):
            if hasattr(value, "to") and callable(value.to) and type(value).__module__.startswith("torch"):
                self[key] = value.to(device=device, non_blocking=non_blocking)
        return self

    def __repr__(self) -> str:
        return dict.__repr__(self)  # like the reference


def _rebuild_batch_encoding(data, encodings, n_sequences):
    return BatchEncoding(data, encodings, n_sequences)


def _check_return_tensors(return_tensors: Any) -> str | None:
    if return_tensors is None:
        return None
    value = getattr(return_tensors, "value", return_tensors)  # enum-like
    if value not in _VALID_TENSORS:
        raise InvalidInputError(
            f"return_tensors={return_tensors!r} is not supported; use one of 'pt' (PyTorch), 'np' (NumPy), "
            "'tf' (TensorFlow) or None (Python lists)"
        )
    if value == "tf":
        import importlib.util

        if importlib.util.find_spec("tensorflow") is None:
            raise MissingDependencyError(
                "return_tensors='tf' needs TensorFlow, which is not installed (pip install tensorflow); "
                "or use return_tensors='pt' / 'np'"
            )
    return value


def _row_lengths(value: Any) -> set[int] | None:
    if isinstance(value, list) and value and isinstance(value[0], (list, tuple)):
        return {len(v) for v in value}
    return None


def _as_tensor(key: str, value: Any, tensor_type: str) -> Any:
    if type(value).__module__.startswith(("torch", "numpy", "tensorflow")):
        return value
    lengths = _row_lengths(value)
    if lengths is not None and len(lengths) > 1:
        raise InvalidInputError(
            f"cannot make a tensor of {key!r}: the sequences have different lengths "
            f"({min(lengths)} to {max(lengths)} tokens). Pass padding=True (and truncation=True if they can "
            "be too long) to get equally long rows"
        )
    empty_2d = (
        isinstance(value, list) and len(value) == 0 and key not in ("overflow_to_sample_mapping", "length")
    )
    if tensor_type == "pt":
        import torch

        if empty_2d:
            return torch.zeros((0, 0), dtype=torch.long)
        return torch.tensor(value, dtype=torch.long)
    if tensor_type == "np":
        import numpy as np

        if empty_2d:
            return np.zeros((0, 0), dtype=np.int64)
        return np.asarray(value, dtype=np.int64)
    import tensorflow as tf  # pragma: no cover - TensorFlow is not a dependency

    if empty_2d:
        return tf.zeros((0, 0), dtype=tf.int64)
    return tf.constant(value, dtype=tf.int64)


def _as_id(value: Any) -> int:
    import operator

    if isinstance(value, bool):
        raise InvalidInputError("token ids must be integers, got a bool")
    try:
        return operator.index(value)
    except TypeError:
        raise InvalidInputError(f"token ids must be integers, got {value!r}") from None


def _tensor_kind(value: Any) -> str | None:
    """'pt' / 'np' when ``value`` (or its first row) is a PyTorch / NumPy array."""
    first = value[0] if isinstance(value, (list, tuple)) and value else value
    module = type(first).__module__
    if module.startswith("torch"):
        return "pt"
    if module.startswith("numpy") and hasattr(first, "shape"):
        return "np"
    return None


def _to_python_ids(token_ids: Any) -> Any:
    if isinstance(token_ids, Mapping) and "input_ids" in token_ids:
        token_ids = token_ids["input_ids"]
    tolist = getattr(token_ids, "tolist", None)
    if callable(tolist) and not isinstance(token_ids, (list, tuple)):
        token_ids = tolist()
    if isinstance(token_ids, tuple):
        token_ids = list(token_ids)
    return token_ids


# --- the tokenizer ---------------------------------------------------------------------------------
class Tokenizer:
    """A fast tokenizer (a `tokenizers.Tokenizer` underneath) with the familiar call API.

    Build one with :meth:`from_pretrained` (or :class:`AutoTokenizer`), or wrap a
    `tokenizers.Tokenizer` directly: ``Tokenizer(tokenizer_object=backend, pad_token="[PAD]")``.

    Example::

        >>> from pretrained.tokenization import AutoTokenizer
        >>> gpt = AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/gpt2_bpe")
        >>> ids = gpt.encode("Hello world", add_special_tokens=False)
        >>> gpt.decode(ids)
        'Hello world'
    """

    # Named special tokens; each also has an ``<name>_id`` property (set up below the class).
    bos_token: str | None
    eos_token: str | None
    unk_token: str | None
    sep_token: str | None
    pad_token: str | None
    cls_token: str | None
    mask_token: str | None
    bos_token_id: int | None
    eos_token_id: int | None
    unk_token_id: int | None
    sep_token_id: int | None
    pad_token_id: int | None
    cls_token_id: int | None
    mask_token_id: int | None

    def __init__(
        self,
        tokenizer_object: _BackendTokenizer | None = None,
        *,
        tokenizer_file: str | os.PathLike | None = None,
        name_or_path: str = "",
        **config: Any,
    ) -> None:
        if tokenizer_object is None and tokenizer_file is None:
            raise InvalidInputError(
                "Tokenizer needs tokenizer_object= (a tokenizers.Tokenizer) or tokenizer_file="
            )
        if tokenizer_object is not None:
            if not isinstance(tokenizer_object, _BackendTokenizer):
                raise InvalidInputError(
                    f"tokenizer_object must be a tokenizers.Tokenizer, got {type(tokenizer_object).__name__}"
                )
            backend = _BackendTokenizer.from_str(tokenizer_object.to_str())
        else:
            backend = _load_tokenizer_json(Path(tokenizer_file))
        self._setup(backend, dict(config), name_or_path=name_or_path, from_tokenizer_json=True)

    # ---------------------------------------------------------------- construction
    def _setup(
        self,
        backend: _BackendTokenizer,
        config: dict[str, Any],
        *,
        name_or_path: str,
        from_tokenizer_json: bool,
        added_tokens_decoder: Mapping[Any, Any] | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._backend = backend
        self.name_or_path = str(name_or_path)
        self._warned_too_long = False

        cls_name = _base_class_name(config.pop("tokenizer_class", None))
        self.tokenizer_class: str | None = cls_name

        # Truncation/padding baked into tokenizer.json: keep their sides and pad token as defaults,
        # then switch them off (every call sets its own).
        json_padding = backend.padding
        json_truncation = backend.truncation
        backend.no_padding()
        backend.no_truncation()

        max_len = config.pop("model_max_length", config.pop("max_len", None))
        if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, (int, float))):
            raise TokenizerLoadError(f"model_max_length must be a number, got {max_len!r}")
        self.model_max_length: int = int(max_len) if max_len is not None else VERY_LARGE_INTEGER

        default_side = "left" if cls_name in _LEFT_PADDING_CLASSES else "right"
        if cls_name == "LlamaTokenizer" and '"ByteLevel"' in backend.to_str():
            default_side = "right"  # Llama-3 style byte-level checkpoints load as plain fast tokenizers
        if json_padding is not None:
            default_side = json_padding.get("direction", default_side)
        self.padding_side = config.pop("padding_side", default_side) or default_side
        trunc_default = json_truncation.get("direction", "right") if json_truncation else "right"
        self.truncation_side = config.pop("truncation_side", trunc_default) or trunc_default

        names = config.pop("model_input_names", None)
        if names is None:
            names = _INPUT_NAMES_BY_CLASS.get(cls_name or "", ("input_ids", "attention_mask"))
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise TokenizerLoadError(f"model_input_names must be a list of strings, got {names!r}")
        self.model_input_names: list[str] = list(names)

        self.clean_up_tokenization_spaces: bool = bool(config.pop("clean_up_tokenization_spaces", False))
        self._clean_up_for_bpe = bool(
            config.pop("clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output", False)
        )
        self.split_special_tokens: bool = bool(config.pop("split_special_tokens", False))

        chat_template = config.pop("chat_template", None)
        if isinstance(chat_template, (list, tuple)):
            try:
                chat_template = {t["name"]: t["template"] for t in chat_template}
            except (KeyError, TypeError):
                raise TokenizerLoadError(
                    "chat_template in tokenizer_config.json is a list but not of {'name': ..., 'template': ...}"
                ) from None
        self.chat_template: str | dict[str, str] | None = chat_template

        # Special tokens -------------------------------------------------------------------------
        self._special: dict[str, AddedToken | None] = dict.fromkeys(SPECIAL_TOKEN_NAMES)
        defaults = _DEFAULT_SPECIALS.get(cls_name or "", {})
        for name in SPECIAL_TOKEN_NAMES:
            given = name in config
            value = config.pop(name) if given else defaults.get(name)
            if name == "pad_token" and not given and value is None and json_padding is not None:
                value = json_padding.get("pad_token")
            self._special[name] = _to_added_token(value, special=True, where=name)
        extra = config.pop("extra_special_tokens", None)
        additional = config.pop("additional_special_tokens", None)
        if not extra and additional:
            extra = additional
        self._extra: list[AddedToken] = []
        if isinstance(extra, Mapping):  # named model-specific tokens
            for key, value in extra.items():
                self._special[str(key)] = _to_added_token(value, special=True, where=str(key))
        elif extra:
            if not isinstance(extra, (list, tuple)):
                raise TokenizerLoadError(f"additional/extra_special_tokens must be a list, got {extra!r}")
            self._extra = [_to_added_token(t, special=True, where="extra_special_tokens") for t in extra]
        for key in [k for k in config if k.endswith("_token") and k not in self._special]:
            if isinstance(config[key], (str, AddedToken)) or (
                isinstance(config[key], Mapping) and isinstance(config[key].get("content"), str)
            ):
                self._special[key] = _to_added_token(config.pop(key), special=True, where=key)

        # What is left of the config is kept and written back by save_pretrained.
        self._extra_config: dict[str, Any] = {
            k: v for k, v in config.items() if k not in _CONFIG_DROP_ON_SAVE
        }

        # Make sure every special token is an added (never split) token of the backend -------------
        present = {t.content for t in backend.get_added_tokens_decoder().values()}
        to_add: list[AddedToken] = []
        for _, tok in sorted((added_tokens_decoder or {}).items(), key=lambda kv: int(kv[0])):
            tok = _to_added_token(tok, where="added_tokens_decoder")
            if tok is not None and tok.content not in present:
                to_add.append(tok)
                present.add(tok.content)
        for tok in [*self._special.values(), *self._extra]:
            if tok is not None and tok.content not in present:
                to_add.append(tok)
                present.add(tok.content)
        if to_add:
            backend.add_tokens(to_add)

        if backend.post_processor is None:
            add_bos = bool(config.get("add_bos_token", False)) and not from_tokenizer_json
            add_eos = bool(config.get("add_eos_token", False)) and not from_tokenizer_json
            self._set_bos_eos_template(add_bos, add_eos)

        self._validate_sides()

    def _validate_sides(self) -> None:
        for attr in ("padding_side", "truncation_side"):
            if getattr(self, attr) not in ("left", "right"):
                raise InvalidInputError(f"{attr} must be 'left' or 'right', got {getattr(self, attr)!r}")

    def _set_bos_eos_template(self, add_bos: bool, add_eos: bool) -> None:
        bos, eos = self.bos_token, self.eos_token
        add_bos = add_bos and bos is not None
        add_eos = add_eos and eos is not None
        single = f"{bos + ':0 ' if add_bos else ''}$A:0{' ' + eos + ':0' if add_eos else ''}"
        pair = f"{single}{' ' + bos + ':1' if add_bos else ''} $B:1{' ' + eos + ':1' if add_eos else ''}"
        special = []
        if add_bos:
            special.append((bos, self.bos_token_id))
        if add_eos and eos != (bos if add_bos else None):
            special.append((eos, self.eos_token_id))
        self._backend.post_processor = processors.TemplateProcessing(
            single=single, pair=pair, special_tokens=special
        )

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        trust_remote_code: bool = False,
        padding_side: str | None = None,
        truncation_side: str | None = None,
        model_max_length: int | None = None,
        use_fast: bool = True,
        **special_token_overrides: Any,
    ) -> "Tokenizer":
        """Load a tokenizer from a local folder or a hub id.

        ``special_token_overrides`` may set named special tokens (``pad_token="[PAD]"``),
        ``additional_special_tokens``/``extra_special_tokens`` and other ``tokenizer_config.json``
        keys (``chat_template``, ``model_input_names``, ``add_prefix_space``...); they win over the
        files. ``trust_remote_code=True`` is refused: remote code is never executed. ``use_fast`` is
        accepted for compatibility; every tokenizer here is a fast one.

        Raises :class:`TokenizerNotFoundError` when the checkpoint has no tokenizer file and
        :class:`TokenizerLoadError` when one is malformed.

        Example::

            >>> tok = Tokenizer.from_pretrained("tests/fixtures/tokenizers/bert_vocab_only")
            >>> tok("Hello!").input_ids
            [2, 248, 5, 3]
        """
        if trust_remote_code:
            raise RemoteCodeError(
                "trust_remote_code=True is not supported: pretrained never executes code downloaded with a "
                "checkpoint. Tokenizers are loaded from their data files (tokenizer.json, vocab.txt, "
                "vocab.json + merges.txt) only; drop trust_remote_code."
            )
        from .hub import resolve

        files = resolve(
            name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
        )
        overrides = dict(special_token_overrides)
        for key, value in (
            ("padding_side", padding_side),
            ("truncation_side", truncation_side),
            ("model_max_length", model_max_length),
        ):
            if value is not None:
                overrides[key] = value
        if model_max_length is not None and (
            isinstance(model_max_length, bool)
            or not isinstance(model_max_length, int)
            or model_max_length <= 0
        ):
            raise InvalidInputError(f"model_max_length must be a positive integer, got {model_max_length!r}")
        for side in ("padding_side", "truncation_side"):
            if side in overrides and overrides[side] not in ("left", "right"):
                raise InvalidInputError(f"{side} must be 'left' or 'right', got {overrides[side]!r}")
        tok = cls.__new__(cls)
        _load_into(tok, files, str(os.fspath(name_or_path)), overrides)
        return tok

    # ---------------------------------------------------------------- special tokens
    def _get_special(self, name: str) -> str | None:
        tok = self._special.get(name)
        return None if tok is None else tok.content

    def _set_special(self, name: str, value: Any) -> None:
        if value is None:
            self._special[name] = None
            return
        if not isinstance(value, (str, AddedToken)):
            raise InvalidInputError(
                f"{name} must be a string or tokenizers.AddedToken, got {type(value).__name__}"
            )
        self._special[name] = value if isinstance(value, AddedToken) else AddedToken(value, special=True)

    def __getattr__(self, name: str) -> Any:
        # Model-specific named special tokens (e.g. ``image_token`` and ``image_token_id``).
        if name.startswith("_"):
            raise AttributeError(name)
        special = self.__dict__.get("_special", {})
        if name in special:
            return self._get_special(name)
        if name.endswith("_id") and name[:-3] in special:
            token = self._get_special(name[:-3])
            return None if token is None else self.convert_tokens_to_ids(token)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """Named special tokens that are set: ``{"pad_token": "[PAD]", ...}``."""
        return {k: v.content for k, v in self._special.items() if v is not None}

    @property
    def extra_special_tokens(self) -> list[str]:
        """Special tokens without a name (e.g. ``<|im_start|>``)."""
        return [t.content for t in self._extra]

    additional_special_tokens = extra_special_tokens

    @property
    def extra_special_tokens_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.extra_special_tokens)

    additional_special_tokens_ids = extra_special_tokens_ids

    @property
    def all_special_tokens(self) -> list[str]:
        """Every special token (named, then extra), without duplicates."""
        out: list[str] = []
        for tok in [*self._special.values(), *self._extra]:
            if tok is not None and tok.content not in out:
                out.append(tok.content)
        return out

    @property
    def all_special_ids(self) -> list[int]:
        """Ids of :attr:`all_special_tokens`."""
        return self.convert_tokens_to_ids(self.all_special_tokens)

    @property
    def pad_token_type_id(self) -> int:
        return 0

    def add_tokens(
        self, new_tokens: str | AddedToken | Sequence[str | AddedToken], special_tokens: bool = False
    ) -> int:
        """Add tokens that are never split; returns how many are new to the vocabulary.

        Example::

            >>> t = AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/gpt2_bpe")
            >>> t.add_tokens(["<new>"])
            1
            >>> t.tokenize("a<new>b")
            ['a', '<new>', 'b']
        """
        if not new_tokens:
            return 0
        if isinstance(new_tokens, (str, AddedToken)):
            new_tokens = [new_tokens]
        for t in new_tokens:
            if not isinstance(t, (str, AddedToken)):
                raise InvalidInputError(f"tokens to add must be str or AddedToken, got {type(t).__name__}")
        with self._lock:
            if special_tokens:
                return self._backend.add_special_tokens(list(new_tokens))
            return self._backend.add_tokens(list(new_tokens))

    def add_special_tokens(
        self, special_tokens_dict: Mapping[str, Any], replace_extra_special_tokens: bool = True
    ) -> int:
        """Set named special tokens (``{"pad_token": "<pad>"}``) and/or ``extra_special_tokens``
        (alias ``additional_special_tokens``), adding the new ones to the vocabulary. Returns the
        number of tokens added.

        Example::

            >>> t = AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/gpt2_vocab_merges")
            >>> t.add_special_tokens({"pad_token": "<pad>"})
            1
            >>> t.pad_token, t.pad_token_id
            ('<pad>', 500)
        """
        if not special_tokens_dict:
            return 0
        d = dict(special_tokens_dict)
        if "additional_special_tokens" in d and not d.get("extra_special_tokens"):
            d["extra_special_tokens"] = d.pop("additional_special_tokens")
        allowed = set(SPECIAL_TOKEN_NAMES) | {"extra_special_tokens"}
        to_add: list[AddedToken] = []
        for key, value in d.items():
            if key not in allowed:
                raise InvalidInputError(f"{key!r} is not a special token name; use one of {sorted(allowed)}")
            if key == "extra_special_tokens":
                if not isinstance(value, (list, tuple)) or not all(
                    isinstance(t, (str, AddedToken)) for t in value
                ):
                    raise InvalidInputError("extra_special_tokens must be a list of str or AddedToken")
                toks = [
                    AddedToken(t, normalized=False, special=True) if isinstance(t, str) else t for t in value
                ]
                if replace_extra_special_tokens:
                    self._extra = list(toks)
                else:
                    known = set(self.extra_special_tokens)
                    self._extra.extend(t for t in toks if t.content not in known)
                to_add.extend(toks)
            else:
                if not isinstance(value, (str, AddedToken)):
                    raise InvalidInputError(f"{key} must be a str or AddedToken, got {type(value).__name__}")
                tok = AddedToken(value, normalized=False, special=True) if isinstance(value, str) else value
                self._special[key] = tok
                to_add.append(tok)
        return self.add_tokens(to_add, special_tokens=True)

    # ---------------------------------------------------------------- vocabulary
    @property
    def backend_tokenizer(self) -> _BackendTokenizer:
        """The underlying `tokenizers.Tokenizer`."""
        return self._backend

    @property
    def is_fast(self) -> bool:
        return True

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, without added tokens."""
        return self._backend.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        """Size of the full vocabulary, added tokens included."""
        return self._backend.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        """Token -> id for the whole vocabulary (added tokens included)."""
        return self._backend.get_vocab(with_added_tokens=True)

    @property
    def vocab(self) -> dict[str, int]:
        return self.get_vocab()

    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        return self._backend.get_added_tokens_decoder()

    def get_added_vocab(self) -> dict[str, int]:
        return {t.content: i for i, t in sorted(self.added_tokens_decoder.items())}

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self._backend.num_special_tokens_to_add(pair)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | None | list[int | None]:
        """Token(s) -> id(s); unknown tokens map to ``unk_token_id`` (``None`` without an unk token)."""
        if isinstance(tokens, str):
            return self._token_to_id(tokens)
        return [self._token_to_id(t) for t in tokens]

    def _token_to_id(self, token: str) -> int | None:
        idx = self._backend.token_to_id(token)
        if idx is None:
            unk = self._get_special("unk_token")
            return None if unk is None else self._backend.token_to_id(unk)
        return idx

    def convert_ids_to_tokens(
        self, ids: int | Sequence[int], skip_special_tokens: bool = False
    ) -> str | None | list[str]:
        """Id(s) -> token string(s); ``None`` for an id outside the vocabulary (single id)."""
        ids = _to_python_ids(ids)
        if isinstance(ids, int):
            return self._backend.id_to_token(ids) if ids >= 0 else None
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        out = []
        for i in ids:
            i = int(i)
            if i in skip:
                continue
            out.append(self._backend.id_to_token(i) if i >= 0 else None)
        return out

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        decoder = self._backend.decoder
        return decoder.decode(list(tokens)) if decoder is not None else " ".join(tokens)

    def get_special_tokens_mask(
        self, token_ids: Sequence[int], already_has_special_tokens: bool = True
    ) -> list[int]:
        """1 where ``token_ids`` holds a special token, else 0."""
        if not already_has_special_tokens:
            raise InvalidInputError(
                "only already_has_special_tokens=True is supported; use return_special_tokens_mask=True"
            )
        special = set(self.all_special_ids)
        return [1 if int(i) in special else 0 for i in token_ids]

    # ---------------------------------------------------------------- encoding
    def _strategies(self, padding, truncation, max_length, pad_to_multiple_of, stride, padding_side):
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0
        ):
            raise InvalidInputError(
                f"max_length must be a positive integer, got {max_length!r}; leave it None to use the model's "
                f"limit ({self.model_max_length})"
            )
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 0:
            raise InvalidInputError(f"stride must be an integer >= 0, got {stride!r}")
        if pad_to_multiple_of is not None and (
            isinstance(pad_to_multiple_of, bool)
            or not isinstance(pad_to_multiple_of, int)
            or pad_to_multiple_of <= 0
        ):
            raise InvalidInputError(
                f"pad_to_multiple_of must be a positive integer, got {pad_to_multiple_of!r}"
            )
        if padding_side is not None and padding_side not in ("left", "right"):
            raise InvalidInputError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        padding = getattr(padding, "value", padding)
        truncation = getattr(truncation, "value", truncation)

        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"  # the reference's backward-compatible behaviour

        if padding is None or padding is False or padding == "do_not_pad":
            pad = None
        elif padding is True or padding == "longest":
            if max_length is not None and truncation in (None, False, "do_not_truncate"):
                warnings.warn(
                    "`max_length` is ignored when `padding`=`True` and there is no truncation strategy. "
                    "To pad to max length, use `padding='max_length'`.",
                    stacklevel=3,
                )
            pad = "longest"
        elif padding == "max_length":
            pad = "max_length"
        else:
            raise InvalidInputError(f"padding={padding!r} is not valid; use one of {_PADDING_VALUES}")

        if truncation is None or truncation is False or truncation == "do_not_truncate":
            trunc = None
        elif truncation is True:
            trunc = "longest_first"
        elif truncation in ("longest_first", "only_first", "only_second"):
            trunc = truncation
        else:
            raise InvalidInputError(
                f"truncation={truncation!r} is not valid; use one of {_TRUNCATION_VALUES}"
            )

        if max_length is None:
            if pad == "max_length":
                if self.model_max_length > _LARGE_INTEGER:
                    raise InvalidInputError(
                        "padding='max_length' needs a length: pass max_length=..., since this tokenizer has no "
                        "model_max_length; or use padding=True to pad to the longest sequence"
                    )
                max_length = self.model_max_length
            if trunc is not None:
                if self.model_max_length > _LARGE_INTEGER:
                    trunc = None  # nothing to truncate to (the reference does the same)
                else:
                    max_length = self.model_max_length

        if pad is not None and (self.pad_token is None or self.pad_token_id is None):
            raise InvalidInputError(
                "asked to pad but this tokenizer has no pad token: set one, e.g. tok.pad_token = tok.eos_token, "
                "or tok.add_special_tokens({'pad_token': '[PAD]'})"
            )
        if (
            trunc is not None
            and pad is not None
            and pad_to_multiple_of is not None
            and max_length is not None
        ):
            if max_length % pad_to_multiple_of != 0:
                raise InvalidInputError(
                    f"truncation and padding are both on but max_length ({max_length}) is not a multiple of "
                    f"pad_to_multiple_of ({pad_to_multiple_of})"
                )
        return pad, trunc, max_length

    def __call__(
        self,
        text: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        text_pair: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        split_special_tokens: bool | None = None,
    ) -> BatchEncoding:
        """Tokenize one text, a batch of texts, or (batches of) text pairs.

        ``padding``: ``True``/``"longest"``, ``"max_length"``, ``False``/``"do_not_pad"``.
        ``truncation``: ``True``/``"longest_first"``, ``"only_first"``, ``"only_second"``,
        ``False``. ``stride`` with ``return_overflowing_tokens=True`` returns the overflowing windows
        as extra rows plus ``overflow_to_sample_mapping``. ``return_tensors``: ``"pt"``, ``"np"``
        (or ``"tf"`` if TensorFlow is installed). A single string without ``return_tensors`` gives
        flat lists, like the reference.

        Example::

            >>> tok("Hello world!")
            {'input_ids': [2, 248, 209, 5, 3], 'token_type_ids': [0, 0, 0, 0, 0], 'attention_mask': [1, 1, 1, 1, 1]}
            >>> tok(["a", "b c"], padding=True, return_tensors="pt").input_ids.shape
            torch.Size([2, 4])
        """
        tensor_type = _check_return_tensors(return_tensors)
        pad, trunc, max_length = self._strategies(
            padding, truncation, max_length, pad_to_multiple_of, stride, padding_side
        )
        if text is None:
            raise InvalidInputError(
                "no text given: pass a string, a list of strings, or pairs via text_pair="
            )

        # Batch or single?
        if is_split_into_words:
            if not isinstance(text, (list, tuple)):
                raise InvalidInputError(
                    "is_split_into_words=True needs a list of words (or a batch of lists)"
                )
            is_batched = bool(text) and isinstance(text[0], (list, tuple))
        else:
            is_batched = isinstance(text, (list, tuple))
        if is_batched:
            if isinstance(text_pair, str):
                raise InvalidInputError("for a batch of texts, text_pair must be a list of the same length")
            if text_pair is not None and len(text_pair) != len(text):
                raise InvalidInputError(
                    f"text has {len(text)} items but text_pair has {len(text_pair)}: they must match"
                )
            firsts = list(text)
            seconds = list(text_pair) if text_pair is not None else None
        else:
            firsts = [text]
            seconds = [text_pair] if text_pair else None  # an empty pair is no pair, like the reference

        check = _check_words if is_split_into_words else _check_text
        for i, t in enumerate(firsts):
            check(t, f"text[{i}]" if is_batched else "text")
        if seconds is not None:
            for i, t in enumerate(seconds):
                check(t, f"text_pair[{i}]" if is_batched else "text_pair")
        inputs = list(zip(firsts, seconds, strict=True)) if seconds is not None else firsts

        if split_special_tokens is None:
            split_special_tokens = self.split_special_tokens
        encodings = self._encode_batch(
            inputs,
            is_batched=is_batched,
            add_special_tokens=add_special_tokens,
            pad=pad,
            trunc=trunc,
            max_length=max_length,
            stride=stride,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side or self.padding_side,
            is_pretokenized=is_split_into_words,
            split_special_tokens=bool(split_special_tokens),
        )

        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names

        data: dict[str, list] = {"input_ids": []}
        if return_token_type_ids:
            data["token_type_ids"] = []
        if return_attention_mask:
            data["attention_mask"] = []
        if return_special_tokens_mask:
            data["special_tokens_mask"] = []
        if return_offsets_mapping:
            data["offset_mapping"] = []
        if return_length:
            data["length"] = []
        rows: list[tokenizers.Encoding] = []
        mapping: list[int] = []
        for sample, enc in enumerate(encodings):
            pieces = [enc, *enc.overflowing] if return_overflowing_tokens else [enc]
            for e in pieces:
                rows.append(e)
                mapping.append(sample)
                ids = e.ids
                data["input_ids"].append(ids)
                if return_token_type_ids:
                    data["token_type_ids"].append(e.type_ids)
                if return_attention_mask:
                    data["attention_mask"].append(e.attention_mask)
                if return_special_tokens_mask:
                    data["special_tokens_mask"].append(e.special_tokens_mask)
                if return_offsets_mapping:
                    data["offset_mapping"].append(e.offsets)
                if return_length:
                    data["length"].append(len(ids))
        if return_overflowing_tokens:
            data["overflow_to_sample_mapping"] = mapping

        if verbose and max_length is None and not self._warned_too_long and self.model_max_length != 0:
            longest = max((len(ids) for ids in data["input_ids"]), default=0)
            if longest > self.model_max_length:
                logger.warning(
                    "Token indices sequence length is longer than the specified maximum sequence length for this "
                    "model (%d > %d). Running this sequence through the model will result in indexing errors",
                    longest,
                    self.model_max_length,
                )
                self._warned_too_long = True

        if not is_batched and tensor_type is None and not return_overflowing_tokens:
            data = {k: (v[0] if v and isinstance(v[0], list) else v) for k, v in data.items()}
        out = BatchEncoding(data, rows)
        if tensor_type is not None:
            out.convert_to_tensors(tensor_type)
        return out

    def pad(
        self,
        encoded_inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Pad already-encoded inputs (a dict of lists, or a list of dicts such as a dataset's rows),
        the way data collators do. Pads ``input_ids`` with the pad token, ``attention_mask`` with 0
        (creating it if missing), ``token_type_ids`` with 0 and ``special_tokens_mask`` with 1;
        other keys are left as they are.

        Example::

            >>> rows = [{"input_ids": [2, 248, 3]}, {"input_ids": [2, 3]}]
            >>> tok.pad(rows)
            {'input_ids': [[2, 248, 3], [2, 3, 0]], 'attention_mask': [[1, 1, 1], [1, 1, 0]]}
        """
        if (
            isinstance(encoded_inputs, (list, tuple))
            and encoded_inputs
            and isinstance(encoded_inputs[0], Mapping)
        ):
            keys = list(encoded_inputs[0].keys())
            try:
                encoded_inputs = {k: [row[k] for row in encoded_inputs] for k in keys}
            except KeyError as e:
                raise InvalidInputError(f"pad(): every row must have the same keys; one lacks {e}") from None
        if not isinstance(encoded_inputs, Mapping):
            raise InvalidInputError("pad() takes a dict of lists or a list of dicts (e.g. tokenizer outputs)")
        main = self.model_input_names[0]
        if main not in encoded_inputs:
            raise InvalidInputError(f"pad() needs {main!r} in the inputs; got keys {list(encoded_inputs)}")
        data = {k: _to_python_ids(v) for k, v in encoded_inputs.items()}
        if tensor_hint := _tensor_kind(encoded_inputs[main]):
            return_tensors = return_tensors or tensor_hint
        rows = data[main]
        if rows is None or len(rows) == 0:
            if return_attention_mask:
                data["attention_mask"] = []
            return BatchEncoding(data)
        pad, _, max_length = self._strategies(padding, None, max_length, pad_to_multiple_of, 0, padding_side)
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        side = padding_side or self.padding_side
        single = not isinstance(rows[0], (list, tuple))
        batch = {k: [v] for k, v in data.items()} if single else data
        n = len(batch[main])
        if any(len(v) != n for v in batch.values()):
            raise InvalidInputError("pad(): the inputs hold different numbers of rows")
        target = max((len(r) for r in batch[main]), default=0) if pad == "longest" else max_length
        if target is not None and pad_to_multiple_of and target % pad_to_multiple_of:
            target = (target // pad_to_multiple_of + 1) * pad_to_multiple_of
        fill = {main: self.pad_token_id, "attention_mask": 0, "token_type_ids": self.pad_token_type_id}
        fill["special_tokens_mask"] = 1
        out: dict[str, list] = {k: [] for k in batch}
        if return_attention_mask and "attention_mask" not in out:
            out["attention_mask"] = []
        for i in range(n):
            row = {k: list(v[i]) if isinstance(v[i], (list, tuple)) else v[i] for k, v in batch.items()}
            length = len(row[main])
            if return_attention_mask and "attention_mask" not in row:
                row["attention_mask"] = [1] * length
            missing = (target - length) if pad is not None and target is not None else 0
            if missing > 0:
                for key, value in fill.items():
                    if key not in row or (key == "attention_mask" and not return_attention_mask):
                        continue
                    extra = [value] * missing
                    row[key] = extra + row[key] if side == "left" else row[key] + extra
            for key, value in row.items():
                out[key].append(value)
        if single:
            out = {k: v[0] for k, v in out.items()}
        result = BatchEncoding(out)
        if return_tensors is not None:
            result.convert_to_tensors(_check_return_tensors(return_tensors))
        return result

    def _encode_batch(
        self,
        inputs: list,
        *,
        is_batched: bool,
        add_special_tokens: bool,
        pad: str | None,
        trunc: str | None,
        max_length: int | None,
        stride: int,
        pad_to_multiple_of: int | None,
        padding_side: str,
        is_pretokenized: bool,
        split_special_tokens: bool,
    ) -> list[tokenizers.Encoding]:
        if not inputs:
            return []
        backend = self._backend
        with self._lock:
            try:
                if trunc is not None:
                    backend.enable_truncation(
                        max_length, stride=stride, strategy=trunc, direction=self.truncation_side
                    )
                if pad is not None:
                    backend.enable_padding(
                        direction=padding_side,
                        pad_id=self.pad_token_id,
                        pad_type_id=self.pad_token_type_id,
                        pad_token=self.pad_token,
                        length=max_length if pad == "max_length" else None,
                        pad_to_multiple_of=pad_to_multiple_of,
                    )
                if backend.encode_special_tokens != split_special_tokens:
                    backend.encode_special_tokens = split_special_tokens
                return backend.encode_batch(
                    inputs, is_pretokenized=is_pretokenized, add_special_tokens=add_special_tokens
                )
            except BaseException as e:  # tokenizers raises Exception, TypeError or a pyo3 PanicException
                if _is_fatal(e):
                    raise
                raise self._encode_error(e, inputs, is_batched, trunc, max_length, stride) from None
            finally:
                backend.no_truncation()
                backend.no_padding()
                if backend.encode_special_tokens:
                    backend.encode_special_tokens = False

    def _encode_error(self, e: BaseException, inputs, is_batched, trunc, max_length, stride) -> Exception:
        labelled = []
        for i, item in enumerate(inputs):
            prefix = f"text[{i}]" if is_batched else "text"
            if isinstance(item, tuple):
                labelled += [(prefix, item[0]), (prefix.replace("text", "text_pair"), item[1])]
            else:
                labelled.append((prefix, item))
        bad = _find_surrogate(labelled)
        if bad is not None:
            return InvalidInputError(bad)
        msg = str(e)
        if "Second sequence not provided" in msg:
            return InvalidInputError(
                "truncation='only_second' needs pairs of sequences (text_pair=...); use truncation=True "
                "or 'only_first' for single texts"
            )
        if "too short to respect the provided max_length" in msg or "Truncation error" in msg:
            return InvalidInputError(
                f"cannot truncate to max_length={max_length} with truncation={trunc!r}: the sequence that "
                "may be cut is too short to make the input fit (the other sequence and the special tokens "
                "alone are too long). Use truncation='longest_first' or a larger max_length"
            )
        if "stride" in msg:
            return InvalidInputError(f"stride={stride} is too large for max_length={max_length}: {msg}")
        return TokenizerError(f"tokenization failed: {type(e).__name__}: {msg}")

    def encode(
        self,
        text: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Token ids of ``text`` (``input_ids`` of :meth:`__call__`).

        Example::

            >>> tok.encode("hello", add_special_tokens=False)
            [248]
        """
        return self(
            text,
            text_pair,
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            stride=stride,
            padding_side=padding_side,
            return_tensors=return_tensors,
            **kwargs,
        )["input_ids"]

    def tokenize(
        self, text: str, pair: str | None = None, add_special_tokens: bool = False, **kwargs: Any
    ) -> list[str]:
        """Token strings of ``text`` (no special tokens unless asked).

        Example::

            >>> tok.tokenize("Unbelievable tokenizers")
            ['unbelievable', 'tokenizer', '##s']
        """
        return self(text, pair, add_special_tokens=add_special_tokens, **kwargs).encodings[0].tokens

    # ---------------------------------------------------------------- decoding
    def decode(
        self,
        token_ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ) -> str | list[str]:
        """Ids -> text. Accepts an int, a list, a list of lists (returns a list of strings), or a
        NumPy array / PyTorch tensor.

        Example::

            >>> tok.decode([2, 248, 209, 3])
            '[CLS] hello world [SEP]'
            >>> tok.decode([2, 248, 209, 3], skip_special_tokens=True)
            'hello world'
        """
        ids = _to_python_ids(token_ids)
        if isinstance(ids, list) and ids and isinstance(ids[0], (list, tuple)):
            return [
                self._decode_one(list(seq), skip_special_tokens, clean_up_tokenization_spaces) for seq in ids
            ]
        return self._decode_one(ids, skip_special_tokens, clean_up_tokenization_spaces)

    def batch_decode(
        self,
        sequences: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Decode a batch of id sequences; returns one string per sequence."""
        seqs = _to_python_ids(sequences)
        if isinstance(seqs, list) and len(seqs) == 0:
            return []
        out = self.decode(seqs, skip_special_tokens, clean_up_tokenization_spaces)
        return [out] if isinstance(out, str) else out

    def _decode_one(self, ids: Any, skip_special_tokens: bool, clean_up: bool | None) -> str:
        if isinstance(ids, bool):
            raise InvalidInputError("token ids must be integers, got a bool")
        if isinstance(ids, int):
            ids = [ids]
        if not isinstance(ids, list):
            raise InvalidInputError(f"token ids must be an int or a list of ints, got {type(ids).__name__}")
        if not all(type(i) is int for i in ids):  # numpy / torch integer scalars are fine too
            ids = [_as_id(i) for i in ids]
        if ids and min(ids) < 0:
            raise InvalidInputError(f"token id {min(ids)} is negative; ids go from 0 to {len(self) - 1}")
        try:
            text = self._backend.decode(ids, skip_special_tokens=skip_special_tokens)
        except BaseException as e:
            if _is_fatal(e):
                raise
            raise InvalidInputError(f"cannot decode these ids: {e}") from None
        if clean_up is None:
            clean_up = self.clean_up_tokenization_spaces
        if clean_up and (type(self._backend.model).__name__ != "BPE" or self._clean_up_for_bpe):
            text = clean_up_tokenization(text)
        return text

    # ---------------------------------------------------------------- chat templates
    def get_chat_template(self, chat_template: str | None = None, tools: list | None = None) -> str:
        """The template string to use (``chat_template`` may be a template or a template's name)."""
        if isinstance(self.chat_template, dict):
            templates = self.chat_template
            if chat_template is not None and chat_template in templates:
                return templates[chat_template]
            if chat_template is None:
                if tools is not None and "tool_use" in templates:
                    return templates["tool_use"]
                if "default" in templates:
                    return templates["default"]
                raise TemplateError(
                    f"this tokenizer has several chat templates and no 'default'; pass chat_template= one of "
                    f"{sorted(templates)}"
                )
            return chat_template
        if chat_template is not None:
            return chat_template
        if self.chat_template is None:
            raise TemplateError(
                "this tokenizer has no chat template (tokenizer_config.json has no 'chat_template' and there is "
                "no chat_template.jinja): pass chat_template='...' or set tok.chat_template"
            )
        return self.chat_template

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]] | Sequence[Sequence[Mapping[str, Any]]],
        *,
        chat_template: str | None = None,
        add_generation_prompt: bool = False,
        tokenize: bool = True,
        return_tensors: str | None = None,
        return_dict: bool = True,
        tools: list[dict] | None = None,
        documents: list[dict] | None = None,
        continue_final_message: bool | str = False,
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        **template_kwargs: Any,
    ) -> Any:
        """Render a chat (list of ``{"role", "content"}`` dicts, or a batch of chats) with the
        tokenizer's Jinja chat template, in a sandbox.

        With ``tokenize=False`` returns the text; otherwise, like the reference, a
        :class:`BatchEncoding` (``return_dict=True``, the default) or just the ids
        (``return_dict=False``). The rendered text is tokenized without adding special tokens (the
        template writes them). Template errors and sandbox violations raise :class:`TemplateError`.

        Example::

            >>> msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
            >>> print(gpt.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
            <|im_start|>system
            Be brief.<|im_end|>
            <|im_start|>user
            Hi!<|im_end|>
            <|im_start|>assistant
            <BLANKLINE>
            >>> ids = gpt.apply_chat_template(msgs, add_generation_prompt=True, return_dict=False)
            >>> gpt.decode(ids) == gpt.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            True
        """
        from .chat_template import render_chat

        template = self.get_chat_template(chat_template, tools)
        if not isinstance(messages, (list, tuple)) or len(messages) == 0:
            raise InvalidInputError(
                "messages must be a non-empty list of {'role': ..., 'content': ...} dicts"
            )
        first = messages[0]
        if isinstance(first, (list, tuple)) or hasattr(first, "messages"):
            conversations = [getattr(c, "messages", c) for c in messages]
            is_batched = True
        else:
            conversations = [messages]
            is_batched = False
        normalized = []
        for chat in conversations:
            chat_out = []
            for m in chat:
                if not isinstance(m, Mapping):
                    raise InvalidInputError(f"each chat message must be a dict, got {type(m).__name__}")
                chat_out.append({k: v for k, v in m.items() if v is not None})
            normalized.append(chat_out)
        context = {**self.special_tokens_map, **template_kwargs}
        rendered = render_chat(
            normalized,
            template,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message,
            tools=tools,
            documents=documents,
            **context,
        )
        text = rendered if is_batched else rendered[0]
        if not tokenize:
            return text
        out = self(
            text,
            add_special_tokens=False,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            return_tensors=return_tensors,
        )
        return out if return_dict else out["input_ids"]

    # ---------------------------------------------------------------- saving
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> tuple[str, ...]:
        """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json`` to
        ``save_directory`` (created if needed), readable by :meth:`from_pretrained` and by the
        reference library. Returns the paths written.

        Example::

            >>> import tempfile
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     files = tok.save_pretrained(folder)
            ...     again = AutoTokenizer.from_pretrained(folder)
            >>> [Path(f).name for f in files]
            ['tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.json']
            >>> again("Hello!").input_ids == tok("Hello!").input_ids
            True
        """
        directory = Path(save_directory)
        if directory.is_file():
            raise InvalidInputError(f"{str(directory)!r} is a file; save_pretrained needs a directory")
        directory.mkdir(parents=True, exist_ok=True)

        config: dict[str, Any] = copy.deepcopy(self._extra_config)
        config.update(_derived_config(self._backend))
        for name, tok in self._special.items():
            config[name] = tok.content if tok is not None else None
        if self._extra:
            config["additional_special_tokens"] = self.extra_special_tokens
        config["added_tokens_decoder"] = {
            str(i): _token_state(t) for i, t in sorted(self._backend.get_added_tokens_decoder().items())
        }
        config["tokenizer_class"] = self.tokenizer_class or "PreTrainedTokenizerFast"
        config["model_max_length"] = self.model_max_length
        config["padding_side"] = self.padding_side
        config["truncation_side"] = self.truncation_side
        config["model_input_names"] = list(self.model_input_names)
        config["clean_up_tokenization_spaces"] = self.clean_up_tokenization_spaces
        if self.split_special_tokens:
            config["split_special_tokens"] = True
        if isinstance(self.chat_template, dict):
            config["chat_template"] = [{"name": k, "template": v} for k, v in self.chat_template.items()]
        elif self.chat_template is not None:
            config["chat_template"] = self.chat_template

        special_map: dict[str, Any] = {k: v for k, v in self.special_tokens_map.items()}
        if self._extra:
            special_map["additional_special_tokens"] = self.extra_special_tokens

        config_path = directory / CONFIG_FILE
        map_path = directory / SPECIAL_TOKENS_MAP_FILE
        tok_path = directory / TOKENIZER_FILE
        config_path.write_text(
            json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        map_path.write_text(
            json.dumps(special_map, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        with self._lock:
            self._backend.save(str(tok_path), pretty=True)
        return (str(config_path), str(map_path), str(tok_path))

    # ---------------------------------------------------------------- misc
    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
            f"len={len(self)}, model={type(self._backend.model).__name__}, "
            f"model_max_length={self.model_max_length}, padding_side={self.padding_side!r}, "
            f"truncation_side={self.truncation_side!r}, special_tokens={self.special_tokens_map}, "
            f"extra_special_tokens={self.extra_special_tokens}, "
            f"chat_template={'yes' if self.chat_template else 'no'})"
        )

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def __deepcopy__(self, memo: dict) -> "Tokenizer":
        new = type(self).__new__(type(self))
        state = self.__getstate__()
        state["_backend"] = _BackendTokenizer.from_str(self._backend.to_str())
        for key, value in state.items():
            if key != "_backend":
                state[key] = copy.deepcopy(value, memo)
        new.__setstate__(state)
        return new


def _special_token_property(name: str) -> property:
    def fget(self: Tokenizer) -> str | None:
        return self._get_special(name)

    def fset(self: Tokenizer, value: Any) -> None:
        self._set_special(name, value)

    return property(fget, fset, doc=f"The {name.replace('_', ' ')} (a string), or None if unset.")


def _special_id_property(name: str) -> property:
    def fget(self: Tokenizer) -> int | None:
        token = self._get_special(name)
        return None if token is None else self.convert_tokens_to_ids(token)

    def fset(self: Tokenizer, value: Any) -> None:
        if value is None:
            self._set_special(name, None)
            return
        token = self.convert_ids_to_tokens(int(value))
        if token is None:
            raise InvalidInputError(f"{name}_id={value} is not in the vocabulary (size {len(self)})")
        self._set_special(name, token)

    return property(fget, fset, doc=f"Id of the {name.replace('_', ' ')}, or None if unset.")


for _name in SPECIAL_TOKEN_NAMES:
    setattr(Tokenizer, _name, _special_token_property(_name))
    setattr(Tokenizer, _name + "_id", _special_id_property(_name))
del _name

#: The reference's name for a fast tokenizer class.
PreTrainedTokenizerFast = Tokenizer


def clean_up_tokenization(text: str) -> str:
    """Undo the spaces WordPiece decoding puts before punctuation and contractions."""
    return (
        text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
    )


def _check_words(value: Any, where: str) -> None:
    if not isinstance(value, (list, tuple)) or not all(isinstance(w, str) for w in value):
        raise InvalidInputError(f"{where} must be a list of words (strings) when is_split_into_words=True")


def _derived_config(backend: _BackendTokenizer) -> dict[str, Any]:
    """Config keys that the reference's per-class constructors read, taken from the real pipeline."""
    out: dict[str, Any] = {}
    norm = backend.normalizer
    if isinstance(norm, normalizers.BertNormalizer):
        out["do_lower_case"] = bool(norm.lowercase)
        out["strip_accents"] = norm.strip_accents
        out["tokenize_chinese_chars"] = bool(norm.handle_chinese_chars)
    pre = backend.pre_tokenizer
    if isinstance(pre, pre_tokenizers.ByteLevel):
        out["add_prefix_space"] = bool(pre.add_prefix_space)
    return out


# --- loading --------------------------------------------------------------------------------------
def _load_tokenizer_json(path: Path) -> _BackendTokenizer:
    text = _read_text(path, TOKENIZER_FILE)
    if not text.strip():
        raise TokenizerLoadError(f"{path}: tokenizer.json is empty; re-download or re-save the tokenizer")
    try:
        return _BackendTokenizer.from_str(text)
    except BaseException as e:  # tokenizers raises Exception, or pyo3's PanicException (a BaseException)
        if _is_fatal(e):
            raise
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TokenizerLoadError(
            f"{path}: tokenizer.json cannot be loaded by the tokenizers library ({detail}). The file is "
            "truncated, malformed, or uses a model type this version of tokenizers does not know"
        ) from None


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
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TokenizerLoadError(
            f"{vocab_path.parent}: cannot build a BPE tokenizer from vocab.json + merges.txt ({detail})"
        ) from None
    backend = _BackendTokenizer(model)
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(
        add_prefix_space=bool(config.get("add_prefix_space", False))
    )
    backend.decoder = decoders.ByteLevel()
    return backend


def _load_into(tok: Tokenizer, files: Any, name: str, overrides: dict[str, Any]) -> None:
    config_path = files.get(CONFIG_FILE)
    config: dict[str, Any] = {}
    if config_path is not None:
        loaded = _read_json(config_path, CONFIG_FILE)
        if not isinstance(loaded, dict):
            raise TokenizerLoadError(f"{config_path}: tokenizer_config.json must hold a JSON object")
        config = loaded
    if config.get("auto_map"):
        logger.info("%s: ignoring auto_map in tokenizer_config.json (remote code is never executed)", name)

    added_tokens_decoder = config.pop("added_tokens_decoder", None)
    if added_tokens_decoder is not None and not isinstance(added_tokens_decoder, Mapping):
        raise TokenizerLoadError(f"{config_path}: added_tokens_decoder must be an object of id -> token")
    if added_tokens_decoder is None:
        # Legacy files, read only when the config does not list its added tokens (like the reference).
        map_path = files.get(SPECIAL_TOKENS_MAP_FILE)
        if map_path is not None:
            smap = _read_json(map_path, SPECIAL_TOKENS_MAP_FILE)
            if not isinstance(smap, dict):
                raise TokenizerLoadError(f"{map_path}: special_tokens_map.json must hold a JSON object")
            for key, value in smap.items():
                if key in ("additional_special_tokens", "extra_special_tokens") and isinstance(value, list):
                    existing = list(
                        config.get("additional_special_tokens") or config.get("extra_special_tokens") or []
                    )
                    seen = {t["content"] if isinstance(t, Mapping) else str(t) for t in existing}
                    for t in value:
                        content = t["content"] if isinstance(t, Mapping) else str(t)
                        if content not in seen:
                            existing.append(t)
                            seen.add(content)
                    config.pop("extra_special_tokens", None)
                    config["additional_special_tokens"] = existing
                else:
                    config[key] = value
        added_path = files.get(ADDED_TOKENS_FILE)
        if added_path is not None:
            added = _read_json(added_path, ADDED_TOKENS_FILE)
            if not isinstance(added, dict) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in added.values()
            ):
                raise TokenizerLoadError(f"{added_path}: added_tokens.json must map token -> integer id")
            specials = {str(config.get(k)) for k in SPECIAL_TOKEN_NAMES if isinstance(config.get(k), str)}
            added_tokens_decoder = {
                i: {"content": t, "normalized": t not in specials, "special": t in specials}
                for t, i in added.items()
            }

    # Chat templates in their own files win over the config entry.
    templates: dict[str, str] = {}
    jinja = files.get(CHAT_TEMPLATE_FILE)
    if jinja is not None:
        templates["default"] = _read_text(jinja, CHAT_TEMPLATE_FILE)
    folder = getattr(files, "folder", None) or getattr(files, "local_dir", None)  # hub repos: cached snapshot
    if folder is not None and (Path(folder) / CHAT_TEMPLATE_DIR).is_dir():
        for path in sorted((Path(folder) / CHAT_TEMPLATE_DIR).glob("*.jinja")):
            templates[path.name[: -len(".jinja")]] = _read_text(path, "chat template")
    if len(templates) == 1 and "default" in templates:
        config["chat_template"] = templates["default"]
    elif templates:
        config["chat_template"] = templates

    if "additional_special_tokens" in overrides and "extra_special_tokens" not in overrides:
        overrides["extra_special_tokens"] = overrides.pop("additional_special_tokens")
    if "extra_special_tokens" in overrides:
        config.pop("additional_special_tokens", None)
    config.update(overrides)
    cls_name = _base_class_name(config.get("tokenizer_class"))
    specials = {
        k: config.get(k, _DEFAULT_SPECIALS.get(cls_name or "", {}).get(k)) for k in SPECIAL_TOKEN_NAMES
    }

    from_json = True
    tok_json = files.get(TOKENIZER_FILE)
    if tok_json is not None:
        backend = _load_tokenizer_json(tok_json)
    else:
        from_json = False
        vocab_txt = files.get("vocab.txt")
        vocab_json = files.get("vocab.json") if (vocab_txt is None or cls_name not in _BERT_CLASSES) else None
        merges = files.get("merges.txt") if vocab_json is not None else None
        if vocab_json is not None and merges is not None:
            backend = _bpe_from_vocab_merges(vocab_json, merges, config)
        elif vocab_txt is not None:
            backend = _wordpiece_from_vocab(vocab_txt, config, specials)
        else:
            spm = files.get("tokenizer.model")
            if spm is not None:
                raise TokenizerLoadError(
                    f"{name}: only a SentencePiece tokenizer.model was found; converting it is not supported. "
                    "Load it with a library that has a converter and save_pretrained() it to get a tokenizer.json"
                )
            raise TokenizerNotFoundError(
                f"{name}: no tokenizer found. Looked for tokenizer.json, vocab.txt (WordPiece) and "
                "vocab.json + merges.txt (byte-level BPE); none is there"
                + (" (vocab.json without merges.txt)" if vocab_json is not None else "")
                + ". Pass the folder of a saved tokenizer"
            )

    tok._setup(
        backend,
        config,
        name_or_path=name,
        from_tokenizer_json=from_json,
        added_tokens_decoder=added_tokens_decoder,
    )
    if not from_json:
        _add_conversion_post_processor(tok, cls_name, config)
    else:
        _apply_class_settings(tok.backend_tokenizer, cls_name, config)


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


class AutoTokenizer:
    """Picks and loads the tokenizer of a checkpoint. Every checkpoint loads as a :class:`Tokenizer`.

    Example::

        >>> from pretrained.tokenization import AutoTokenizer
        >>> tok = AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/bert_wordpiece")
        >>> tok.model_input_names, tok.padding_side, tok.model_max_length
        (['input_ids', 'token_type_ids', 'attention_mask'], 'right', 64)
    """

    def __init__(self) -> None:
        raise TypeError("AutoTokenizer is not instantiated; use AutoTokenizer.from_pretrained(name_or_path)")

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        trust_remote_code: bool = False,
        padding_side: str | None = None,
        truncation_side: str | None = None,
        model_max_length: int | None = None,
        use_fast: bool = True,
        **special_token_overrides: Any,
    ) -> Tokenizer:
        """Same as :meth:`Tokenizer.from_pretrained`."""
        return Tokenizer.from_pretrained(
            name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            trust_remote_code=trust_remote_code,
            padding_side=padding_side,
            truncation_side=truncation_side,
            model_max_length=model_max_length,
            use_fast=use_fast,
            **special_token_overrides,
        )
