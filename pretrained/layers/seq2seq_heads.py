"""Task heads of the BART family written once, mixins a model file names its classes with (as
:mod:`.bart_blocks` does for the encoder, decoder, base model and LM head):

* :class:`Seq2SeqSequenceClassification`: the decoder state at the last eos token ->
  ``classification_head`` (BART, mBART);
* :class:`Seq2SeqQuestionAnswering`: span start/end logits over the decoder's positions
  (``qa_outputs``; BART, mBART);
* :class:`Seq2SeqCausalLM`: the reference's ``XForCausalLM``, the decoder alone as a
  decoder-only language model (keys ``model.decoder.*``, ``lm_head.weight`` tied to the
  decoder's embeddings), cross-attending to ``encoder_hidden_states`` only when given; its
  config says ``is_decoder`` and not ``is_encoder_decoder``, so ``generate()`` decodes it as a
  decoder-only model through a plain KV cache.

A model file sets ``model_class`` (the heads over the base model) or ``decoder_class`` (the
causal LM) and mixes these into its ``PreTrainedModel`` subclass.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from ..outputs import CausalLMOutput, Seq2SeqQuestionAnsweringOutput, Seq2SeqSequenceClassifierOutput
from .decoder import lm_logits
from .encoder import ClassificationHead
from .losses import sequence_classification_loss, span_loss, token_loss
from .seq2seq import eos_representation

__all__ = ["Seq2SeqSequenceClassification", "Seq2SeqQuestionAnswering", "Seq2SeqCausalLM", "DecoderWrapper"]


def _tail(out) -> dict:
    return {"decoder_hidden_states": out.decoder_hidden_states, "encoder_hidden_states": out.encoder_hidden_states,
            "encoder_last_hidden_state": out.encoder_last_hidden_state}


class _OverBaseModel(nn.Module):
    model_class: ClassVar[type]

    def _build_base(self, config: Any) -> None:
        self.model = self.model_class(config)
        self.tied_weights = self.model.tied_weights_under("model")

    def get_encoder(self) -> nn.Module:
        return self.model.encoder

    def get_decoder(self) -> nn.Module:
        return self.model.decoder

    def _run(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
             output_hidden_states):
        return self.model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
                          use_cache=False, output_hidden_states=output_hidden_states)


class Seq2SeqSequenceClassification(_OverBaseModel):
    """The decoder state at the last eos token -> ``classification_head`` (dense, tanh,
    out_proj); the loss follows ``config.problem_type``. Without ``decoder_input_ids`` the base
    model makes them from ``input_ids``, as the reference."""

    forward_inputs = frozenset({"input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask",
                                "encoder_outputs", "labels", "output_hidden_states"})

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._build_base(config)
        self.classification_head = ClassificationHead(config.d_model, config.num_labels,
                                                      config.classifier_dropout, "tanh")

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, labels=None, output_hidden_states=None) -> Seq2SeqSequenceClassifierOutput:
        out = self._run(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
                        output_hidden_states)
        pooled = eos_representation(self.config.eos_token_id, input_ids, out.last_hidden_state,
                                    type(self).__name__)
        logits = self.classification_head(pooled[:, None])   # the head reads position 0
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels)
        return Seq2SeqSequenceClassifierOutput(loss=loss, logits=logits, **_tail(out))


class Seq2SeqQuestionAnswering(_OverBaseModel):
    """Span start/end logits over the decoder's positions (``qa_outputs``); ``num_labels`` is
    2, as the reference sets it."""

    forward_inputs = frozenset({"input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask",
                                "encoder_outputs", "start_positions", "end_positions", "output_hidden_states"})

    def __init__(self, config: Any) -> None:
        config.num_labels = 2   # start and end, as the reference sets it
        super().__init__(config)
        self._build_base(config)
        self.qa_outputs = nn.Linear(config.d_model, 2)

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, start_positions=None, end_positions=None,
                output_hidden_states=None) -> Seq2SeqQuestionAnsweringOutput:
        out = self._run(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
                        output_hidden_states)
        start, end = (x.squeeze(-1).contiguous() for x in self.qa_outputs(out.last_hidden_state).split(1, dim=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_loss(start, end, start_positions, end_positions)
        return Seq2SeqQuestionAnsweringOutput(loss=loss, start_logits=start, end_logits=end, **_tail(out))


class DecoderWrapper(nn.Module):
    """Holds the decoder under ``decoder``, so a causal LM's keys are ``model.decoder.*`` as the
    reference's (and an encoder-decoder checkpoint's decoder loads into it)."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.decoder(*args, **kwargs)


class Seq2SeqCausalLM(nn.Module):
    """The decoder + ``lm_head`` (tied to its embeddings; no ``final_logits_bias``), as a
    decoder-only LM. Its config is set to ``is_decoder`` true and ``is_encoder_decoder``
    false (the object given is changed, as the reference does), so a save says so.

    ``encoder_hidden_states`` (B, S, d_model), with ``encoder_attention_mask``, turn the
    cross-attention on (the cache is then an EncoderDecoderCache); without them it is skipped.
    ``labels`` are the targets of the logits at the same positions: NOT shifted, as the
    reference 5.x computes this loss (pass ``input_ids`` moved one to the left, -100 at the end,
    for next-token prediction)."""

    decoder_class: ClassVar[type]
    forward_inputs = frozenset({"input_ids", "attention_mask", "encoder_hidden_states", "encoder_attention_mask",
                                "past_key_values", "use_cache", "labels", "output_hidden_states",
                                "logits_to_keep"})

    def __init__(self, config: Any) -> None:
        config.is_decoder = True   # on the config given, as the reference does
        config.is_encoder_decoder = False
        super().__init__(config)
        self.model = DecoderWrapper(self.decoder_class(config))
        self.lm_head = nn.Linear(config.d_model, self.model.decoder.embed_tokens.num_embeddings, bias=False)
        self.tied_weights = {"lm_head.weight": "model.decoder.embed_tokens.weight"}

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.decoder.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def get_decoder(self) -> nn.Module:
        return self.model.decoder

    def forward(self, input_ids=None, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
                past_key_values=None, use_cache=None, labels=None, output_hidden_states=None,
                logits_to_keep: int = 0) -> CausalLMOutput:
        """Logits (B, T or logits_to_keep, vocabulary); ``past_key_values``: a DynamicCache or
        StaticCache (an EncoderDecoderCache with ``encoder_hidden_states``) from an earlier
        step, whose length is where the new tokens' positions start."""
        out = self.model.decoder(input_ids, attention_mask, encoder_hidden_states, encoder_attention_mask,
                                 past_key_values, use_cache, output_hidden_states)
        logits = lm_logits(self.lm_head, out.last_hidden_state, logits_to_keep)
        loss = None if labels is None else token_loss(logits, labels.to(logits.device))
        return CausalLMOutput(loss=loss, logits=logits, past_key_values=out.past_key_values,
                              hidden_states=out.hidden_states)
