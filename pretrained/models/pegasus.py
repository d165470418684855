"""Pegasus (``model_type: "pegasus"``, google/pegasus-*: summarization): the encoder-decoder,
its conditional-generation head and the decoder alone as a causal LM (``PegasusForCausalLM``).

LayerNorm before each sublayer and a final ``layer_norm`` on both stacks (as mBART), the fixed
sinusoidal positions and scaled embeddings (as Marian, the table holds no state), no
``layernorm_embedding``; the blocks are :mod:`pretrained.layers.bart_blocks`. Decoding starts
from the pad token (id 0).

Example::

    >>> import torch
    >>> from pretrained.models.pegasus import PegasusConfig, PegasusForConditionalGeneration
    >>> cfg = PegasusConfig(vocab_size=100, d_model=32, encoder_layers=2, decoder_layers=2,
    ...                     encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
    ...                     decoder_ffn_dim=64, max_position_embeddings=64)
    >>> model = PegasusForConditionalGeneration.from_config(cfg).eval()
    >>> model(torch.tensor([[5, 7, 1]]), decoder_input_ids=torch.tensor([[0, 4]])).logits.shape
    torch.Size([1, 2, 100])
"""

from __future__ import annotations

from ..config import PretrainedConfig
from ..layers import (
    BartArch,
    Seq2SeqCausalLM,
    Seq2SeqDecoder,
    Seq2SeqEncoder,
    Seq2SeqLM,
    Seq2SeqModel,
    Seq2SeqPreTrained,
    check_bart_config,
)
from ..modeling import PreTrainedModel


class PegasusConfig(PretrainedConfig):
    model_type = "pegasus"
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
    decoder_start_token_id: int | None = 0
    scale_embedding: bool = False
    pad_token_id: int | None = 0
    eos_token_id: int | list | None = 1
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | list | None = 1

    def validate(self) -> None:
        check_bart_config(self)


class PegasusPreTrainedModel(Seq2SeqPreTrained, PreTrainedModel):
    config_class = PegasusConfig
    base_model_prefix = "model"
    arch = BartArch(normalize_before=True, learned_positions=False, embedding_norm=False, final_norm=True)
    # the fixed sinusoidal tables the checkpoints store: computed here, never loaded
    ignore_unexpected = (r"(^|\.)embed_positions\.weight$",)


class PegasusEncoder(Seq2SeqEncoder, PegasusPreTrainedModel):
    """Pegasus's encoder (``model.get_encoder()``)."""


class PegasusDecoder(Seq2SeqDecoder, PegasusPreTrainedModel):
    """Pegasus's decoder."""


class PegasusModel(Seq2SeqModel, PegasusPreTrainedModel):
    """The bare encoder-decoder: ``last_hidden_state`` (B, T_decoder, d_model); the decoder
    inputs must be given."""

    encoder_class = PegasusEncoder
    decoder_class = PegasusDecoder


class PegasusForConditionalGeneration(Seq2SeqLM, PegasusPreTrainedModel):
    """PegasusModel + ``lm_head`` tied to ``model.shared`` + ``final_logits_bias``: summarization."""

    model_class = PegasusModel


class PegasusForCausalLM(Seq2SeqCausalLM, PegasusPreTrainedModel):
    """Pegasus's decoder alone + ``lm_head`` tied to its embeddings: a decoder-only LM (keys
    ``model.decoder.*``), cross-attending to ``encoder_hidden_states`` when given."""

    decoder_class = PegasusDecoder


MODEL_CLASSES = {
    "model": PegasusModel,
    "seq2seq-lm": PegasusForConditionalGeneration,
    "causal-lm": PegasusForCausalLM,
}
