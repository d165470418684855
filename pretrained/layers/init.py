"""The reference's default weight initialisation.

:func:`init_normal_` gives weights a checkpoint does not hold (a new head, a model built from a
config) the normal/zeros/ones values the reference uses, for ``nn.Linear``, GPT-2's ``Conv1D``,
``nn.Embedding`` (padding row zeroed) and ``nn.LayerNorm``. ``PreTrainedModel`` and the models
apply it module by module.
"""

from __future__ import annotations

import torch
from torch import nn

from .conv1d import Conv1D


def init_normal_(module: nn.Module, std: float) -> None:
    """The reference's default initialisation (used for weights a checkpoint does not hold)."""
    if isinstance(module, (nn.Linear, Conv1D)):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=std)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
