"""mBART (``model_type: "mbart"``, multilingual BART: mbart-large-cc25/-50, many translators):
the encoder-decoder, its conditional-generation head, sequence classification and question
answering (BART's heads) and the decoder alone as a causal LM (``MBartForCausalLM``).

BART with LayerNorm before each sublayer, a final ``layer_norm`` on both stacks (besides
``layernorm_embedding``); the blocks are :mod:`pretrained.layers.bart_blocks`. mBART sequences
end with a language code, and the decoder inputs made from labels (or, with neither, from
``input_ids``) start with that code: the last non-padding token wrapped to the front, as the
reference does (``decoder_start_token_id`` is unset in these configs).

Example::

    >>> import torch
    >>> from pretrained.models.mbart import MBartConfig, MBartForConditionalGeneration
    >>> cfg = MBartConfig(vocab_size=100, d_model=32, encoder_layers=2, decoder_layers=2,
    ...                   encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
    ...                   decoder_ffn_dim=64, max_position_embeddings=64)
    >>> model = MBartForConditionalGeneration.from_config(cfg).eval()
    >>> model(torch.tensor([[5, 7, 2, 50]]), labels=torch.tensor([[8, 9, 2, 60]])).logits.shape
    torch.Size([1, 4, 100])
"""

from __future__ import annotations

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
    shift_tokens_right_wrapped,
)
from ..modeling import PreTrainedModel


class MBartConfig(PretrainedConfig):
    model_type = "mbart"
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
    is_encoder_decoder: bool = True
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
    decoder_start_token_id: int | None = None
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | list | None = 2

    def validate(self) -> None:
        check_bart_config(self)


class MBartPreTrainedModel(Seq2SeqPreTrained, PreTrainedModel):
    config_class = MBartConfig
    base_model_prefix = "model"
    arch = BartArch(normalize_before=True, learned_positions=True, embedding_norm=True, final_norm=True)


class MBartEncoder(Seq2SeqEncoder, MBartPreTrainedModel):
    """mBART's encoder (``model.get_encoder()``)."""


class MBartDecoder(Seq2SeqDecoder, MBartPreTrainedModel):
    """mBART's decoder."""


class MBartModel(Seq2SeqModel, MBartPreTrainedModel):
    """The bare encoder-decoder: ``last_hidden_state`` (B, T_decoder, d_model)."""

    encoder_class = MBartEncoder
    decoder_class = MBartDecoder

    def default_decoder_input_ids(self, input_ids: torch.Tensor | None) -> torch.Tensor | None:
        # as BART, the input shifted right; mBART's start token is the language code at its end
        return None if input_ids is None else shift_tokens_right_wrapped(input_ids, self.config.pad_token_id)


class MBartForConditionalGeneration(Seq2SeqLM, MBartPreTrainedModel):
    """MBartModel + ``lm_head`` tied to ``model.shared`` + ``final_logits_bias``: translation,
    summarization (``forced_bos_token_id`` picks the target language in ``generate()``)."""

    model_class = MBartModel

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right_wrapped(labels, self.config.pad_token_id)


class MBartForSequenceClassification(Seq2SeqSequenceClassification, MBartPreTrainedModel):
    """The decoder state at the last eos token -> ``classification_head``, as BART's."""

    model_class = MBartModel


class MBartForQuestionAnswering(Seq2SeqQuestionAnswering, MBartPreTrainedModel):
    """Span start/end logits over the decoder's positions (``qa_outputs``), as BART's."""

    model_class = MBartModel


class MBartForCausalLM(Seq2SeqCausalLM, MBartPreTrainedModel):
    """mBART's decoder alone + ``lm_head`` tied to its embeddings: a decoder-only LM (keys
    ``model.decoder.*``), cross-attending to ``encoder_hidden_states`` when given."""

    decoder_class = MBartDecoder


MODEL_CLASSES = {
    "model": MBartModel,
    "seq2seq-lm": MBartForConditionalGeneration,
    "sequence-classification": MBartForSequenceClassification,
    "question-answering": MBartForQuestionAnswering,
    "causal-lm": MBartForCausalLM,
}
