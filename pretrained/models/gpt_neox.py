"""GPT-NeoX / Pythia (``model_type: "gpt_neox"``).

LayerNorm decoder with rotary positions on the first ``partial_rotary_factor`` of each head
(``rotary_pct`` in older files, 0.25 by default) and, by default, a parallel residual:
``x + attn(ln1(x)) + mlp(ln2(x))``. The combined ``query_key_value`` projection keeps the
checkpoint's layout, which interleaves per head: each head's q, k and v are adjacent.
The vocabulary projection is ``embed_out``, the name checkpoints use.

Example::

    >>> import torch
    >>> from pretrained.models.gpt_neox import GPTNeoXConfig, GPTNeoXForCausalLM
    >>> cfg = GPTNeoXConfig(vocab_size=100, hidden_size=32, intermediate_size=64,
    ...                     num_hidden_layers=2, num_attention_heads=4)
    >>> GPTNeoXForCausalLM.from_config(cfg)(torch.tensor([[1, 5, 7]])).logits.shape
    torch.Size([1, 3, 100])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..config import PretrainedConfig
from ..layers import (
    RotaryEmbedding,
    activation,
    apply_rotary,
    causal_lm_loss,
    causal_mask,
    grouped_attention,
    last_token_logits,
    lm_logits,
    packed_segments,
    prepare_decoder_inputs,
    sequence_classification_output,
    standardize_rope_parameters,
)
from ..modeling import PreTrainedModel
from ..outputs import BaseModelOutput, CausalLMOutput, SequenceClassifierOutput

if TYPE_CHECKING:
    from ..cache import Cache


class GPTNeoXConfig(PretrainedConfig):
    model_type = "gpt_neox"

    vocab_size: int = 50432
    hidden_size: int = 6144
    num_hidden_layers: int = 44
    num_attention_heads: int = 64
    intermediate_size: int = 24576
    hidden_act: str = "gelu"
    attention_dropout: float = 0.0
    hidden_dropout: float = 0.0
    classifier_dropout: float = 0.1
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5
    bos_token_id: int | None = 0
    eos_token_id: int | list | None = 2
    pad_token_id: int | None = None
    tie_word_embeddings: bool = False
    use_parallel_residual: bool = True
    rope_parameters: dict | None = None
    attention_bias: bool = True

    def validate(self) -> None:
        for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "max_position_embeddings"):
            self._require(getattr(self, key) > 0, f"{key} must be > 0, got {getattr(self, key)}")
        self._require(self.hidden_size % self.num_attention_heads == 0,
                      f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                      f"{self.num_attention_heads}")
        activation(self.hidden_act)
        # Older files: rotary_pct, rotary_emb_base, rope_scaling; newer: rope_parameters.
        pct = getattr(self, "rotary_pct", None)
        self.rope_parameters = standardize_rope_parameters(
            self.rope_parameters, rope_scaling=getattr(self, "rope_scaling", None),
            rope_theta=getattr(self, "rotary_emb_base", None),
            partial_rotary_factor=0.25 if pct is None else pct,
            max_position_embeddings=self.max_position_embeddings, owner="GPTNeoXConfig")
        prf = self.rope_parameters["partial_rotary_factor"]
        self._require(isinstance(prf, (int, float)) and 0 < prf <= 1,
                      f"partial_rotary_factor (rotary_pct) must be in (0, 1], got {prf!r}")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads


class GPTNeoXAttention(nn.Module):
    def __init__(self, config: GPTNeoXConfig, layer_idx: int) -> None:
        super().__init__()
        h = config.hidden_size
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.head_size = config.head_size
        self.scale = self.head_size ** -0.5
        self.dropout = config.attention_dropout
        self.query_key_value = nn.Linear(h, 3 * h, bias=config.attention_bias)
        self.dense = nn.Linear(h, h, bias=config.attention_bias)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None, cache: Cache | None) -> torch.Tensor:
        b, t, _ = x.shape
        # (B, T, heads, [q | k | v]) -> three (B, heads, T, head_size)
        qkv = self.query_key_value(x).view(b, t, self.num_heads, 3 * self.head_size).transpose(1, 2)
        q, k, v = qkv.chunk(3, dim=-1)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)
        p = self.dropout if self.training else 0.0
        return self.dense(grouped_attention(q, k, v, mask, scale=self.scale, dropout=p))


class GPTNeoXMLP(nn.Module):
    def __init__(self, config: GPTNeoXConfig) -> None:
        super().__init__()
        self.dense_h_to_4h = nn.Linear(config.hidden_size, config.intermediate_size)
        self.dense_4h_to_h = nn.Linear(config.intermediate_size, config.hidden_size)
        self.act = activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense_4h_to_h(self.act(self.dense_h_to_4h(x)))


class GPTNeoXLayer(nn.Module):
    def __init__(self, config: GPTNeoXConfig, layer_idx: int) -> None:
        super().__init__()
        self.use_parallel_residual = config.use_parallel_residual
        self.input_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_attention_dropout = nn.Dropout(config.hidden_dropout)
        self.post_mlp_dropout = nn.Dropout(config.hidden_dropout)
        self.attention = GPTNeoXAttention(config, layer_idx)
        self.mlp = GPTNeoXMLP(config)

    def forward(self, x, cos, sin, mask, cache):
        a = self.post_attention_dropout(self.attention(self.input_layernorm(x), cos, sin, mask, cache))
        if self.use_parallel_residual:  # both branches read the same input
            return self.post_mlp_dropout(self.mlp(self.post_attention_layernorm(x))) + a + x
        a = a + x
        return self.post_mlp_dropout(self.mlp(self.post_attention_layernorm(a))) + a


class GPTNeoXPreTrainedModel(PreTrainedModel):
    config_class = GPTNeoXConfig
    base_model_prefix = "gpt_neox"
    # Old checkpoints store causal-mask buffers and rotary frequencies; we compute them.
    ignore_unexpected = (r"attention\.(masked_)?bias$", r"rotary_emb\.inv_freq$")


class GPTNeoXModel(GPTNeoXPreTrainedModel):
    """The bare decoder: ``last_hidden_state`` (B, T, hidden) after the final LayerNorm."""

    def __init__(self, config: GPTNeoXConfig) -> None:
        super().__init__(config)
        self.embed_in = nn.Embedding(config.vocab_size, config.hidden_size)
        self.emb_dropout = nn.Dropout(config.hidden_dropout)
        self.layers = nn.ModuleList(GPTNeoXLayer(config, i) for i in range(config.num_hidden_layers))
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.rotary_emb = RotaryEmbedding(config.rope_parameters, config.head_size,
                                          config.max_position_embeddings)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_in

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> BaseModelOutput:
        cache, past, b, t, input_ids, position_ids = prepare_decoder_inputs(
            self, input_ids, inputs_embeds, attention_mask, position_ids, past_key_values, use_cache)
        x = self.embed_in(input_ids) if inputs_embeds is None else inputs_embeds
        x = self.emb_dropout(x)
        packed = packed_segments(position_ids, b) if cache is None and attention_mask is None else None
        mask = causal_mask(attention_mask, q_len=t, past_len=past, segments=packed,
                           kv_len=cache.kv_length(t) if cache is not None else t, device=x.device)
        cos, sin = self.rotary_emb(position_ids, x.dtype)
        keep = output_hidden_states if output_hidden_states is not None \
            else self.config.output_hidden_states
        states = [x] if keep else None
        for layer in self.layers:
            x = layer(x, cos, sin, mask, cache)
            if states is not None:
                states.append(x)
        x = self.final_layer_norm(x)
        if states is not None:
            states[-1] = x
        return BaseModelOutput(last_hidden_state=x, past_key_values=cache,
                               hidden_states=tuple(states) if states else None)


class GPTNeoXForCausalLM(GPTNeoXPreTrainedModel):
    """Decoder + vocabulary projection ``embed_out`` (untied unless ``tie_word_embeddings``)."""

    tied_weights = {"embed_out.weight": "gpt_neox.embed_in.weight"}
    forward_inputs = frozenset({"input_ids", "attention_mask", "position_ids", "past_key_values", "inputs_embeds",
                                "labels", "use_cache", "output_hidden_states", "logits_to_keep"})

    def __init__(self, config: GPTNeoXConfig) -> None:
        super().__init__(config)
        self.gpt_neox = GPTNeoXModel(config)
        self.embed_out = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def get_output_embeddings(self) -> nn.Linear:
        return self.embed_out

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        logits_to_keep: int = 0,
    ) -> CausalLMOutput:
        out = self.gpt_neox(input_ids, attention_mask, position_ids, past_key_values,
                            inputs_embeds, use_cache, output_hidden_states)
        logits = lm_logits(self.embed_out, out.last_hidden_state, logits_to_keep)
        loss = None if labels is None else causal_lm_loss(logits, labels)
        return CausalLMOutput(loss=loss, logits=logits, past_key_values=out.past_key_values,
                              hidden_states=out.hidden_states)


class GPTNeoXForSequenceClassification(GPTNeoXPreTrainedModel):
    """Scores the last non-padding token of each sequence (needs ``pad_token_id`` for batches)."""

    def __init__(self, config: GPTNeoXConfig) -> None:
        super().__init__(config)
        self.gpt_neox = GPTNeoXModel(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                labels=None, output_hidden_states=None) -> SequenceClassifierOutput:
        out = self.gpt_neox(input_ids, attention_mask, position_ids, None, inputs_embeds, False,
                            output_hidden_states)
        pooled = last_token_logits(self.config, self.score(out.last_hidden_state), input_ids)
        return sequence_classification_output(self.config, pooled, labels, out)


MODEL_CLASSES = {
    "model": GPTNeoXModel,
    "causal-lm": GPTNeoXForCausalLM,
    "sequence-classification": GPTNeoXForSequenceClassification,
}
