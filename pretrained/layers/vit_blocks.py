"""The ViT encoder block, written once: pre-LayerNorm self-attention and MLP, as ViT, DeiT and the
Audio Spectrogram Transformer run it (and other vision encoders will).

Why here: the patch embeddings differ per model (images, spectrogram patches with strides, extra
tokens), the layers do not. Module names equal the checkpoints' keys of the ViT family
(``encoder.layer.3.attention.attention.query.weight``, ``attention.output.dense``,
``intermediate.dense``, ``output.dense``, ``layernorm_before``, ``layernorm_after``), so loading
is a straight copy. The config fields read are ViT's: ``hidden_size``, ``num_attention_heads``,
``intermediate_size``, ``hidden_act``, ``layer_norm_eps``, ``qkv_bias``, ``hidden_dropout_prob``,
``attention_probs_dropout_prob``.

One layer::

    h = x + dropout(attention.output.dense(self_attention(layernorm_before(x))))
    y = h + dropout(output.dense(act(intermediate.dense(layernorm_after(h)))))

The stack is a :class:`~pretrained.layers.encoder.LayerStack` (``encoder.layer.N``), which also
collects the hidden states (the embeddings first, then every layer's output, before any final
LayerNorm, as the reference returns them).

Example::

    >>> import torch
    >>> from types import SimpleNamespace
    >>> cfg = SimpleNamespace(hidden_size=8, num_attention_heads=2, intermediate_size=16,
    ...                       hidden_act="gelu", layer_norm_eps=1e-12, qkv_bias=True,
    ...                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    ...                       num_hidden_layers=2)
    >>> last, states = vit_encoder(cfg)(torch.randn(1, 5, 8), None, True)
    >>> last.shape, len(states)
    (torch.Size([1, 5, 8]), 3)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InvalidInputError

from .activations import activation
from .attention import attention, merge_heads, split_heads
from .encoder import LayerStack
from .pixels import check_image_pixels, pixels_hint

__all__ = ["ViTSelfAttention", "ViTAttention", "ViTLayer", "vit_encoder", "check_vit_config",
           "pair", "ImagePatchEmbeddings", "ImageEmbeddings", "check_pixel_values",
           "interpolate_patch_positions"]


class ViTSelfAttention(nn.Module):
    """``query`` / ``key`` / ``value`` projections and scaled dot-product attention over the heads
    (scale 1/sqrt(head_dim)); ``mask`` is None or a boolean (B, 1, 1 or T, T), True = attend."""

    def __init__(self, hidden_size: int, num_heads: int, qkv_bias: bool, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.query = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.key = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.value = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q = split_heads(self.query(x), self.num_heads)
        k = split_heads(self.key(x), self.num_heads)
        v = split_heads(self.value(x), self.num_heads)
        y = attention(q, k, v, mask, causal=False, dropout=self.dropout if self.training else 0.0)
        return merge_heads(y)


class _Dense(nn.Module):
    """A linear (``dense``) followed by dropout: the checkpoints' ``attention.output`` and
    ``output`` modules."""

    def __init__(self, fan_in: int, fan_out: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(fan_in, fan_out)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.dense(x))


class _Intermediate(nn.Module):
    """The MLP's first linear (``dense``) and its activation."""

    def __init__(self, hidden_size: int, intermediate_size: int, act: str) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, intermediate_size)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class ViTAttention(nn.Module):
    """Self-attention (``attention``) and its output projection (``output.dense``)."""

    def __init__(self, config) -> None:
        super().__init__()
        self.attention = ViTSelfAttention(config.hidden_size, config.num_attention_heads, config.qkv_bias,
                                          config.attention_probs_dropout_prob)
        self.output = _Dense(config.hidden_size, config.hidden_size, config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.attention(x, mask))


class ViTLayer(nn.Module):
    """One pre-LayerNorm encoder layer (see the module doc)."""

    def __init__(self, config) -> None:
        super().__init__()
        self.attention = ViTAttention(config)
        self.intermediate = _Intermediate(config.hidden_size, config.intermediate_size, config.hidden_act)
        self.output = _Dense(config.intermediate_size, config.hidden_size, config.hidden_dropout_prob)
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attention(self.layernorm_before(x), mask)
        return x + self.output(self.intermediate(self.layernorm_after(x)))


def vit_encoder(config) -> LayerStack:
    """``config.num_hidden_layers`` :class:`ViTLayer` s as a :class:`LayerStack` (``layer.N``)."""
    return LayerStack([ViTLayer(config) for _ in range(config.num_hidden_layers)])


