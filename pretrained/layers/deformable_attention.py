"""Multi-scale deformable attention (Zhu et al. 2021, "Deformable DETR"), in plain PyTorch.

Every query attends to a few sampled points per head and per feature level instead of to every
position: ``sampling_offsets`` (a linear of the query) moves ``n_points`` points away from the
query's reference point on each level, ``attention_weights`` (a linear of the query, softmax over
the levels x points of a head) weighs them, and the values (``value_proj`` of the flattened
multi-scale maps) are read at those points by bilinear interpolation (``grid_sample``, zeros
outside the map). There is no custom kernel here: the sampling is one ``grid_sample`` per level,
the weighted sum one multiply-and-sum; the numbers are the reference's pure-PyTorch path.

Used by Mask2Former's pixel decoder (``self_attn`` of each encoder layer); module names equal the
checkpoints' keys (``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj``).

Example::

    >>> import torch
    >>> attn = MultiscaleDeformableAttention(embed_dim=8, num_heads=2, n_levels=2, n_points=3)
    >>> shapes = [(4, 4), (2, 2)]
    >>> x = torch.randn(1, 20, 8)
    >>> out, weights = attn(x, x, reference_grid(shapes, torch.float32, "cpu").expand(1, -1, 2, -1), shapes)
    >>> out.shape, weights.shape
    (torch.Size([1, 20, 8]), torch.Size([1, 20, 2, 2, 3]))
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError, InvalidInputError

__all__ = ["multi_scale_deformable_attention", "MultiscaleDeformableAttention", "reference_grid",
           "init_deformable_attention_"]


def multi_scale_deformable_attention(value: torch.Tensor, spatial_shapes: list[tuple[int, int]],
                                     sampling_locations: torch.Tensor,
                                     attention_weights: torch.Tensor) -> torch.Tensor:
    """The attention itself, once the points and weights are known.

    ``value`` (B, S, heads, head_dim): the levels' maps flattened row by row one after the other
    (S = sum of h * w over ``spatial_shapes``); ``sampling_locations`` (B, Q, heads, levels,
    points, 2): x, y in [0, 1] of each level's map; ``attention_weights`` (B, Q, heads, levels,
    points). Returns (B, Q, heads * head_dim).
    """
    batch, _, heads, head_dim = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    grids = 2 * sampling_locations - 1   # grid_sample's [-1, 1] (align_corners=False: pixel edges)
    sampled = []
    start = 0
    for level, (height, width) in enumerate(spatial_shapes):
        # (B, h*w, heads, d) -> (B * heads, d, h, w): each head reads its own slice of channels
        level_value = value[:, start:start + height * width].permute(0, 2, 3, 1).reshape(
            batch * heads, head_dim, height, width)
        start += height * width
        # (B, Q, heads, points, 2) -> (B * heads, Q, points, 2)
        grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(level_value, grid, mode="bilinear", padding_mode="zeros",
                                     align_corners=False))   # (B * heads, d, Q, points)
    weights = attention_weights.transpose(1, 2).reshape(batch * heads, 1, queries, levels * points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)   # (B * heads, d, Q)
    return out.view(batch, heads * head_dim, queries).transpose(1, 2).contiguous()


def reference_grid(spatial_shapes: list[tuple[int, int]], dtype: torch.dtype,
                   device: torch.device | str) -> torch.Tensor:
    """Every position's own point as its reference, (1, S, 1, 2) of x, y in [0, 1]: the pixel
    centres ``(i + 0.5) / size`` of each level, levels one after the other. (The reference scales
    by the valid part of padded maps; with every pixel valid that is this grid.)"""
    grids = []
    for height, width in spatial_shapes:
        y = torch.linspace(0.5, height - 0.5, height, dtype=dtype, device=device) / height
        x = torch.linspace(0.5, width - 0.5, width, dtype=dtype, device=device) / width
        grid_y, grid_x = torch.meshgrid(y, x, indexing="ij")
        grids.append(torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), -1))
    return torch.cat(grids, 0)[None, :, None]


class MultiscaleDeformableAttention(nn.Module):
    """Deformable attention of queries over multi-scale maps (see the module docstring).

    ``forward(hidden_states, encoder_hidden_states, reference_points, spatial_shapes,
    position_embeddings=None, padding_mask=None)``: the queries (B, Q, C) (with
    ``position_embeddings`` added before the offsets and weights are computed), the values'
    source (B, S, C), ``reference_points`` (B, Q, levels, 2) as x, y in [0, 1] (or (..., 4) boxes
    cx, cy, w, h: offsets then scale with the box), ``padding_mask`` (B, S) True where a value is
    padding (zeroed). Returns the output (B, Q, C) and the weights (B, Q, heads, levels, points).
    """

    def __init__(self, embed_dim: int, num_heads: int, n_levels: int, n_points: int) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ConfigError(f"deformable attention: width {embed_dim} is not divisible by {num_heads} heads")
        self.d_model = embed_dim
        self.n_heads = num_heads
        self.n_levels = n_levels
        self.n_points = n_points
        self.sampling_offsets = nn.Linear(embed_dim, num_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(embed_dim, num_heads * n_levels * n_points)
        self.value_proj = nn.Linear(embed_dim, embed_dim)
        self.output_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                reference_points: torch.Tensor, spatial_shapes: list[tuple[int, int]],
                position_embeddings: torch.Tensor | None = None,
                padding_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if position_embeddings is not None:
            hidden_states = hidden_states + position_embeddings
        batch, queries, _ = hidden_states.shape
        length = encoder_hidden_states.shape[1]
        if sum(h * w for h, w in spatial_shapes) != length or len(spatial_shapes) != self.n_levels:
            raise InvalidInputError(
                f"deformable attention: {len(spatial_shapes)} levels of {spatial_shapes} do not make the "
                f"{length} positions of the values ({self.n_levels} levels expected)")
        value = self.value_proj(encoder_hidden_states)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(batch, length, self.n_heads, self.d_model // self.n_heads)
        offsets = self.sampling_offsets(hidden_states).view(
            batch, queries, self.n_heads, self.n_levels, self.n_points, 2)
        weights = self.attention_weights(hidden_states).view(
            batch, queries, self.n_heads, self.n_levels * self.n_points)
        weights = F.softmax(weights, -1).view(batch, queries, self.n_heads, self.n_levels, self.n_points)
        if reference_points.shape[-1] == 2:
            # offsets are in pixels of each level: divide by that level's (width, height)
            normalizer = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=torch.long,
                                      device=reference_points.device)
            locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 4:
            locations = (reference_points[:, :, None, :, None, :2]
                         + offsets / self.n_points * reference_points[:, :, None, :, None, 2:] * 0.5)
        else:
            raise InvalidInputError(f"reference_points must end in 2 (x, y) or 4 (box), got "
                                    f"{tuple(reference_points.shape)}")
        out = multi_scale_deformable_attention(value, spatial_shapes, locations, weights)
        return self.output_proj(out), weights


def init_deformable_attention_(module: MultiscaleDeformableAttention) -> None:
    """The reference's fresh initialisation: zero offset weights with biases that start each head's
    points on a ring around the reference point (head h towards angle 2 pi h / heads, point p at
    distance p + 1), uniform attention weights, Xavier projections."""
    nn.init.constant_(module.sampling_offsets.weight, 0.0)
    thetas = torch.arange(module.n_heads, dtype=torch.int64).float() * (2.0 * math.pi / module.n_heads)
    grid = torch.stack([thetas.cos(), thetas.sin()], -1)
    grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(module.n_heads, 1, 1, 2)
    grid = grid.repeat(1, module.n_levels, module.n_points, 1)
    for i in range(module.n_points):
        grid[:, :, i, :] *= i + 1
    with torch.no_grad():
        module.sampling_offsets.bias.copy_(grid.view(-1))
    nn.init.constant_(module.attention_weights.weight, 0.0)
    nn.init.constant_(module.attention_weights.bias, 0.0)
    nn.init.xavier_uniform_(module.value_proj.weight)
    nn.init.constant_(module.value_proj.bias, 0.0)
    nn.init.xavier_uniform_(module.output_proj.weight)
    nn.init.constant_(module.output_proj.bias, 0.0)
