"""``BatchEncoding`` (what calling a tokenizer returns), its span tuples, and the conversion of
lists of ids to PyTorch / NumPy / TensorFlow tensors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import tokenizers

from ..errors import InvalidInputError, MissingDependencyError
from .constants import _VALID_TENSORS


class CharSpan(NamedTuple):
    """Character span ``[start, end)`` in the original string."""

    start: int
    end: int


class TokenSpan(NamedTuple):
    """Token span ``[start, end)`` in the encoded sequence."""

    start: int
    end: int


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