def check_vit_config(cfg) -> None:
    """The checks every ViT-style config shares (``cfg._require`` raises the named ConfigError)."""
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
        cfg._require(getattr(cfg, key) > 0, f"{key} must be > 0, got {getattr(cfg, key)}")
    cfg._require(cfg.hidden_size % cfg.num_attention_heads == 0,
                 f"hidden_size {cfg.hidden_size} is not a multiple of num_attention_heads "
                 f"{cfg.num_attention_heads}")
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        cfg._require(0.0 <= getattr(cfg, key) <= 1.0, f"{key} must be in [0, 1], got {getattr(cfg, key)}")
    cfg._require(cfg.layer_norm_eps > 0, f"layer_norm_eps must be > 0, got {cfg.layer_norm_eps}")
    activation(cfg.hidden_act)


# --- images: patches, extra tokens, positions (ViT, DeiT) ---------------------------------------
def pair(value: Any) -> tuple[int, int]:
    """``image_size`` / ``patch_size`` as the configs write them (an int or a pair) -> (h, w)."""
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


class ImagePatchEmbeddings(nn.Module):
    """(B, C, H, W) -> (B, patches, hidden): one convolution, kernel = stride = the patch
    (``patch_embeddings.projection``); patches run row-major."""

    def __init__(self, config) -> None:
        super().__init__()
        p = pair(config.patch_size)
        self.projection = nn.Conv2d(config.num_channels, config.hidden_size, kernel_size=p, stride=p)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.projection(pixel_values).flatten(2).transpose(1, 2)


def interpolate_patch_positions(positions: torch.Tensor, extra: int, grid: tuple[int, int],
                                new_grid: tuple[int, int], same_count_square: bool) -> torch.Tensor:
    """The learned positions (1, extra + gh*gw, H) resized for a ``new_grid`` of patches: the
    ``extra`` token positions kept, the patch positions laid out on their grid and resized
    bicubically (align_corners False). As the reference: unchanged when the number of patches is
    the same and the image is square (``same_count_square``)."""
    if same_count_square:
        return positions
    dim = positions.shape[-1]
    patches = positions[:, extra:].reshape(1, grid[0], grid[1], dim).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=new_grid, mode="bicubic", align_corners=False)
    return torch.cat((positions[:, :extra], patches.permute(0, 2, 3, 1).reshape(1, -1, dim)), dim=1)


class ImageEmbeddings(nn.Module):
    """``cls_token`` (and with ``distillation`` DeiT's ``distillation_token``) in front of the
    patches, learned ``position_embeddings`` added (resized with ``interpolate_pos_encoding``
    for another image size), dropout."""

    def __init__(self, config, distillation: bool = False) -> None:
        super().__init__()
        self.extra = 2 if distillation else 1
        self.image_grid = pair(config.image_size)
        self.patch = pair(config.patch_size)
        self.grid = (self.image_grid[0] // self.patch[0], self.image_grid[1] // self.patch[1])
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        if distillation:
            self.distillation_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.patch_embeddings = ImagePatchEmbeddings(config)
        self.position_embeddings = nn.Parameter(
            torch.zeros(1, self.grid[0] * self.grid[1] + self.extra, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        height, width = pixel_values.shape[-2:]
        patches = self.patch_embeddings(pixel_values)
        b = patches.shape[0]
        tokens = [self.cls_token.expand(b, -1, -1)]
        if self.extra == 2:
            tokens.append(self.distillation_token.expand(b, -1, -1))
        x = torch.cat((*tokens, patches), dim=1)
        positions = self.position_embeddings
        if interpolate_pos_encoding:
            new_grid = (height // self.patch[0], width // self.patch[1])
            same = new_grid[0] * new_grid[1] == self.grid[0] * self.grid[1] and height == width
            positions = interpolate_patch_positions(positions, self.extra, self.grid, new_grid, same)
        return self.dropout(x + positions)


def check_pixel_values(pixel_values: Any, config, dtype: torch.dtype, interpolate_pos_encoding: bool,
                       model: str) -> torch.Tensor:
    """(B, num_channels, H, W) float pixels in ``dtype`` (one (C, H, W) image is a batch of one),
    H x W the config's ``image_size`` unless ``interpolate_pos_encoding``; or a named error."""
    h, w = pair(config.image_size)
    ph, pw = pair(config.patch_size)
    pixel_values = check_image_pixels(pixel_values, config.num_channels, dtype, model, (h, w))
    hint = pixels_hint(model, config.num_channels, (h, w))
    height, width = pixel_values.shape[2:]
    if interpolate_pos_encoding:
        if height < ph or width < pw:
            raise InvalidInputError(f"pixel_values of {height}x{width} is smaller than one {ph}x{pw} patch; {hint}")
    elif (height, width) != (h, w):
        raise InvalidInputError(f"pixel_values is {height}x{width}, the model takes {h}x{w}; resize with the "
                                f"image processor, or pass interpolate_pos_encoding=True to resize the "
                                f"position embeddings; {hint}")
    return pixel_values
