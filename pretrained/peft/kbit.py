"""``prepare_model_for_kbit_training``: make a model loaded in 8 or 4 bits ready for LoRA
training (QLoRA), as PEFT's function of that name does: every base parameter frozen, the float16
and bfloat16 ones (norms, embeddings, the LM head: what stayed unquantized) cast to float32 for
stable updates, the input embeddings' output made to require gradients (so gradients reach the
adapters under the frozen layers), and gradient checkpointing turned on (PEFT's default: each
block's activations are recomputed in the backward pass instead of kept; see
:mod:`pretrained.checkpointing`). ``gradient_checkpointing_kwargs`` are
``torch.utils.checkpoint.checkpoint``'s keywords; without ``use_reentrant`` this library uses the
non-reentrant variant (PEFT leaves it to torch, whose default is still the reentrant one; both
give the same gradients).

Example::

    >>> import torch
    >>> from torch import nn
    >>> from pretrained.peft import prepare_model_for_kbit_training
    >>> m = nn.Sequential(nn.Embedding(10, 4), nn.ModuleList([nn.Linear(4, 4)])).to(torch.bfloat16)
    >>> m = prepare_model_for_kbit_training(m)
    >>> m[1][0].weight.dtype, m[1][0].weight.requires_grad
    (torch.float32, False)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..checkpointing import enable_gradient_checkpointing, enable_input_require_grads


def prepare_model_for_kbit_training(model: nn.Module, use_gradient_checkpointing: bool = True,
                                    gradient_checkpointing_kwargs: dict[str, Any] | None = None,
                                    auto_clear_cache: bool = True) -> nn.Module:
    """Freeze, upcast half-precision parameters, enable input gradients and (by default)
    gradient checkpointing (see the module doc); returns ``model`` (changed in place)."""
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.parameters():
        if p.dtype in (torch.float16, torch.bfloat16):
            p.data = p.data.to(torch.float32)
    enable_input_require_grads(model)
    if use_gradient_checkpointing:
        enable = getattr(model, "gradient_checkpointing_enable", None)
        if enable is not None:
            enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs)
        else:
            enable_gradient_checkpointing(model, gradient_checkpointing_kwargs)
    return model


__all__ = ["prepare_model_for_kbit_training"]
