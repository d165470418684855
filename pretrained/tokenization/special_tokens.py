"""Special tokens: the named ones (``bos_token`` ... ``mask_token``, each with an ``<name>_id``
property), model-specific named ones (``image_token``), the unnamed extra ones, and adding tokens
to the vocabulary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tokenizers import AddedToken

from ..errors import InvalidInputError, TokenizerLoadError
from .constants import SPECIAL_TOKEN_NAMES

if TYPE_CHECKING:
    from .tokenizer import Tokenizer


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


class SpecialTokensMixin:
    """Special-token attributes and methods of :class:`~pretrained.tokenization.Tokenizer`."""

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
