"""The :class:`Tokenizer` class: construction (from a `tokenizers.Tokenizer`, a tokenizer.json or
``from_pretrained``), copying and pickling. Its methods come from the mixins of the sibling
modules (special tokens, vocabulary, encoding, padding, decoding, chat templates, saving)."""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, processors
from tokenizers import Tokenizer as _BackendTokenizer

from ..errors import InvalidInputError, RemoteCodeError, TokenizerLoadError
from .chat import ChatTemplateMixin
from .constants import (
    SPECIAL_TOKEN_NAMES,
    VERY_LARGE_INTEGER,
    _CONFIG_DROP_ON_SAVE,
    _DEFAULT_SPECIALS,
    _INPUT_NAMES_BY_CLASS,
    _LEFT_PADDING_CLASSES,
    _base_class_name,
)
from .decoding import DecodingMixin
from .encoding import EncodingMixin
from .loading import _load_into, _load_tokenizer_json
from .padding import PaddingMixin
from .saving import SavingMixin
from .special_tokens import SpecialTokensMixin, _special_id_property, _special_token_property, _to_added_token
from .vocabulary import VocabularyMixin


class Tokenizer(
    SpecialTokensMixin,
    VocabularyMixin,
    EncodingMixin,
    PaddingMixin,
    DecodingMixin,
    ChatTemplateMixin,
    SavingMixin,
):
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
        from ..io.hub import resolve

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
        gguf_file = overrides.pop("gguf_file", None)
        if gguf_file is not None:
            # the tokenizer in a GGUF file's metadata, built by pretrained.gguf as a `tokenizers`
            # object and its tokenizer config (pretrained.gguf never imports tokenization)
            from ..gguf import gguf_path, load_gguf

            backend, config = load_gguf(gguf_path(files, gguf_file)).tokenizer()
            config.update(overrides)
            # the backend was built for this tokenizer alone: adopted as it is, not copied through
            # JSON as tokenizer_object= is (for a 49k-token vocabulary that copy took ~30 MiB of
            # resident memory for good and 0.1 s; issue 14)
            tok = Tokenizer.__new__(Tokenizer)
            tok._setup(backend, config, name_or_path=str(os.fspath(name_or_path)), from_tokenizer_json=True)
            return tok
        tok = cls.__new__(cls)
        _load_into(tok, files, str(os.fspath(name_or_path)), overrides)
        return tok

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


for _name in SPECIAL_TOKEN_NAMES:
    setattr(Tokenizer, _name, _special_token_property(_name))
    setattr(Tokenizer, _name + "_id", _special_id_property(_name))
del _name

#: The reference's name for a fast tokenizer class.
PreTrainedTokenizerFast = Tokenizer
