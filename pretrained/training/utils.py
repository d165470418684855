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
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import InvalidInputError


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (every device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _checkpointed_forward(module: nn.Module, forward: Any, *args: Any, **kwargs: Any) -> Any:
    if module.training and torch.is_grad_enabled():
        # Non-reentrant: works with frozen inputs (LoRA) and DDP; RNG (dropout) is replayed.
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)


def repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks: children of every ModuleList whose items share one class."""
    blocks = []
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and \
                len({type(m) for m in module}) == 1 and not isinstance(module[0], nn.ModuleDict):
            blocks.extend(module)
    return blocks


def enable_gradient_checkpointing(model: nn.Module) -> int:
    """Recompute each transformer block's activations in the backward pass instead of storing
    them (less memory, about a third more compute). Returns the number of blocks wrapped."""
    blocks = repeated_blocks(model)
    if not blocks:
        raise InvalidInputError(f"gradient_checkpointing=True: found no repeated blocks (an "
                                f"nn.ModuleList of layers) in {type(model).__name__}")
    for block in blocks:
        if "forward" not in vars(block):
            block.forward = partial(_checkpointed_forward, block, block.forward)
    return len(blocks)


def disable_gradient_checkpointing(model: nn.Module) -> None:
    for block in repeated_blocks(model):
        vars(block).pop("forward", None)


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


__all__ = ["set_seed", "enable_gradient_checkpointing", "disable_gradient_checkpointing",
           "TrainOutput", "PredictionOutput", "EvalPrediction"]
