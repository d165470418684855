"""What ``generate(..., return_dict_in_generate=True)`` returns (greedy/sampling and beam search)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..outputs import ModelOutput

__all__ = ["GenerateDecoderOnlyOutput", "GenerateBeamDecoderOnlyOutput"]


@dataclass
class GenerateDecoderOnlyOutput(ModelOutput):
    """``return_dict_in_generate=True`` result of greedy decoding or sampling."""

    sequences: torch.Tensor
    scores: tuple[torch.Tensor, ...] | None = None  # processed scores, one (B, V) per step
    logits: tuple[torch.Tensor, ...] | None = None  # raw logits, one (B, V) per step
    cache: Any = None

    @property
    def past_key_values(self) -> Any:
        return self.cache


@dataclass
class GenerateBeamDecoderOnlyOutput(ModelOutput):
    """``return_dict_in_generate=True`` result of beam search."""

    sequences: torch.Tensor
    sequences_scores: torch.Tensor | None = None  # length-penalised log-probabilities
    scores: tuple[torch.Tensor, ...] | None = None  # processed log-probs, one (B*beams, V) per step
    logits: tuple[torch.Tensor, ...] | None = None
    beam_indices: torch.Tensor | None = None  # (B*n, generated): the beam each token came from
    cache: Any = None

    @property
    def past_key_values(self) -> Any:
        return self.cache
