"""Checks and conversions of what callers pass in (texts, pre-split words, token ids as lists,
NumPy arrays or PyTorch tensors); which exceptions are never turned into a tokenizer error, and the
one-line detail of those that are."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import InvalidInputError


def _is_fatal(e: BaseException) -> bool:
    return isinstance(e, (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError))


def _error_detail(e: BaseException) -> str:
    """The first line of an exception's message, or its type's name when the message is empty."""
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


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


def _check_words(value: Any, where: str) -> None:
    if not isinstance(value, (list, tuple)) or not all(isinstance(w, str) for w in value):
        raise InvalidInputError(f"{where} must be a list of words (strings) when is_split_into_words=True")


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
