"""Forward-pass helpers shared by the encoder-decoder models (T5, BART, Marian, mBART, Pegasus).

The contract every encoder-decoder model here keeps, which ``generate()`` relies on:

* ``model.get_encoder()`` returns a module called as ``encoder(input_ids, attention_mask=...,
  output_hidden_states=...)`` that returns a :class:`~pretrained.outputs.BaseModelOutput`;
* ``model(input_ids=None, attention_mask=None, decoder_input_ids=None,
  decoder_attention_mask=None, encoder_outputs=None, past_key_values=None, use_cache=None,
  labels=None, output_hidden_states=None)``: with ``encoder_outputs`` given the encoder does not
  run; ``past_key_values`` is an :class:`~pretrained.cache.EncoderDecoderCache` whose
  self-attention part gives the decoder's positions; ``labels`` without ``decoder_input_ids``
  become the decoder inputs shifted right (:func:`shift_tokens_right`);
* ``model.prepare_decoder_input_ids_from_labels(labels)`` for collators.

Kept here so the models check inputs, build masks and use caches identically.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch

from ..errors import InvalidInputError
from ..outputs import BaseModelOutput

if TYPE_CHECKING:
    from ..cache import EncoderDecoderCache


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int | None,
                       decoder_start_token_id: int | None) -> torch.Tensor:
    """Decoder inputs for teacher forcing: ``labels`` moved one step right behind the start
    token, with the ignored label -100 read as padding."""
    if decoder_start_token_id is None:
        raise InvalidInputError("config.decoder_start_token_id is not set, so decoder inputs cannot "
                                "be made from labels; set it (T5: the pad id, BART: the eos id)")
    if pad_token_id is None:
        raise InvalidInputError("config.pad_token_id is not set, so labels of -100 cannot be "
                                "turned into decoder inputs; set it to the tokenizer's pad id")
    out = labels.new_zeros(labels.shape)
    out[..., 1:] = labels[..., :-1].clone()
    out[..., 0] = decoder_start_token_id
    return out.masked_fill_(out == -100, pad_token_id)


def seq2seq_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every decoder position against its label (no shift: the decoder inputs
    are already the labels shifted right); -100 is ignored."""
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                             labels.reshape(-1).to(logits.device))


def decoder_inputs(config: Any, decoder_input_ids: torch.Tensor | None,
                   labels: torch.Tensor | None) -> torch.Tensor:
    """The decoder's input ids: as given, else ``labels`` shifted right, else a clear error."""
    if decoder_input_ids is not None:
        return decoder_input_ids
    if labels is not None:
        return shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id)
    raise InvalidInputError("an encoder-decoder model needs decoder_input_ids (or labels, from "
                            "which they are made); to translate or summarize, call "
                            "model.generate(**tokenizer(text, return_tensors='pt'))")


def encoder_cache(past_key_values: Any, use_cache: bool) -> "EncoderDecoderCache | None":
    """The cache a decoder forward uses: the one given (which must be an EncoderDecoderCache),
    else a new one when ``use_cache``."""
    from ..cache import EncoderDecoderCache

    if past_key_values is not None:
        if not isinstance(past_key_values, EncoderDecoderCache):
            raise InvalidInputError(f"past_key_values of an encoder-decoder model must be a "
                                    f"pretrained.cache.EncoderDecoderCache, got "
                                    f"{type(past_key_values).__name__}")
        return past_key_values
    return EncoderDecoderCache() if use_cache else None


def cross_key_values(cache: "EncoderDecoderCache | None", layer_idx: int,
                     encoder_states: torch.Tensor,
                     project: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's cross-attention keys/values: read from ``cache`` when an earlier step stored
    them, else ``project(encoder_states)`` (stored for the next steps)."""
    if cache is not None:
        kv = cache.cross(layer_idx)
        if kv is not None:
            return kv
    k, v = project(encoder_states)
    if cache is not None:
        # stored contiguous: every later step reads them, and attention over strided keys (the
        # heads' transposed view) copies them first, each step (4x slower over 1500 frames)
        k, v = k.contiguous(), v.contiguous()
        cache.set_cross(layer_idx, k, v)
    return k, v


def encoder_padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, 1, 1, S) boolean, True where a key of the encoder output may be attended; None
    when nothing is padded (SDPA's unmasked path)."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    return attention_mask[:, None, None, :].bool()


def clamp_float16(x: torch.Tensor, always: bool = False) -> torch.Tensor:
    """The reference keeps float16 encoder-decoder states finite by clamping them below the
    dtype's maximum: every time (BART-family pre-LN models) or once something overflowed (T5,
    post-LN models). Other dtypes pass through."""
    if x.dtype == torch.float16 and (always or not bool(torch.isfinite(x).all())):
        limit = torch.finfo(torch.float16).max - 1000
        x = torch.clamp(x, min=-limit, max=limit)
    return x


def eos_representation(eos_token_id: int | None, input_ids: torch.Tensor | None,
                       hidden: torch.Tensor, model_name: str) -> torch.Tensor:
    """The decoder state at each row's last eos token (B, H): the sentence representation the
    encoder-decoders' sequence classifiers (BART, T5) read. Every row must hold the same number
    of eos tokens, as in the reference."""
    if input_ids is None:
        raise InvalidInputError(f"{model_name} needs input_ids (it pools at their eos tokens)")
    eos = input_ids.eq(eos_token_id).to(hidden.device)
    counts = eos.sum(1)
    if int(counts.min()) < 1 or int(counts.max()) != int(counts.min()):
        raise InvalidInputError(f"every row must hold the same number (>= 1) of eos tokens (id "
                                f"{eos_token_id}), got {counts.tolist()}; tokenize with "
                                "add_special_tokens=True")
    return hidden[eos, :].view(hidden.shape[0], -1, hidden.shape[-1])[:, -1, :]


__all__ = ["as_encoder_output", "clamp_float16", "eos_representation", "shift_tokens_right", "seq2seq_lm_loss", "decoder_inputs", "encoder_cache",
           "cross_key_values", "encoder_padding_mask"]


def as_encoder_output(encoder_outputs: Any) -> BaseModelOutput:
    """``encoder_outputs`` as passed by a caller (the encoder's output, its last states alone, or
    the reference's tuple) -> a BaseModelOutput."""
    if isinstance(encoder_outputs, BaseModelOutput):
        return encoder_outputs
    if isinstance(encoder_outputs, torch.Tensor):
        return BaseModelOutput(last_hidden_state=encoder_outputs)
    if isinstance(encoder_outputs, (tuple, list)) and encoder_outputs:
        return BaseModelOutput(last_hidden_state=encoder_outputs[0],
                               hidden_states=encoder_outputs[1] if len(encoder_outputs) > 1 else None)
    raise InvalidInputError(f"encoder_outputs must be the encoder's BaseModelOutput (or a tuple whose "
                            f"first item is its hidden states), got {type(encoder_outputs).__name__}")
