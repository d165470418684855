"""Qwen2 (``model_type: "qwen2"``): Llama's blocks with biases on the q/k/v projections (none
on the output projection) and optional sliding-window layers.

Sliding windows apply only with ``use_sliding_window: true``, to the layers ``layer_types``
marks "sliding_attention" (by default those from ``max_window_layers`` on), as in the reference.

Example::

    >>> import torch
    >>> from pretrained.models.qwen2 import Qwen2Config, Qwen2ForCausalLM
    >>> cfg = Qwen2Config(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    ...                   num_attention_heads=4, num_key_value_heads=2)
    >>> Qwen2ForCausalLM.from_config(cfg)(torch.tensor([[1, 5, 7]])).logits.shape
    torch.Size([1, 3, 100])
"""

from __future__ import annotations

from .llama import LlamaFamilyConfig, LlamaForCausalLM, LlamaForSequenceClassification, LlamaModel


class QwenSlidingWindowMixin:
    """Which layers use a sliding window, the Qwen way (``use_sliding_window``,
    ``max_window_layers``, ``layer_types``)."""

    def layer_types_resolved(self) -> list[str]:
        if self.layer_types is not None:
            return list(self.layer_types)
        on = self.use_sliding_window and self.sliding_window is not None
        return ["sliding_attention" if on and i >= self.max_window_layers else "full_attention"
                for i in range(self.num_hidden_layers)]

    def layer_sliding_window(self, layer_idx: int) -> int | None:
        kind = self.layer_types_resolved()[layer_idx]
        return self.sliding_window if kind == "sliding_attention" else None

    def validate(self) -> None:
        types = self.layer_types_resolved()
        self._require(len(types) == self.num_hidden_layers,
                      f"layer_types lists {len(types)} layers but num_hidden_layers is "
                      f"{self.num_hidden_layers}")
        self._require(set(types) <= {"full_attention", "sliding_attention"},
                      f"layer_types may hold 'full_attention' and 'sliding_attention', got {types}")
        self._require("sliding_attention" not in types or (
            self.use_sliding_window and self.sliding_window is not None),
            "layer_types marks sliding_attention layers but use_sliding_window is false or "
            "sliding_window is null; set both, or mark the layers full_attention")
        super().validate()


class Qwen2Config(QwenSlidingWindowMixin, LlamaFamilyConfig):
    model_type = "qwen2"

    vocab_size: int = 151936
    hidden_size: int = 4096
    intermediate_size: int = 22016
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = 32
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 32768
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    rope_parameters: dict | None = None
    use_sliding_window: bool = False
    sliding_window: int | None = 4096
    max_window_layers: int = 28
    layer_types: list | None = None
    attention_dropout: float = 0.0
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list | None = None

    def attention_biases(self) -> tuple[bool, bool]:
        return True, False


class Qwen2Model(LlamaModel):
    config_class = Qwen2Config


class Qwen2ForCausalLM(LlamaForCausalLM):
    config_class = Qwen2Config
    base_model_class = Qwen2Model


class Qwen2ForSequenceClassification(LlamaForSequenceClassification):
    config_class = Qwen2Config
    base_model_class = Qwen2Model


MODEL_CLASSES = {
    "model": Qwen2Model,
    "causal-lm": Qwen2ForCausalLM,
    "sequence-classification": Qwen2ForSequenceClassification,
}
