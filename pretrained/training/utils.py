"""Small training helpers: seeding, gradient checkpointing, output containers.

Example::

    >>> import torch
    >>> from pretrained.training.utils import set_seed
    >>> set_seed(0); a = torch.rand(1); set_seed(0)
    >>> bool(torch.rand(1) == a)
    True
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

# gradient checkpointing lives with the models (their gradient_checkpointing_enable); the
# Trainer's helpers are the same functions
from ..checkpointing import disable_gradient_checkpointing, enable_gradient_checkpointing, repeated_blocks


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (every device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class TrainOutput(NamedTuple):
    global_step: int
    training_loss: float
    metrics: dict[str, float]


class PredictionOutput(NamedTuple):
    predictions: Any
    label_ids: Any
    metrics: dict[str, float] | None


@dataclass
class EvalPrediction:
    """What ``compute_metrics`` receives; also unpacks as ``predictions, label_ids``."""

    predictions: Any
    label_ids: Any
    inputs: Any = None

    def __iter__(self):
        return iter((self.predictions, self.label_ids) if self.inputs is None
                    else (self.predictions, self.label_ids, self.inputs))

    def __getitem__(self, i: int) -> Any:
        return tuple(self)[i]


__all__ = ["set_seed", "enable_gradient_checkpointing", "disable_gradient_checkpointing", "repeated_blocks",
           "TrainOutput", "PredictionOutput", "EvalPrediction"]
