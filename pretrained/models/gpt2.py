"""GPT-2 (``model_type: "gpt2"``): the decoder, the causal-LM head and sequence classification.

Module names equal the checkpoint's (``transformer.h.0.attn.c_attn.weight``); the projections
keep GPT-2's (in, out) weight layout (``Conv1D``) so files load and save unchanged.

Example::

    >>> import torch
    >>> from pretrained.models.gpt2 import GPT2Config, GPT2LMHeadModel
    >>> cfg = GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    >>> GPT2LMHeadModel.from_config(cfg)(torch.tensor([[1, 5, 7]])).logits.shape
    torch.Size([1, 3, 100])
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..config import PretrainedConfig
from ..errors import InvalidInputError
from ..layers import (
    Conv1D,
    activation,
    causal_lm_loss,
    causal_mask,
    grouped_attention,
    lm_logits,
    packed_segments,
    prepare_decoder_inputs,
    sequence_classification_output,
    split_heads,
)
from ..modeling import PreTrainedModel
from ..outputs import BaseModelOutput, CausalLMOutput, SequenceClassifierOutput

if TYPE_CHECKING:
    from ..cache import Cache


class GPT2Config(PretrainedConfig):
    model_type = "gpt2"
    attribute_map = {"hidden_size": "n_embd", "max_position_embeddings": "n_positions",
                     "num_attention_heads": "n_head", "num_hidden_layers": "n_layer"}

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    summary_type: str = "cls_index"
    summary_use_proj: bool = True
    summary_activation: str | None = None
    summary_proj_to_labels: bool = True
    summary_first_dropout: float = 0.1
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    reorder_and_upcast_attn: bool = False
    bos_token_id: int | list | None = 50256
    eos_token_id: int | list | None = 50256

    def validate(self) -> None:
        for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            self._require(getattr(self, key) > 0, f"{key} must be > 0, got {getattr(self, key)}")
        self._require(self.n_embd % self.n_head == 0,
                      f"n_embd {self.n_embd} is not a multiple of n_head {self.n_head}")
        activation(self.activation_function)


class GPT2Attention(nn.Module):
    def __init__(self, config: GPT2Config, layer_idx: int) -> None:
        super().__init__()
        e = config.n_embd
        self.layer_idx = layer_idx
        self.n_head = config.n_head
        self.c_attn = Conv1D(e, 3 * e)
        self.c_proj = Conv1D(e, e)
        self.attn_dropout = config.attn_pdrop
        self.resid_dropout = nn.Dropout(config.resid_pdrop)
        scale = 1.0 / math.sqrt(e // config.n_head) if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            scale /= layer_idx + 1
        self.scale = scale

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cache: Cache | None) -> torch.Tensor:
        """The attention output (B, T, n_embd)."""
        b, t, e = x.shape
        qkv = self.c_attn(x)
        if t == 1:  # one token (decoding): (B, 3 * nh, 1, hd) is already the heads layout
            q, k, v = qkv.view(b, 3 * self.n_head, 1, -1).split(self.n_head, 1)
        else:
            q, k, v = (split_heads(p, self.n_head) for p in qkv.split(e, dim=2))  # (B, nh, T, hd)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)
        p = self.attn_dropout if self.training else 0.0
        y = grouped_attention(q, k, v, mask, scale=self.scale, dropout=p)  # (B, T, n_embd)
        return self.resid_dropout(self.c_proj(y))


class GPT2MLP(nn.Module):
    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        inner = config.n_inner or 4 * config.n_embd
        self.c_fc = Conv1D(config.n_embd, inner)
        self.c_proj = Conv1D(inner, config.n_embd)
        self.act = activation(config.activation_function)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """c_proj(act(c_fc(x)))"""
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class GPT2Block(nn.Module):
    def __init__(self, config: GPT2Config, layer_idx: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(config)

    def forward(self, x, mask, cache):
        x = x + self.attn(self.ln_1(x), mask, cache)
        return x + self.mlp(self.ln_2(x))


class GPT2PreTrainedModel(PreTrainedModel):
    config_class = GPT2Config
    base_model_prefix = "transformer"
    # Old checkpoints store the causal mask as buffers; we build masks on the fly.
    ignore_unexpected = (r"(^|\.)attn\.(masked_)?bias$",)

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        # GPT-2 scales the residual projections by 1/sqrt(2 * n_layer) at init.
        if isinstance(module, GPT2Block):
            std = self.config.initializer_range / math.sqrt(2 * self.config.n_layer)
            for proj in (module.attn.c_proj, module.mlp.c_proj):
                nn.init.normal_(proj.weight, std=std)


class GPT2Model(GPT2PreTrainedModel):
    """The bare decoder: ``last_hidden_state`` (B, T, n_embd) after the final LayerNorm."""

    def __init__(self, config: GPT2Config) -> None:
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(GPT2Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        past_key_values: Cache | None = None,
        use_cache: bool | None = None,
    ) -> BaseModelOutput:
        """``past_key_values``: a Cache from an earlier call, whose tokens these follow; with
        ``use_cache`` (default ``config.use_cache`` outside training) one is created and
        returned. ``attention_mask`` then covers cached + new tokens."""
        cache, past, b, t, input_ids, position_ids = prepare_decoder_inputs(
            self, input_ids, None, attention_mask, position_ids, past_key_values, use_cache)
        n_pos = self.config.n_positions
        if not torch.compiler.is_compiling() and int(position_ids.max()) >= n_pos:
            raise InvalidInputError(
                f"input reaches position {int(position_ids.max())} but this model's context is "
                f"{n_pos} positions; "
                f"tokenize with truncation=True, max_length={n_pos}, or generate fewer tokens"
            )
        x = self.wte(input_ids) + self.wpe(position_ids)
        if token_type_ids is not None:
            x = x + self.wte(token_type_ids)
        x = self.drop(x)
        packed = packed_segments(position_ids, b) if cache is None and attention_mask is None else None
        mask = causal_mask(attention_mask, q_len=t, past_len=past, segments=packed,
                           kv_len=cache.kv_length(t) if cache is not None else t, device=x.device)
        keep = output_hidden_states if output_hidden_states is not None \
            else self.config.output_hidden_states
        states = [x] if keep else None
        for block in self.h:
            x = block(x, mask, cache)
            if states is not None:
                states.append(x)
        x = self.ln_f(x)
        if states is not None:
            states[-1] = x  # the reference reports the last state after ln_f
        return BaseModelOutput(last_hidden_state=x, past_key_values=cache,
                               hidden_states=tuple(states) if states else None)


class GPT2LMHeadModel(GPT2PreTrainedModel):
    """Decoder + vocabulary projection tied to the input embeddings."""

    tied_weights = {"lm_head.weight": "transformer.wte.weight"}
    forward_inputs = frozenset({"input_ids", "attention_mask", "token_type_ids", "position_ids", "labels",
                                "output_hidden_states", "past_key_values", "use_cache", "logits_to_keep"})

    def __init__(self, config: GPT2Config) -> None:
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, output_hidden_states=None, past_key_values: Cache | None = None,
                use_cache: bool | None = None, logits_to_keep: int = 0) -> CausalLMOutput:
        """Logits (B, T or logits_to_keep, vocab); see :meth:`GPT2Model.forward` for the cache."""
        out = self.transformer(input_ids, attention_mask, token_type_ids, position_ids,
                               output_hidden_states, past_key_values, use_cache)
        logits = lm_logits(self.lm_head, out.last_hidden_state, logits_to_keep)
        loss = None if labels is None else causal_lm_loss(logits, labels)
        return CausalLMOutput(loss=loss, logits=logits, past_key_values=out.past_key_values,
                              hidden_states=out.hidden_states)


class GPT2ForSequenceClassification(GPT2PreTrainedModel):
    """Scores the last non-padding token of each sequence (needs ``pad_token_id`` for batches)."""

    def __init__(self, config: GPT2Config) -> None:
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.score = nn.Linear(config.n_embd, config.num_labels, bias=False)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, output_hidden_states=None) -> SequenceClassifierOutput:
        out = self.transformer(input_ids, attention_mask, token_type_ids, position_ids,
                               output_hidden_states, use_cache=False)
        logits = self.score(out.last_hidden_state)  # (B, T, C)
        input_ids = self.check_input_ids(input_ids)
        b, t = input_ids.shape
        pad = self.config.pad_token_id
        if pad is None:
            if b != 1:
                raise InvalidInputError(
                    "GPT2ForSequenceClassification needs config.pad_token_id to find the last "
                    "token of each sequence in a batch; set it (e.g. to the eos token id)"
                )
            last = torch.full((b,), t - 1, device=logits.device)
        else:
            # Rightmost token that is not padding (works for left and right padding).
            not_pad = (input_ids != pad).int() * torch.arange(t, device=logits.device)
            last = not_pad.argmax(-1)
        pooled = logits[torch.arange(b, device=logits.device), last]
        return sequence_classification_output(self.config, pooled, labels, out)


MODEL_CLASSES = {
    "model": GPT2Model,
    "causal-lm": GPT2LMHeadModel,
    "sequence-classification": GPT2ForSequenceClassification,
}
