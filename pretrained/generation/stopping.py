"""Stopping criteria: ``(input_ids, scores) -> (batch,) bool``, True where a row is done.

``generate()`` builds them from the config (max length, max time, eos ids, stop strings) and
adds any the caller passes in ``stopping_criteria=``.

Example::

    >>> import torch
    >>> from pretrained.generation.stopping import EosTokenCriteria
    >>> EosTokenCriteria([2, 7])(torch.tensor([[5, 2], [2, 5]]), None)
    tensor([ True, False])
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from ..errors import InvalidInputError


class StoppingCriteria:
    """Interface: ``__call__(input_ids (B, T), scores) -> (B,) bool``."""

    def __call__(self, input_ids: torch.Tensor, scores: Any) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(input_ids, scores)")


class StoppingCriteriaList(list):
    """A row is done when any criterion says so."""

    def __call__(self, input_ids: torch.Tensor, scores: Any) -> torch.Tensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for criterion in self:
            done = done | torch.as_tensor(criterion(input_ids, scores), device=input_ids.device)
        return done


class MaxLengthCriteria(StoppingCriteria):
    """Done once the sequences (prompt included) hold ``max_length`` tokens."""

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length

    def __call__(self, input_ids: torch.Tensor, scores: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), input_ids.shape[1] >= self.max_length,
                          dtype=torch.bool, device=input_ids.device)


class MaxTimeCriteria(StoppingCriteria):
    """Done once ``max_time`` seconds have passed since the criterion was made."""

    def __init__(self, max_time: float, initial_timestamp: float | None = None) -> None:
        self.max_time = max_time
        self.initial_timestamp = time.time() if initial_timestamp is None else initial_timestamp

    def __call__(self, input_ids: torch.Tensor, scores: Any) -> torch.Tensor:
        late = time.time() - self.initial_timestamp > self.max_time
        return torch.full((input_ids.shape[0],), late, dtype=torch.bool, device=input_ids.device)


class EosTokenCriteria(StoppingCriteria):
    """Done when the last token is one of the eos ids."""

    def __init__(self, eos_token_id: int | Sequence[int] | torch.Tensor) -> None:
        if isinstance(eos_token_id, torch.Tensor):
            self.eos_token_id = eos_token_id.reshape(-1).long()
        else:
            ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
            self.eos_token_id = torch.tensor(ids, dtype=torch.long)

    def __call__(self, input_ids: torch.Tensor, scores: Any) -> torch.Tensor:
        if self.eos_token_id.device != input_ids.device:
            self.eos_token_id = self.eos_token_id.to(input_ids.device)
        return torch.isin(input_ids[:, -1], self.eos_token_id)


class StopStringCriteria(StoppingCriteria):
    """Done when the decoded text contains a stop string that the last token helped write.

    As in the reference, a stop string counts only if it overlaps the final token (it may run
    past its end: "stop" matches the tokens "st" + "opera"), so text already in the prompt
    never stops generation. Matching decodes the last few tokens of each row with ``tokenizer``.
    """

    def __init__(self, tokenizer: Any, stop_strings: str | Sequence[str]) -> None:
        items = [stop_strings] if isinstance(stop_strings, str) else list(stop_strings)
        if not items or not all(isinstance(s, str) and s for s in items):
            raise InvalidInputError(f"stop_strings={stop_strings!r}: give one or more non-empty strings")
        if tokenizer is None or not hasattr(tokenizer, "decode"):
            raise InvalidInputError("stop_strings need the model's tokenizer to read the generated text: "
                                    "pass tokenizer=... to generate()")
        self.tokenizer = tokenizer
        self.stop_strings = tuple(items)
        longest = max(len(s) for s in items)
        # Enough tokens to hold the longest stop string even when several bytes make one character.
        self.window = 2 * longest + 4

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def matches(self, ids: list[int]) -> bool:
        """Whether the token sequence ``ids`` ends a stop string."""
        tail = ids[-self.window:]
        text = self._decode(tail)
        before = len(self._decode(tail[:-1])) if len(tail) > 1 else 0
        return any(text.find(s, max(0, before - len(s) + 1)) != -1 for s in self.stop_strings)

    def __call__(self, input_ids: torch.Tensor, scores: Any) -> torch.Tensor:
        rows = input_ids[:, -self.window:].tolist()
        return torch.tensor([self.matches(r) for r in rows], dtype=torch.bool, device=input_ids.device)


__all__ = ["StoppingCriteria", "StoppingCriteriaList", "MaxLengthCriteria", "MaxTimeCriteria",
           "EosTokenCriteria", "StopStringCriteria"]
