"""Decoding: token ids (an int, lists, batches, NumPy arrays, PyTorch tensors) back to text."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInputError
from .inputs import _as_id, _is_fatal, _to_python_ids


class DecodingMixin:
    """Decoding methods of :class:`~pretrained.tokenization.Tokenizer`."""

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
