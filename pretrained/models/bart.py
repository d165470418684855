"""BART (``model_type: "bart"``; distilbart is BART with fewer decoder layers): the
encoder-decoder, its conditional-generation head (summarization), sequence classification and
question answering.

Post-LayerNorm layers, learned positions (offset 2), ``layernorm_embedding``; the blocks are
:mod:`pretrained.layers.bart_blocks`. Module names are the checkpoints'
(``model.encoder.layers.0.self_attn.k_proj.weight``, ``model.shared.weight``,
``final_logits_bias``). Without ``decoder_input_ids`` (or labels) the decoder reads
``input_ids`` shifted right, BART's denoising setup, as the reference does.

Example::

    >>> import torch
    >>> from pretrained.models.bart import BartConfig, BartForConditionalGeneration
    >>> cfg = BartConfig(vocab_size=100, d_model=32, encoder_layers=2, decoder_layers=2,
    ...                  encoder_attention_heads=4, decoder_attention_heads=4,
    ...                  encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64)
    >>> model = BartForConditionalGeneration.from_config(cfg).eval()
    >>> model(torch.tensor([[0, 5, 7, 2]]), decoder_input_ids=torch.tensor([[2, 0]])).logits.shape
    torch.Size([1, 2, 100])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import PretrainedConfig
from ..errors import InvalidInputError
from ..layers import (
    BartArch,
    ClassificationHead,
    eos_representation,
    Seq2SeqDecoder,
    Seq2SeqEncoder,
    Seq2SeqLM,
    Seq2SeqModel,
    Seq2SeqPreTrained,
    check_bart_config,
    sequence_classification_loss,
    shift_tokens_right,
    span_loss,
)
from ..modeling import PreTrainedModel
from ..outputs import Seq2SeqQuestionAnsweringOutput, Seq2SeqSequenceClassifierOutput


class BartConfig(PretrainedConfig):
    model_type = "bart"
    attribute_map = {"num_attention_heads": "encoder_attention_heads", "hidden_size": "d_model",
                     "num_hidden_layers": "encoder_layers"}

    vocab_size: int = 50265
    max_position_embeddings: int = 1024
    encoder_layers: int = 12
    encoder_ffn_dim: int = 4096
    encoder_attention_heads: int = 16
    decoder_layers: int = 12
    decoder_ffn_dim: int = 4096
    decoder_attention_heads: int = 16
    encoder_layerdrop: float = 0.0
    decoder_layerdrop: float = 0.0
    activation_function: str = "gelu"
    d_model: int = 1024
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    init_std: float = 0.02
    classifier_dropout: float = 0.0
    scale_embedding: bool = False
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | list | None = 2
    is_encoder_decoder: bool = True
    decoder_start_token_id: int | None = 2
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | list | None = 2

    def __init__(self, **kwargs: Any) -> None:
        if "id2label" not in kwargs and "num_labels" not in kwargs:
            kwargs["num_labels"] = 3   # the reference's default for BART (MNLI's three classes)
        super().__init__(**kwargs)

    def validate(self) -> None:
        check_bart_config(self)


class BartPreTrainedModel(Seq2SeqPreTrained, PreTrainedModel):
    config_class = BartConfig
    base_model_prefix = "model"
    arch = BartArch(normalize_before=False, learned_positions=True, embedding_norm=True, final_norm=False)
    # fairseq conversions carry a version counter per stack
    ignore_unexpected = (r"(^|\.)(encoder|decoder)\.version$",)


class BartEncoder(Seq2SeqEncoder, BartPreTrainedModel):
    """BART's encoder (``model.get_encoder()``)."""


class BartDecoder(Seq2SeqDecoder, BartPreTrainedModel):
    """BART's decoder: causal self-attention over its tokens, cross-attention over the encoder."""


class BartModel(Seq2SeqModel, BartPreTrainedModel):
    """The bare encoder-decoder: ``last_hidden_state`` (B, T_decoder, d_model) and
    ``encoder_last_hidden_state``."""

    encoder_class = BartEncoder
    decoder_class = BartDecoder

    def default_decoder_input_ids(self, input_ids: torch.Tensor | None) -> torch.Tensor | None:
        # BART alone among these falls back on the input shifted right (denoising pre-training)
        if input_ids is None:
            return None
        return shift_tokens_right(input_ids, self.config.pad_token_id, self.config.decoder_start_token_id)


class BartForConditionalGeneration(Seq2SeqLM, BartPreTrainedModel):
    """BartModel + ``lm_head`` tied to ``model.shared`` + ``final_logits_bias``: summarization,
    mask filling; ``generate()`` runs the encoder once."""

    model_class = BartModel


def _tail(out) -> dict:
    return {"decoder_hidden_states": out.decoder_hidden_states, "encoder_hidden_states": out.encoder_hidden_states,
            "encoder_last_hidden_state": out.encoder_last_hidden_state}


class BartForSequenceClassification(BartPreTrainedModel):
    """The decoder state at the last eos token -> ``classification_head`` (dense, tanh,
    out_proj); the loss follows ``config.problem_type``."""

    forward_inputs = frozenset({"input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask",
                                "encoder_outputs", "labels", "output_hidden_states"})

    def __init__(self, config: BartConfig) -> None:
        super().__init__(config)
        self.model = BartModel(config)
        self.tied_weights = self.model.tied_weights_under("model")
        self.classification_head = ClassificationHead(config.d_model, config.num_labels,
                                                      config.classifier_dropout, "tanh")

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, labels=None, output_hidden_states=None) -> Seq2SeqSequenceClassifierOutput:
        out = self.model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
                         use_cache=False, output_hidden_states=output_hidden_states)
        pooled = eos_representation(self.config.eos_token_id, input_ids, out.last_hidden_state,
                                    type(self).__name__)
        logits = self.classification_head(pooled[:, None])   # the head reads position 0
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels)
        return Seq2SeqSequenceClassifierOutput(loss=loss, logits=logits, **_tail(out))


class BartForQuestionAnswering(BartPreTrainedModel):
    """Span start/end logits over the decoder's positions (``qa_outputs``)."""

    forward_inputs = frozenset({"input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask",
                                "encoder_outputs", "start_positions", "end_positions", "output_hidden_states"})

    def __init__(self, config: BartConfig) -> None:
        config.num_labels = 2   # start and end, as the reference sets it
        super().__init__(config)
        self.model = BartModel(config)
        self.tied_weights = self.model.tied_weights_under("model")
        self.qa_outputs = nn.Linear(config.d_model, 2)

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, start_positions=None, end_positions=None,
                output_hidden_states=None) -> Seq2SeqQuestionAnsweringOutput:
        out = self.model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
                         use_cache=False, output_hidden_states=output_hidden_states)
        start, end = (x.squeeze(-1).contiguous() for x in self.qa_outputs(out.last_hidden_state).split(1, dim=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_loss(start, end, start_positions, end_positions)
        return Seq2SeqQuestionAnsweringOutput(loss=loss, start_logits=start, end_logits=end, **_tail(out))


MODEL_CLASSES = {
    "model": BartModel,
    "seq2seq-lm": BartForConditionalGeneration,
    "sequence-classification": BartForSequenceClassification,
    "question-answering": BartForQuestionAnswering,
}
