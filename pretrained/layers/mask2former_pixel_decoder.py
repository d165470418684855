"""Mask2Former's pixel decoder (Cheng et al. 2022): the backbone's four feature maps (strides 4, 8,
16, 32) -> three refined multi-scale maps for the transformer decoder and the per-pixel mask
features.

1. The three coarsest maps (strides 8, 16, 32) go through ``input_projections`` (1x1 convolution
   + GroupNorm(32)) to ``feature_size`` channels, coarsest first, and are flattened into one
   sequence with sine position embeddings plus a learnt ``level_embed`` per level.
2. ``encoder``: ``encoder_layers`` post-LayerNorm layers of multi-scale deformable self-attention
   (every position a query; 3 levels, 4 points) and a ReLU MLP (``encoder_feedforward_dim``).
3. The sequence is cut back into the three maps; an FPN step (``adapter_1``: 1x1 convolution +
   GroupNorm; ``layer_1``: 3x3 convolution + GroupNorm + ReLU) adds the stride-4 map to the
   bilinearly upsampled stride-8 output; ``mask_projection`` (1x1) of that is the mask features.

Module names equal the checkpoints' keys under ``model.pixel_level_module.decoder``
(``level_embed``, ``input_projections.0.0.weight``, ``encoder.layers.0.self_attn.value_proj``,
``adapter_1.0.weight``, ``layer_1.1.bias``, ``mask_projection``).

Example::

    >>> import torch
    >>> from types import SimpleNamespace
    >>> cfg = SimpleNamespace(feature_size=32, mask_feature_size=16, encoder_layers=1, num_attention_heads=2,
    ...                       encoder_feedforward_dim=32, dropout=0.0, feature_strides=[4, 8, 16, 32],
    ...                       common_stride=4)
    >>> decoder = Mask2FormerPixelDecoder(cfg, feature_channels=[8, 16, 24, 32])
    >>> feats = [torch.randn(1, c, 32 // 2 ** i, 32 // 2 ** i) for i, c in enumerate([8, 16, 24, 32])]
    >>> mask_features, maps, _ = decoder(feats)
    >>> mask_features.shape, [m.shape[-1] for m in maps]
    (torch.Size([1, 16, 32, 32]), [4, 8, 16])
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .deformable_attention import MultiscaleDeformableAttention, reference_grid

__all__ = ["sine_position_embedding", "Mask2FormerPixelDecoder", "Mask2FormerPixelDecoderEncoderLayer",
           "NUM_FEATURE_LEVELS"]

NUM_FEATURE_LEVELS = 3   # fixed in the architecture: the three coarsest maps


def sine_position_embedding(shape: torch.Size, dtype: torch.dtype, device: torch.device | str, num_features: int,
                            temperature: float = 10000.0, scale: float = 2 * math.pi) -> torch.Tensor:
    """DETR's 2-D sine embedding of every pixel of a (B, C, H, W) map, normalised to
    [0, ``scale``]: (B, 2 * num_features, H, W), the y half first, each half sin/cos interleaved
    over the frequencies ``temperature ** (2 * (i // 2) / num_features)``. Computed in ``dtype``,
    as the reference does (so bfloat16 runs round where it rounds)."""
    batch, _, height, width = shape
    y = torch.arange(1, height + 1, dtype=dtype, device=device)[None, :, None].expand(batch, height, width)
    x = torch.arange(1, width + 1, dtype=dtype, device=device)[None, None, :].expand(batch, height, width)
    eps = 1e-6
    y = y / (y[:, -1:, :] + eps) * scale
    x = x / (x[:, :, -1:] + eps) * scale
    freqs = torch.arange(num_features, dtype=torch.int64, device=device).to(dtype)
    freqs = temperature ** (2 * torch.div(freqs, 2, rounding_mode="floor") / num_features)
    pos_x = x[..., None] / freqs
    pos_y = y[..., None] / freqs
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class Mask2FormerPixelDecoderEncoderLayer(nn.Module):
    """Post-LayerNorm: ``x = norm(x + deform_attn(x + pos))``, ``x = norm(x + fc2(relu(fc1(x))))``."""

    def __init__(self, config) -> None:
        super().__init__()
        dim = config.feature_size
        self.self_attn = MultiscaleDeformableAttention(dim, config.num_attention_heads, NUM_FEATURE_LEVELS, 4)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, config.encoder_feedforward_dim)
        self.fc2 = nn.Linear(config.encoder_feedforward_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, position_embeddings: torch.Tensor, reference_points: torch.Tensor,
                spatial_shapes: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        h, weights = self.self_attn(x, x, reference_points, spatial_shapes, position_embeddings)
        x = self.self_attn_layer_norm(x + F.dropout(h, self.dropout, self.training))
        h = F.dropout(F.relu(self.fc1(x)), self.dropout, self.training)
        x = self.final_layer_norm(x + F.dropout(self.fc2(h), self.dropout, self.training))
        if self.training and not torch.isfinite(x).all():
            # as the reference: keep a diverging step finite rather than poison the weights
            limit = torch.finfo(x.dtype).max - 1000
            x = x.clamp(min=-limit, max=limit)
        return x, weights


class Mask2FormerPixelDecoderEncoderOnly(nn.Module):
    """The deformable encoder: ``layers`` over the flattened three-level sequence."""

    def __init__(self, config) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Mask2FormerPixelDecoderEncoderLayer(config) for _ in range(config.encoder_layers))

    def forward(self, x: torch.Tensor, position_embeddings: torch.Tensor, spatial_shapes: list[tuple[int, int]],
                keep_weights: bool = False) -> tuple[torch.Tensor, tuple | None]:
        reference = reference_grid(spatial_shapes, x.dtype, x.device).expand(x.shape[0], -1, len(spatial_shapes), -1)
        weights = []
        for layer in self.layers:
            x, w = layer(x, position_embeddings, reference, spatial_shapes)
            if keep_weights:
                weights.append(w)
        return x, tuple(weights) if keep_weights else None


def _conv_norm(in_channels: int, out_channels: int, kernel: int, bias: bool, relu: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size=kernel, padding=kernel // 2, bias=bias),
              nn.GroupNorm(32, out_channels)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class Mask2FormerPixelDecoder(nn.Module):
    """See the module docstring. ``forward(features)`` takes the backbone's maps finest first and
    returns ``(mask_features, multi_scale_features, attentions)``: the (B, mask_feature_size,
    H/4, W/4) mask features, the three encoder output maps coarsest first (strides 32, 16, 8),
    and with ``output_attentions`` each encoder layer's deformable attention weights."""

    def __init__(self, config, feature_channels: list[int]) -> None:
        super().__init__()
        dim = config.feature_size
        self.num_position_features = dim // 2
        self.level_embed = nn.Parameter(torch.zeros(NUM_FEATURE_LEVELS, dim))
        self.input_projections = nn.ModuleList(
            _conv_norm(c, dim, 1, bias=True) for c in list(feature_channels[-NUM_FEATURE_LEVELS:])[::-1])
        self.encoder = Mask2FormerPixelDecoderEncoderOnly(config)
        self.mask_projection = nn.Conv2d(dim, config.mask_feature_size, kernel_size=1)
        # FPN levels finer than the encoder's finest (stride 8): log2(8 / common_stride) of them
        finest = min(list(config.feature_strides)[-NUM_FEATURE_LEVELS:])
        self.num_fpn_levels = int(math.log2(finest) - math.log2(config.common_stride))
        for i, channels in enumerate(feature_channels[:self.num_fpn_levels]):
            self.add_module(f"adapter_{i + 1}", _conv_norm(channels, dim, 1, bias=False))
            self.add_module(f"layer_{i + 1}", _conv_norm(dim, dim, 3, bias=False, relu=True))

    def forward(self, features: list[torch.Tensor], output_attentions: bool = False
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], tuple | None]:
        maps = list(features[::-1][:NUM_FEATURE_LEVELS])   # coarsest first
        embeds, positions, shapes = [], [], []
        for level, x in enumerate(maps):
            embeds.append(self.input_projections[level](x).flatten(2).transpose(1, 2))
            pos = sine_position_embedding(x.shape, x.dtype, x.device, self.num_position_features)
            positions.append(pos.flatten(2).transpose(1, 2) + self.level_embed[level].view(1, 1, -1))
            shapes.append((x.shape[2], x.shape[3]))
        hidden, weights = self.encoder(torch.cat(embeds, 1), torch.cat(positions, 1), shapes, output_attentions)
        batch = hidden.shape[0]
        outputs = [part.transpose(1, 2).reshape(batch, -1, h, w)
                   for part, (h, w) in zip(hidden.split([h * w for h, w in shapes], dim=1), shapes)]
        for i, feature in enumerate(features[:self.num_fpn_levels][::-1]):
            level = self.num_fpn_levels - i   # the coarsest of the FPN levels first
            lateral = getattr(self, f"adapter_{level}")(feature)
            up = F.interpolate(outputs[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            outputs.append(getattr(self, f"layer_{level}")(lateral + up))
        return self.mask_projection(outputs[-1]), tuple(outputs[:NUM_FEATURE_LEVELS]), weights
