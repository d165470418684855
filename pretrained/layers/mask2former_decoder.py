"""Mask2Former's masked-attention transformer decoder (Cheng et al. 2022): ``num_queries`` learnt
queries read the pixel decoder's three multi-scale maps, one level per layer in turn (coarsest
first), and predict a mask per query after every layer.

Masked attention: a query's cross-attention to a level only sees the pixels where the previous
prediction of its mask (bilinearly resized to that level) has probability >= 0.5; a query whose
mask is empty at that level sees every pixel. The first mask comes from the queries before any
layer.

``transformer_module`` (checkpoint keys under ``model.transformer_module``):
- ``input_projections.<i>``: 1x1 convolution from ``feature_size`` to ``hidden_dim`` per level
  (absent when the two are equal and ``enforce_input_projection`` is off); ``level_embed`` added;
  sine position embeddings of ``hidden_dim`` (the keys' positions);
- ``queries_features`` (the initial queries) and ``queries_embedder`` (their positions);
- ``decoder.layers.<n>`` (``decoder_layers - 1`` of them): masked cross-attention
  (``cross_attn.in_proj_weight``/``in_proj_bias``/``out_proj``, as ``nn.MultiheadAttention``
  stores it), self-attention over the queries (``self_attn.q_proj``/``k_proj``/``v_proj``/
  ``out_proj``), MLP (``fc1``, ``fc2``, ``activation_function``), each with its LayerNorm after
  (before, with ``pre_norm``);
- ``decoder.layernorm`` (applied to every layer's output before predicting) and
  ``decoder.mask_predictor.mask_embedder`` (3-layer ReLU MLP): mask logits =
  ``mask_embed(query) . mask_features`` per pixel.

Example::

    >>> import torch
    >>> from types import SimpleNamespace
    >>> cfg = SimpleNamespace(hidden_dim=16, num_attention_heads=2, dropout=0.0, dim_feedforward=32,
    ...                       activation_function="relu", pre_norm=False, decoder_layers=3, num_queries=5,
    ...                       mask_feature_size=8, enforce_input_projection=False)
    >>> module = Mask2FormerTransformerModule(in_features=16, config=cfg)
    >>> maps = [torch.randn(2, 16, s, s) for s in (2, 4, 8)]
    >>> out = module(maps, torch.randn(2, 8, 16, 16))
    >>> out.last_hidden_state.shape, len(out.masks_queries_logits), out.masks_queries_logits[-1].shape
    (torch.Size([2, 5, 16]), 3, torch.Size([2, 5, 16, 16]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from .activations import activation
from .attention import attention, merge_heads, split_heads
from .mask2former_pixel_decoder import NUM_FEATURE_LEVELS, sine_position_embedding

__all__ = ["Mask2FormerTransformerModule", "Mask2FormerMaskedAttentionDecoderLayer", "Mask2FormerMaskPredictor",
           "MaskedCrossAttention", "QuerySelfAttention", "TransformerModuleOutput"]


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, dropout: float,
            keep_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, heads, T, d) attention, scale 1/sqrt(d); ``mask`` True = may attend. With
    ``keep_weights`` the softmax is written out to return it, else SDPA."""
    if not keep_weights:
        return merge_heads(attention(q, k, v, mask, causal=False, dropout=dropout)), None
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(-1)
    return merge_heads(F.dropout(weights, dropout) @ v), weights


class QuerySelfAttention(nn.Module):
    """Self-attention over the queries with their positions added to queries and keys (not values):
    ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"Mask2Former: hidden_dim {dim} is not divisible by num_attention_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, keep_weights: bool = False):
        with_pos = x + pos
        q = split_heads(self.q_proj(with_pos), self.num_heads)
        k = split_heads(self.k_proj(with_pos), self.num_heads)
        v = split_heads(self.v_proj(x), self.num_heads)
        out, weights = _attend(q, k, v, None, self.dropout if self.training else 0.0, keep_weights)
        return self.out_proj(out), weights


class MaskedCrossAttention(nn.Module):
    """The queries' attention to one level's pixels: ``nn.MultiheadAttention``'s parameters
    (``in_proj_weight`` = q, k, v stacked, ``in_proj_bias``, ``out_proj``) and math, written out.
    Queries carry their positions, keys the pixels' positions, values neither."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
                keep_weights: bool = False):
        wq, wk, wv = self.in_proj_weight.chunk(3)
        bq, bk, bv = self.in_proj_bias.chunk(3)
        q = split_heads(F.linear(query, wq, bq), self.num_heads)
        k = split_heads(F.linear(key, wk, bk), self.num_heads)
        v = split_heads(F.linear(value, wv, bv), self.num_heads)
        out, weights = _attend(q, k, v, mask, self.dropout if self.training else 0.0, keep_weights)
        # nn.MultiheadAttention returns the weights averaged over the heads
        return self.out_proj(out), None if weights is None else weights.mean(1)


