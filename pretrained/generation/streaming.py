"""Streamers: text as ``generate()`` produces it, in the same words as the finished call.

``generate(..., streamer=s)`` calls ``s.put(prompt_ids)`` once, ``s.put(new_ids)`` after each
step and ``s.end()`` at the end. :class:`TextStreamer` prints text as soon as it is final (a
word is held back until the next space, as a later token may still change it);
:class:`TextIteratorStreamer` hands the same pieces to another thread.

Example::

    >>> from threading import Thread                                          # doctest: +SKIP
    >>> streamer = TextIteratorStreamer(tok, skip_prompt=True, timeout=30)    # doctest: +SKIP
    >>> Thread(target=model.generate, kwargs=dict(**enc, streamer=streamer,  # doctest: +SKIP
    ...        max_new_tokens=50)).start()
    >>> text = "".join(streamer)                                              # doctest: +SKIP
"""

from __future__ import annotations

import queue
import unicodedata
from typing import Any

import torch

from ..errors import InvalidInputError


class BaseStreamer:
    """Interface: ``put(token_ids)`` for each new chunk of ids, ``end()`` when generation stops."""

    def put(self, value: torch.Tensor) -> None:
        raise NotImplementedError

    def end(self) -> None:
        raise NotImplementedError


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in (
        (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


class TextStreamer(BaseStreamer):
    """Print generated text to stdout as it becomes final.

    ``skip_prompt`` leaves the prompt out; other keyword arguments go to ``tokenizer.decode``
    (e.g. ``skip_special_tokens=True``).
    """

    def __init__(self, tokenizer: Any, skip_prompt: bool = False, **decode_kwargs: Any) -> None:
        if not hasattr(tokenizer, "decode"):
            raise InvalidInputError(f"{type(self).__name__} needs a tokenizer with decode(), got "
                                    f"{type(tokenizer).__name__}")
        self.tokenizer = tokenizer
        self.skip_prompt = skip_prompt
        self.decode_kwargs = decode_kwargs
        self._ids: list[int] = []  # tokens whose text is not all printed yet
        self._printed = 0  # characters of decode(self._ids) already printed
        self._at_prompt = True

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, **self.decode_kwargs)

    def put(self, value: torch.Tensor) -> None:
        if value.dim() > 1:
            if value.shape[0] > 1:
                raise InvalidInputError(f"{type(self).__name__} streams one sequence, got a batch of "
                                        f"{value.shape[0]}")
            value = value[0]
        if self.skip_prompt and self._at_prompt:
            self._at_prompt = False
            return
        self._at_prompt = False
        self._ids.extend(value.tolist())
        text = self._decode(self._ids)
        new = text[self._printed:]
        if text.endswith("\n"):
            # Line done: restart from its last token, which keeps the next token's leading space right.
            self._ids = self._ids[-1:]
            self._printed = len(self._decode(self._ids))
        elif text and _is_cjk(text[-1]):
            self._printed += len(new)
        elif all(c.isspace() or unicodedata.category(c)[0] in "LMN" for c in new):
            self._printed += len(new)  # plain words: nothing later can change them
        else:
            # Symbols may be half of a character (U+FFFD) or start some markup: wait for a space.
            new = text[self._printed:text.rfind(" ") + 1]
            self._printed += len(new)
        self.on_finalized_text(new)

    def end(self) -> None:
        new = self._decode(self._ids)[self._printed:] if self._ids else ""
        self._ids, self._printed, self._at_prompt = [], 0, True
        self.on_finalized_text(new, stream_end=True)

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        """Where final text goes: stdout here, a queue in :class:`TextIteratorStreamer`."""
        print(text, flush=True, end=None if stream_end else "")


class TextIteratorStreamer(TextStreamer):
    """Iterate over the generated text from another thread; ``timeout`` (seconds) bounds each
    wait, raising ``queue.Empty`` when no text came in time. If ``generate()`` fails, iterating
    raises its error instead of waiting."""

    _STOP = object()

    def __init__(self, tokenizer: Any, skip_prompt: bool = False, timeout: float | None = None,
                 **decode_kwargs: Any) -> None:
        super().__init__(tokenizer, skip_prompt, **decode_kwargs)
        self.text_queue: queue.Queue = queue.Queue()
        self.timeout = timeout

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self.text_queue.put(text, timeout=self.timeout)
        if stream_end:
            self.text_queue.put(self._STOP, timeout=self.timeout)

    def fail(self, error: BaseException) -> None:
        """Called by generate() when it raises: the iterating thread re-raises ``error``."""
        self.text_queue.put(error)

    def __iter__(self) -> "TextIteratorStreamer":
        return self

    def __next__(self) -> str:
        try:
            item = self.text_queue.get(timeout=self.timeout)
        except queue.Empty:
            raise queue.Empty(f"no generated text within timeout={self.timeout} s") from None
        if item is self._STOP:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item


__all__ = ["BaseStreamer", "TextStreamer", "TextIteratorStreamer"]
