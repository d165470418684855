"""BART (``model_type: "bart"``; distilbart is BART with fewer decoder layers): the
encoder-decoder, its conditional-generation head (summarization), sequence classification,
question answering and the decoder alone as a causal LM (``BartForCausalLM``).

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

from ..config import PretrainedConfig
from ..layers import (
    BartArch,
    Seq2SeqCausalLM,
    Seq2SeqDecoder,
    Seq2SeqEncoder,
    Seq2SeqLM,
    Seq2SeqModel,
    Seq2SeqPreTrained,
    Seq2SeqQuestionAnswering,
    Seq2SeqSequenceClassification,
    check_bart_config,
    shift_tokens_right,
)
from ..modeling import PreTrainedModel


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


class BartForSequenceClassification(Seq2SeqSequenceClassification, BartPreTrainedModel):
    """The decoder state at the last eos token -> ``classification_head`` (dense, tanh,
    out_proj); the loss follows ``config.problem_type``."""

    model_class = BartModel


class BartForQuestionAnswering(Seq2SeqQuestionAnswering, BartPreTrainedModel):
    """Span start/end logits over the decoder's positions (``qa_outputs``)."""

    model_class = BartModel


class BartForCausalLM(Seq2SeqCausalLM, BartPreTrainedModel):
    """BART's decoder alone + ``lm_head`` tied to its embeddings: a decoder-only LM (keys
    ``model.decoder.*``), cross-attending to ``encoder_hidden_states`` when given."""

    decoder_class = BartDecoder


MODEL_CLASSES = {
    "model": BartModel,
    "seq2seq-lm": BartForConditionalGeneration,
    "sequence-classification": BartForSequenceClassification,
    "question-answering": BartForQuestionAnswering,
    "causal-lm": BartForCausalLM,
}
