"""Qwen3 (``model_type: "qwen3"``): Llama's blocks with an RMSNorm over each query and key head
(``self_attn.q_norm`` / ``k_norm``) before the rotary embedding; ``head_dim`` defaults to 128
whatever the hidden size. Sliding windows as in Qwen2.

Example::

    >>> import torch
    >>> from pretrained.models.qwen3 import Qwen3Config, Qwen3ForCausalLM
    >>> cfg = Qwen3Config(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    ...                   num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    >>> Qwen3ForCausalLM.from_config(cfg)(torch.tensor([[1, 5, 7]])).logits.shape
    torch.Size([1, 3, 100])
"""

from __future__ import annotations

from .llama import LlamaFamilyConfig, LlamaForCausalLM, LlamaForSequenceClassification, LlamaModel
from .qwen2 import QwenSlidingWindowMixin


class Qwen3Config(QwenSlidingWindowMixin, LlamaFamilyConfig):
    model_type = "qwen3"

    vocab_size: int = 151936
    hidden_size: int = 4096
    intermediate_size: int = 22016
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = 32
    head_dim: int | None = 128
    hidden_act: str = "silu"
    max_position_embeddings: int = 32768
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    rope_parameters: dict | None = None
    attention_bias: bool = False
    use_sliding_window: bool = False
    sliding_window: int | None = 4096
    max_window_layers: int = 28
    layer_types: list | None = None
    attention_dropout: float = 0.0
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list | None = None

    def has_qk_norm(self) -> bool:
        return True


class Qwen3Model(LlamaModel):
    config_class = Qwen3Config


class Qwen3ForCausalLM(LlamaForCausalLM):
    config_class = Qwen3Config
    base_model_class = Qwen3Model


class Qwen3ForSequenceClassification(LlamaForSequenceClassification):
    config_class = Qwen3Config
    base_model_class = Qwen3Model


MODEL_CLASSES = {
    "model": Qwen3Model,
    "causal-lm": Qwen3ForCausalLM,
    "sequence-classification": Qwen3ForSequenceClassification,
}
