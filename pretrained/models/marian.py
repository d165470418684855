"""MarianMT (``model_type: "marian"``, the Helsinki-NLP opus-mt translators): the encoder-decoder,
its translation head and the decoder alone as a causal LM (``MarianForCausalLM``).

BART's post-LayerNorm layers with the fixed sinusoidal positions (no table in the state: the
checkpoints' copies are ignored, their values are the same), scaled embeddings and no
``layernorm_embedding``; the blocks are :mod:`pretrained.layers.bart_blocks`. The target side may
have a vocabulary of its own (``share_encoder_decoder_embeddings: false``,
``decoder_vocab_size``): then there is no ``model.shared``, and ``lm_head`` is tied to the
decoder's embeddings. ``final_logits_bias`` is trained in these checkpoints (it masks the pad
token). Decoding starts from the pad token (``decoder_start_token_id``).

Example::

    >>> import torch
    >>> from pretrained.models.marian import MarianConfig, MarianMTModel
    >>> cfg = MarianConfig(vocab_size=100, d_model=32, encoder_layers=2, decoder_layers=2,
    ...                    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
    ...                    decoder_ffn_dim=64, max_position_embeddings=64, pad_token_id=99,
    ...                    decoder_start_token_id=99)
    >>> model = MarianMTModel.from_config(cfg).eval()
    >>> model(torch.tensor([[5, 7, 0]]), decoder_input_ids=torch.tensor([[99, 4]])).logits.shape
    torch.Size([1, 2, 100])
"""

from __future__ import annotations

from typing import Any

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


class MarianConfig(PretrainedConfig):
    model_type = "marian"
    attribute_map = {"num_attention_heads": "encoder_attention_heads", "hidden_size": "d_model",
                     "num_hidden_layers": "encoder_layers"}

    vocab_size: int = 58101
    decoder_vocab_size: int | None = None
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
    decoder_start_token_id: int | None = 58100
    scale_embedding: bool = False
    pad_token_id: int | None = 58100
    eos_token_id: int | list | None = 0
    bos_token_id: int | None = None
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | list | None = 0
    share_encoder_decoder_embeddings: bool = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.decoder_vocab_size is None:   # as the reference: one vocabulary unless told
            self.decoder_vocab_size = self.vocab_size

    def validate(self) -> None:
        check_bart_config(self)
        if self.decoder_vocab_size is not None:
            self._require(self.decoder_vocab_size > 0,
                          f"decoder_vocab_size must be > 0, got {self.decoder_vocab_size}")


class MarianPreTrainedModel(Seq2SeqPreTrained, PreTrainedModel):
    config_class = MarianConfig
    base_model_prefix = "model"
    arch = BartArch(normalize_before=False, learned_positions=False, embedding_norm=False, final_norm=False)
    # the fixed sinusoidal tables some checkpoints store: computed here, never loaded
    ignore_unexpected = (r"(^|\.)embed_positions\.weight$",)


class MarianEncoder(Seq2SeqEncoder, MarianPreTrainedModel):
    """Marian's encoder (``model.get_encoder()``)."""


class MarianDecoder(Seq2SeqDecoder, MarianPreTrainedModel):
    """Marian's decoder, over its own target vocabulary when it has one."""


class MarianModel(Seq2SeqModel, MarianPreTrainedModel):
    """The bare encoder-decoder: ``last_hidden_state`` (B, T_decoder, d_model); the decoder
    inputs must be given (Marian has no denoising fallback)."""

    encoder_class = MarianEncoder
    decoder_class = MarianDecoder


class MarianMTModel(Seq2SeqLM, MarianPreTrainedModel):
    """MarianModel + ``lm_head`` + ``final_logits_bias``: translation."""

    model_class = MarianModel


class MarianForCausalLM(Seq2SeqCausalLM, MarianPreTrainedModel):
    """Marian's decoder alone + ``lm_head`` tied to its embeddings: a decoder-only LM (keys
    ``model.decoder.*``), cross-attending to ``encoder_hidden_states`` when given."""

    decoder_class = MarianDecoder


MODEL_CLASSES = {
    "model": MarianModel,
    "seq2seq-lm": MarianMTModel,
    "causal-lm": MarianForCausalLM,
}
