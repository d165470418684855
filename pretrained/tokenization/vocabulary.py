"""The vocabulary: sizes, token <-> id conversion, added tokens, special-tokens masks."""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import AddedToken
from tokenizers import Tokenizer as _BackendTokenizer

from ..errors import InvalidInputError
from .inputs import _to_python_ids


class VocabularyMixin:
    """Vocabulary methods of :class:`~pretrained.tokenization.Tokenizer`."""

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
