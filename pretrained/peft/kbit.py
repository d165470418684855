"""``prepare_model_for_kbit_training``: make a model loaded in 8 or 4 bits ready for LoRA
training (QLoRA), as PEFT's function of that name does: every base parameter frozen, the float16
and bfloat16 ones (norms, embeddings, the LM head: what stayed unquantized) cast to float32 for
stable updates, and the input embeddings' output made to require gradients, so gradients reach
the adapters under the frozen layers.

Gradient checkpointing, which PEFT turns on here by default, is not implemented by this
library's models: the default (None) skips it with a log line; asking for it (True) is refused.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from pretrained.peft import prepare_model_for_kbit_training
    >>> m = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4)).to(torch.bfloat16)
    >>> m = prepare_model_for_kbit_training(m)
    >>> m[1].weight.dtype, m[1].weight.requires_grad
    (torch.float32, False)
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from ..errors import UnsupportedOptionError

logger = logging.getLogger("pretrained")


def prepare_model_for_kbit_training(model: nn.Module, use_gradient_checkpointing: bool | None = None,
                                    gradient_checkpointing_kwargs: dict[str, Any] | None = None,
                                    auto_clear_cache: bool = True) -> nn.Module:
    """Freeze, upcast half-precision parameters and enable input gradients (see the module doc);
    returns ``model`` (changed in place)."""
    if use_gradient_checkpointing or gradient_checkpointing_kwargs:
        raise UnsupportedOptionError(
            "use_gradient_checkpointing=True: gradient checkpointing is not implemented for this "
            "library's models; leave it out (QLoRA then trains with the activations kept, which needs "
            "more memory for long inputs: shorten the sequences or the batch)")
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.parameters():
        if p.dtype in (torch.float16, torch.bfloat16):
            p.data = p.data.to(torch.float32)
    if use_gradient_checkpointing is None:
        logger.info("prepare_model_for_kbit_training: no gradient checkpointing (not implemented here)")
    _enable_input_require_grads(model)
    return model


def _enable_input_require_grads(model: nn.Module) -> None:
    """The input embeddings' output requires gradients (PEFT's enable_input_require_grads), so the
    frozen layers above pass gradients on to the adapters."""
    get = getattr(model, "get_input_embeddings", None)
    try:
        emb = get() if get is not None else None
    except NotImplementedError:
        emb = None
    if emb is None:
        emb = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
    if emb is None or getattr(emb, "_require_grads_hook", None) is not None:
        return

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        output.requires_grad_(True)

    emb._require_grads_hook = emb.register_forward_hook(hook)


__all__ = ["prepare_model_for_kbit_training"]