class Mask2FormerMaskedAttentionDecoderLayer(nn.Module):
    """Masked cross-attention, then self-attention, then the MLP, each in a residual with its
    LayerNorm after (``pre_norm``: before). Queries are (B, Q, C), a level's pixels (B, HW, C)."""

    def __init__(self, config) -> None:
        super().__init__()
        dim = config.hidden_dim
        self.pre_norm = config.pre_norm
        self.dropout = config.dropout
        self.self_attn = QuerySelfAttention(dim, config.num_attention_heads, config.dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.cross_attn = MaskedCrossAttention(dim, config.num_attention_heads, config.dropout)
        self.cross_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, config.dim_feedforward)
        self.fc2 = nn.Linear(config.dim_feedforward, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.act = activation(config.activation_function)

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.dropout, self.training)

    def forward(self, x: torch.Tensor, query_pos: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor,
                mask: torch.Tensor, keep_weights: bool = False):
        pre = self.pre_norm
        h = self.cross_attn_layer_norm(x) if pre else x
        h, cross_weights = self.cross_attn(h + query_pos, memory + memory_pos, memory, mask, keep_weights)
        x = x + self._drop(h)
        x = x if pre else self.cross_attn_layer_norm(x)
        h = self.self_attn_layer_norm(x) if pre else x
        h, self_weights = self.self_attn(h, query_pos, keep_weights)
        x = x + self._drop(h)
        x = x if pre else self.self_attn_layer_norm(x)
        h = self.final_layer_norm(x) if pre else x
        h = self.fc2(self._drop(self.act(self.fc1(h))))
        x = x + self._drop(h)
        x = x if pre else self.final_layer_norm(x)
        return x, self_weights, cross_weights


