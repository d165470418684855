"""Mistral (``model_type: "mistral"``): Llama's blocks with a sliding attention window.

When ``sliding_window`` is set (4096 by default, null in later releases), every layer's
queries see only the ``sliding_window`` most recent positions, as in the reference.

Example::

    >>> import torch
    >>> from pretrained.models.mistral import MistralConfig, MistralForCausalLM
    >>> cfg = MistralConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    ...                     num_attention_heads=4, num_key_value_heads=2, sliding_window=4)
    >>> MistralForCausalLM.from_config(cfg)(torch.tensor([[1, 5, 7, 9, 11]])).logits.shape
    torch.Size([1, 5, 100])
"""

from __future__ import annotations

from .llama import LlamaFamilyConfig, LlamaForCausalLM, LlamaForSequenceClassification, LlamaModel


class MistralConfig(LlamaFamilyConfig):
    model_type = "mistral"

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 14336
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = 8
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 4096 * 32
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    pad_token_id: int | None = None
    bos_token_id: int | None = 1
    eos_token_id: int | list | None = 2
    tie_word_embeddings: bool = False
    rope_parameters: dict | None = None
    sliding_window: int | None = 4096
    attention_dropout: float = 0.0

    def attention_biases(self) -> tuple[bool, bool]:
        return False, False

    def layer_sliding_window(self, layer_idx: int) -> int | None:
        return self.sliding_window


class MistralModel(LlamaModel):
    config_class = MistralConfig


class MistralForCausalLM(LlamaForCausalLM):
    config_class = MistralConfig
    base_model_class = MistralModel


class MistralForSequenceClassification(LlamaForSequenceClassification):
    config_class = MistralConfig
    base_model_class = MistralModel


MODEL_CLASSES = {
    "model": MistralModel,
    "causal-lm": MistralForCausalLM,
    "sequence-classification": MistralForSequenceClassification,
}
