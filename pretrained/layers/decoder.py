"""Forward-pass helpers shared by the decoders (GPT-2, the Llama family, GPT-NeoX).

:func:`prepare_decoder_inputs` does the checks and defaults every decoder forward needs (cache,
past length, position ids, mask shape); :func:`lm_logits` projects only the positions asked for;
:func:`last_token_logits` pools the last non-padding token for sequence classification. Kept in
one place so the decoders validate inputs and handle caches identically.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InvalidInputError


def prepare_decoder_inputs(model: nn.Module, input_ids, inputs_embeds, attention_mask,
                           position_ids, past_key_values, use_cache):
    """Checks and defaults every decoder forward needs: the cache to use (a new DynamicCache
    when ``use_cache``, which defaults to ``config.use_cache`` outside training), the past
    length, default position ids (past .. past + T - 1) and the attention mask's shape.
    Returns (cache, past, batch, new tokens, input_ids, position_ids); ``past`` is a 0-d
    tensor for a StaticCache (see :func:`causal_mask`). Under ``torch.compile`` the checks
    that read tensor values are skipped.
    """
    from ..cache import Cache, DynamicCache

    eager = not torch.compiler.is_compiling()
    if (input_ids is None) == (inputs_embeds is None):
        raise InvalidInputError("pass exactly one of input_ids and inputs_embeds")
    if input_ids is not None:
        if eager:
            input_ids = model.check_input_ids(input_ids)
        b, t = input_ids.shape
        device = input_ids.device
    else:
        b, t = inputs_embeds.shape[:2]
        device = inputs_embeds.device
    if use_cache is None:
        use_cache = model.config.use_cache and not model.training
    if past_key_values is not None and not isinstance(past_key_values, Cache):
        raise InvalidInputError(
            f"past_key_values must be a pretrained.cache Cache (DynamicCache or "
            f"StaticCache), got {type(past_key_values).__name__}"
        )
    cache = past_key_values if past_key_values is not None else (DynamicCache() if use_cache else None)
    past = cache.position() if cache is not None else 0
    if attention_mask is not None and eager:
        lo = past + t if isinstance(past, int) else int(past) + t
        hi = cache.kv_length(t) if cache is not None else t
        if attention_mask.dim() != 2 or attention_mask.shape[0] != b or not (
                lo <= attention_mask.shape[1] <= hi):
            raise InvalidInputError(
                f"attention_mask has shape {tuple(attention_mask.shape)}; expected ({b}, {lo}) "
                f"= (batch, cached tokens {lo - t} + new tokens {t}), 1 for real tokens, 0 for "
                "padding"
            )
    if position_ids is None:
        position_ids = (torch.arange(t, device=device) + past).unsqueeze(0)
    elif position_ids.shape[-1] != t:
        raise InvalidInputError(f"position_ids has shape {tuple(position_ids.shape)} but the "
                                f"input has {t} tokens")
    return cache, past, b, t, input_ids, position_ids


def lm_logits(head: nn.Module, hidden: torch.Tensor, logits_to_keep: int) -> torch.Tensor:
    """Vocabulary projection of the last ``logits_to_keep`` positions (0: all)."""
    if logits_to_keep:
        hidden = hidden[:, -logits_to_keep:]
    return head(hidden)


def last_token_logits(config, logits: torch.Tensor,
                      input_ids: torch.Tensor | None) -> torch.Tensor:
    """Sequence-classification pooling: the rightmost non-padding token of each row."""
    b, t = logits.shape[:2]
    pad = config.pad_token_id
    if pad is None and b != 1:
        raise InvalidInputError(
            f"{type(config).__name__}.pad_token_id is needed to find the last token of each "
            "sequence in a batch; set it (e.g. to the eos token id)"
        )
    if pad is None or input_ids is None:
        last = torch.full((b,), t - 1, device=logits.device)
    else:
        last = ((input_ids != pad).int() * torch.arange(t, device=logits.device)).argmax(-1)
    return logits[torch.arange(b, device=logits.device), last]