class Mask2FormerMaskPredictor(nn.Module):
    """``mask_embedder`` (Linear-ReLU, Linear-ReLU, Linear) of the normalised queries, dotted with
    the mask features per pixel: (B, Q, H/4, W/4) logits; and the next layer's attention mask at
    ``target_size``: True (may attend) where the resized mask's probability is >= 0.5."""

    def __init__(self, hidden_size: int, mask_feature_size: int) -> None:
        super().__init__()
        self.mask_embedder = nn.Sequential(
            nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU()),
            nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU()),
            nn.Sequential(nn.Linear(hidden_size, mask_feature_size)))

    def forward(self, queries: torch.Tensor, mask_features: torch.Tensor, target_size: tuple[int, int]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = torch.einsum("bqc,bchw->bqhw", self.mask_embedder(queries), mask_features)
        resized = F.interpolate(logits, size=target_size, mode="bilinear", align_corners=False)
        # sigmoid then compare, as the reference: tiny negative logits round to p = 0.5 (kept)
        keep = ~(resized.sigmoid().flatten(2) < 0.5)
        return logits, keep.detach()


@dataclass
class TransformerModuleOutput:
    """``last_hidden_state`` (B, Q, C) of the last layer (not normalised); ``hidden_states``: the
    input of every layer and the last output, (Q, B, C) each as the reference lays them out;
    ``intermediate_hidden_states``: the normalised queries each prediction is made from (the
    initial ones, then every layer's), (Q, B, C); ``masks_queries_logits``: the mask logits of
    each of those; ``attentions``: each layer's self-attention weights (B, heads, Q, Q)."""

    last_hidden_state: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None
    intermediate_hidden_states: tuple[torch.Tensor, ...]
    masks_queries_logits: tuple[torch.Tensor, ...]
    attentions: tuple[torch.Tensor, ...] | None = None


class Mask2FormerMaskedAttentionDecoder(nn.Module):
    """``layers``, the shared ``layernorm`` and ``mask_predictor`` (see the module docstring)."""

    def __init__(self, config) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Mask2FormerMaskedAttentionDecoderLayer(config)
                                    for _ in range(config.decoder_layers - 1))
        self.layernorm = nn.LayerNorm(config.hidden_dim)
        self.mask_predictor = Mask2FormerMaskPredictor(config.hidden_dim, config.mask_feature_size)
        self.layerdrop = config.dropout   # the reference drops whole layers at the dropout rate in training

    def forward(self, queries: torch.Tensor, query_pos: torch.Tensor, memories: list[torch.Tensor],
                memory_pos: list[torch.Tensor], sizes: list[tuple[int, int]], mask_features: torch.Tensor,
                keep_hidden: bool = False, keep_weights: bool = False) -> TransformerModuleOutput:
        x = queries
        normed = self.layernorm(x)
        logits, keep = self.mask_predictor(normed, mask_features, sizes[0])
        intermediate, masks, hidden, weights = [normed], [logits], [], []
        for i, layer in enumerate(self.layers):
            if keep_hidden:
                hidden.append(x.transpose(0, 1))
            if self.training and self.layerdrop > 0.0 and torch.rand([]) < self.layerdrop:
                continue
            level = i % NUM_FEATURE_LEVELS
            keep = keep | ~keep.any(-1, keepdim=True)   # an empty mask sees everything
            x, self_weights, _ = layer(x, query_pos, memories[level], memory_pos[level], keep[:, None], keep_weights)
            normed = self.layernorm(x)
            logits, keep = self.mask_predictor(normed, mask_features, sizes[(i + 1) % NUM_FEATURE_LEVELS])
            intermediate.append(normed)
            masks.append(logits)
            if keep_weights:
                weights.append(self_weights)
        if keep_hidden:
            hidden.append(x.transpose(0, 1))
        return TransformerModuleOutput(
            last_hidden_state=x, hidden_states=tuple(hidden) if keep_hidden else None,
            intermediate_hidden_states=tuple(h.transpose(0, 1) for h in intermediate),
            masks_queries_logits=tuple(masks), attentions=tuple(weights) if keep_weights else None)


class Mask2FormerTransformerModule(nn.Module):
    """Input projections, level and position embeddings of the three maps, the queries, and the
    decoder. ``forward(multi_scale_features, mask_features)``: maps coarsest first (B,
    ``in_features``, h, w), mask features (B, mask_feature_size, H/4, W/4)."""

    def __init__(self, in_features: int, config) -> None:
        super().__init__()
        dim = config.hidden_dim
        self.num_position_features = dim // 2
        self.queries_embedder = nn.Embedding(config.num_queries, dim)
        self.queries_features = nn.Embedding(config.num_queries, dim)
        project = in_features != dim or config.enforce_input_projection
        self.input_projections = nn.ModuleList(
            nn.Conv2d(in_features, dim, kernel_size=1) if project else nn.Sequential()
            for _ in range(NUM_FEATURE_LEVELS))
        self.decoder = Mask2FormerMaskedAttentionDecoder(config)
        self.level_embed = nn.Embedding(NUM_FEATURE_LEVELS, dim)

    def forward(self, multi_scale_features: list[torch.Tensor], mask_features: torch.Tensor,
                output_hidden_states: bool = False, output_attentions: bool = False) -> TransformerModuleOutput:
        memories, positions, sizes = [], [], []
        for i in range(NUM_FEATURE_LEVELS):
            x = multi_scale_features[i]
            sizes.append((x.shape[-2], x.shape[-1]))
            pos = sine_position_embedding(x.shape, x.dtype, x.device, self.num_position_features)
            positions.append(pos.flatten(2).transpose(1, 2))
            memory = self.input_projections[i](x).flatten(2) + self.level_embed.weight[i][None, :, None]
            memories.append(memory.transpose(1, 2))
        batch = memories[0].shape[0]
        queries = self.queries_features.weight.unsqueeze(0).expand(batch, -1, -1)
        query_pos = self.queries_embedder.weight.unsqueeze(0).expand(batch, -1, -1)
        return self.decoder(queries, query_pos, memories, positions, sizes, mask_features,
                            output_hidden_states, output_attentions)
