"""Llama (``model_type: "llama"``) and the blocks its family shares (mistral, qwen2, qwen3).

Pre-norm decoder: RMSNorm -> attention with rotary positions and grouped-query heads ->
residual -> RMSNorm -> SwiGLU MLP -> residual. Module names equal the checkpoint's
(``model.layers.0.self_attn.q_proj.weight``), so files load and save unchanged. What differs
between family members (biases, q/k norms, sliding windows, config defaults) is asked of the
config class (:class:`LlamaFamilyConfig`), so mistral.py, qwen2.py and qwen3.py only declare
their configs and name their classes.

Example::

    >>> import torch
    >>> from pretrained.models.llama import LlamaConfig, LlamaForCausalLM
    >>> cfg = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64,
    ...                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    >>> model = LlamaForCausalLM.from_config(cfg).eval()
    >>> out = model(torch.tensor([[1, 5, 7]]))
    >>> out.logits.shape, out.past_key_values.get_seq_length()
    (torch.Size([1, 3, 100]), 3)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from ..config import PretrainedConfig
from ..layers import (
    RMSNorm,
    RotaryEmbedding,
    activation,
    causal_lm_loss,
    causal_mask,
    grouped_attention,
    init_normal_,
    last_token_logits,
    lm_logits,
    packed_segments,
    prepare_decoder_inputs,
    sequence_classification_output,
    standardize_rope_parameters,
)
from ..layers.decoder_stack import DecoderLayers
from ..modeling import PreTrainedModel
from ..outputs import BaseModelOutput, CausalLMOutput, SequenceClassifierOutput

if TYPE_CHECKING:
    from ..cache import Cache


# --- config -----------------------------------------------------------------------------------
class LlamaFamilyConfig(PretrainedConfig):
    """What the shared blocks ask of a config. Subclasses declare the fields and defaults of
    their ``config.json`` and override the methods below where their architecture differs."""

    def attention_biases(self) -> tuple[bool, bool]:
        """(bias on q/k/v projections, bias on the output projection)"""
        return self.attention_bias, self.attention_bias

    def mlp_has_bias(self) -> bool:
        return getattr(self, "mlp_bias", False)

    def has_qk_norm(self) -> bool:
        """Qwen3 normalises each query/key head (RMSNorm over head_dim) before RoPE."""
        return False

    def layer_sliding_window(self, layer_idx: int) -> int | None:
        """Keys a query of this layer may see (None: all)."""
        return None

    def validate(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                    "num_attention_heads", "num_key_value_heads", "max_position_embeddings"):
            self._require(getattr(self, key) > 0, f"{key} must be > 0, got {getattr(self, key)}")
        if self.head_dim is None:
            self._require(self.hidden_size % self.num_attention_heads == 0,
                          f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                          f"{self.num_attention_heads}; set head_dim or fix the sizes")
            self.head_dim = self.hidden_size // self.num_attention_heads
        self._require(self.head_dim > 0 and self.head_dim % 2 == 0,
                      f"head_dim must be a positive even number (rotary pairs), got {self.head_dim}")
        self._require(self.num_attention_heads % self.num_key_value_heads == 0,
                      f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                      f"num_key_value_heads {self.num_key_value_heads}")
        activation(self.hidden_act)
        # Older files: rope_theta / rope_scaling; newer: rope_parameters. Keep one dict.
        self.rope_parameters = standardize_rope_parameters(
            self.rope_parameters, rope_scaling=getattr(self, "rope_scaling", None),
            rope_theta=getattr(self, "rope_theta", None),
            max_position_embeddings=self.max_position_embeddings, owner=type(self).__name__)
        self.rope_parameters.pop("partial_rotary_factor", None)  # the family rotates whole heads
        for layer in range(self.num_hidden_layers):
            w = self.layer_sliding_window(layer)
            self._require(w is None or (isinstance(w, int) and w > 0),
                          f"sliding_window must be a positive int or null, got {w!r}")


class LlamaConfig(LlamaFamilyConfig):
    model_type = "llama"

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    pad_token_id: int | None = None
    bos_token_id: int | None = 1
    eos_token_id: int | list | None = 2
    pretraining_tp: int | None = 1
    tie_word_embeddings: bool = False
    rope_parameters: dict | None = None
    attention_bias: bool = False
    attention_dropout: float = 0.0
    mlp_bias: bool = False
    head_dim: int | None = None

    def validate(self) -> None:
        # The reference refuses this even when head_dim is given.
        self._require(self.num_attention_heads > 0 and self.hidden_size % self.num_attention_heads == 0,
                      f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                      f"{self.num_attention_heads}")
        super().validate()


# --- blocks -----------------------------------------------------------------------------------
class LlamaAttention(nn.Module):
    def __init__(self, config: LlamaFamilyConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = hd = config.head_dim
        self.scale = hd ** -0.5
        self.dropout = config.attention_dropout
        self.sliding_window = config.layer_sliding_window(layer_idx)
        qkv_bias, o_bias = config.attention_biases()
        h = config.hidden_size
        self.q_proj = nn.Linear(h, self.num_heads * hd, bias=qkv_bias)
        self.k_proj = nn.Linear(h, self.num_kv_heads * hd, bias=qkv_bias)
        self.v_proj = nn.Linear(h, self.num_kv_heads * hd, bias=qkv_bias)
        self.o_proj = nn.Linear(self.num_heads * hd, h, bias=o_bias)
        if config.has_qk_norm():
            self.q_norm = RMSNorm(hd, eps=config.rms_norm_eps)
            self.k_norm = RMSNorm(hd, eps=config.rms_norm_eps)
        else:
            self.q_norm = self.k_norm = None

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None, cache: Cache | None) -> torch.Tensor:
        """x (B, T, hidden); cos/sin (B, T, 1, head_dim); returns the attention output."""
        b, t, _ = x.shape
        nh, nkv, hd = self.num_heads, self.num_kv_heads, self.head_dim
        # heads on axis 2: (B, T, heads, hd); for one token (decoding) on axis 1, where
        # (B, heads, 1, hd) is already the layout attention takes (no transposes)
        axis, shape = (1, (b, -1, 1, hd)) if t == 1 else (2, (b, t, -1, hd))
        q, k, v = (p(x).view(shape) for p in (self.q_proj, self.k_proj, self.v_proj))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        qk = torch.cat((q, k), axis)   # q and k rotate together
        qk = qk * cos + qk.roll(hd // 2, -1) * sin
        q, k = qk.split((nh, nkv), axis)
        if t > 1:
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)
        p = self.dropout if self.training else 0.0
        return self.o_proj(grouped_attention(q, k, v, mask, scale=self.scale, dropout=p))


class LlamaMLP(nn.Module):
    def __init__(self, config: LlamaFamilyConfig) -> None:
        super().__init__()
        h, i, bias = config.hidden_size, config.intermediate_size, config.mlp_has_bias()
        self.gate_proj = nn.Linear(h, i, bias=bias)
        self.up_proj = nn.Linear(h, i, bias=bias)
        self.down_proj = nn.Linear(i, h, bias=bias)
        self.act_fn = activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """down(act(gate(x)) * up(x))"""
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config: LlamaFamilyConfig, layer_idx: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.self_attn = LlamaAttention(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.mlp = LlamaMLP(config)

    def forward(self, x, cos, sin, mask, cache):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


# --- models -----------------------------------------------------------------------------------
class LlamaPreTrainedModel(PreTrainedModel):
    config_class = LlamaConfig
    base_model_prefix = "model"
    ignore_unexpected = (r"rotary_emb\.inv_freq$",)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)
        else:
            init_normal_(module, self.config.initializer_range)


class LlamaModel(LlamaPreTrainedModel):
    """The bare decoder: ``last_hidden_state`` (B, T, hidden) after the final norm."""

    def __init__(self, config: LlamaFamilyConfig) -> None:
        super().__init__(config)
        pad = config.pad_token_id
        pad = pad if isinstance(pad, int) and 0 <= pad < config.vocab_size else None
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=pad)
        self.layers = DecoderLayers(LlamaDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config.rope_parameters, config.head_dim,
                                          config.max_position_embeddings)
        # one mask per distinct window (None: full causal attention)
        self._layer_windows = tuple(layer.self_attn.sliding_window for layer in self.layers)
        self._windows = tuple(dict.fromkeys(self._layer_windows))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

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
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        kv_len = cache.kv_length(t) if cache is not None else t
        packed = packed_segments(position_ids, b) if cache is None and attention_mask is None else None
        masks = {w: causal_mask(attention_mask, q_len=t, past_len=past, kv_len=kv_len,
                                sliding_window=w, segments=packed, device=x.device)
                 for w in self._windows}
        # (B, T, 1, hd): heads follow positions in the attention's layout
        cos, sin = (c.transpose(1, 2) for c in self.rotary_emb(position_ids, x.dtype))
        keep = output_hidden_states if output_hidden_states is not None \
            else self.config.output_hidden_states
        states = [x] if keep else None
        x = self.layers(x, cos, sin, [masks[w] for w in self._layer_windows], cache, states)
        x = self.norm(x)
        if states is not None:
            states[-1] = x  # the reference reports the last state after the final norm
        return BaseModelOutput(last_hidden_state=x, past_key_values=cache,
                               hidden_states=tuple(states) if states else None)


class LlamaForCausalLM(LlamaPreTrainedModel):
    """Decoder + vocabulary projection (tied to the input embeddings when
    ``tie_word_embeddings``)."""

    base_model_class: ClassVar[type[LlamaModel]] = LlamaModel
    tied_weights = {"lm_head.weight": "model.embed_tokens.weight"}
    forward_inputs = frozenset({"input_ids", "attention_mask", "position_ids", "past_key_values", "inputs_embeds",
                                "labels", "use_cache", "output_hidden_states", "logits_to_keep"})

    def __init__(self, config: LlamaFamilyConfig) -> None:
        super().__init__(config)
        self.model = self.base_model_class(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

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
        """Logits (B, T or logits_to_keep, vocab); ``labels`` (B, T) give the next-token loss
        (-100 is ignored); the cache is returned in ``past_key_values``."""
        out = self.model(input_ids, attention_mask, position_ids, past_key_values, inputs_embeds,
                         use_cache, output_hidden_states)
        logits = lm_logits(self.lm_head, out.last_hidden_state, logits_to_keep)
        loss = None if labels is None else causal_lm_loss(logits, labels)
        return CausalLMOutput(loss=loss, logits=logits, past_key_values=out.past_key_values,
                              hidden_states=out.hidden_states)


class LlamaForSequenceClassification(LlamaPreTrainedModel):
    """Scores the last non-padding token of each sequence (needs ``pad_token_id`` for batches)."""

    base_model_class: ClassVar[type[LlamaModel]] = LlamaModel

    def __init__(self, config: LlamaFamilyConfig) -> None:
        super().__init__(config)
        self.model = self.base_model_class(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                labels=None, output_hidden_states=None) -> SequenceClassifierOutput:
        out = self.model(input_ids, attention_mask, position_ids, None, inputs_embeds, False,
                         output_hidden_states)
        pooled = last_token_logits(self.config, self.score(out.last_hidden_state), input_ids)
        return sequence_classification_output(self.config, pooled, labels, out)


MODEL_CLASSES = {
    "model": LlamaModel,
    "causal-lm": LlamaForCausalLM,
    "sequence-classification": LlamaForSequenceClassification,
}

__all__ = ["LlamaConfig", "LlamaFamilyConfig", "LlamaModel", "LlamaForCausalLM",
           "LlamaForSequenceClassification", "MODEL_CLASSES"]
