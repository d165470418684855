"""DETR's segmentation head (Carion et al. 2020, section 4.4), what
:class:`~pretrained.models.detr.DetrForSegmentation` adds to the detector:

1. ``bbox_attention`` (:class:`DetrMHAttentionMap`): each decoder output (query) attends over the
   encoder's output laid out as its (h, w) map: per head the scaled dot products of the query's
   ``q_linear`` projection with the map's ``k_linear`` projection (per cell: the original's 1 x 1
   convolution with the linear's weights), padding cells masked, one softmax over heads and cells together (the
   original's, kept by the reference); no values: the (B, queries, heads, h, w) weights are the
   output.
2. ``mask_head`` (:class:`DetrMaskHeadSmallConv`): per query, the projected feature map
   (``d_model`` channels) with that query's attention maps as extra channels, through two 3 x 3
   conv + GroupNorm + activation blocks (``lay1``/``gn1``, ``lay2``/``gn2``: ``d_model/2``
   channels), then three FPN steps over the backbone's first three feature maps, coarsest first:
   the map adapted by a 1 x 1 conv (``adapterN``), the running features upsampled to it
   (nearest) and added, a conv block (``lay3..5``/``gn3..5``: ``d_model/4``, ``/8``, ``/16``
   channels); ``out_lay`` (3 x 3 conv) gives one mask logit per cell at the first feature map's
   resolution (stride 4 for a ResNet, timm's layer1 included).

Module names are the checkpoints' (``bbox_attention.q_linear``, ``mask_head.lay1``,
``mask_head.gn1``, ``mask_head.adapter1``, ``mask_head.out_lay``), which the reference 5.x renames
on load and writes back on save.

Example::

    >>> import torch
    >>> head = DetrMaskHeadSmallConv(16 + 8, [24, 16, 8], 16, "relu")
    >>> maps = DetrMHAttentionMap(16, 8)(torch.randn(1, 3, 16), torch.randn(1, 16, 2, 2))
    >>> fpn = [torch.randn(1, 24, 4, 4), torch.randn(1, 16, 8, 8), torch.randn(1, 8, 16, 16)]
    >>> maps.shape, head(torch.randn(1, 16, 2, 2), maps, fpn).shape
    (torch.Size([1, 3, 8, 2, 2]), torch.Size([3, 1, 16, 16]))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..outputs import ModelOutput
from .activations import activation

__all__ = ["DetrMHAttentionMap", "DetrMaskHeadSmallConv", "DetrSegmentationOutput", "check_mask_head"]


def _groups(channels: int) -> int:
    """The head's GroupNorm groups: 8, or one per channel below 8 (the original's rule)."""
    return min(8, channels)


def check_mask_head(d_model: int, heads: int, backbone_channels: list[int]) -> None:
    """The config must give a mask head the reference can build: named errors otherwise."""
    if len(backbone_channels) < 3:
        raise ConfigError(f"DetrForSegmentation needs at least 3 backbone feature maps (the mask head's FPN reads the "
                          f"first three); backbone_config out_features gives {len(backbone_channels)}: list e.g. "
                          "['stage1', 'stage2', 'stage3', 'stage4'] (a timm backbone: out_indices [1, 2, 3, 4])")
    if (d_model + heads) % 8:
        raise ConfigError(f"DetrForSegmentation: d_model + encoder_attention_heads ({d_model} + {heads}) must be a "
                          "multiple of 8 (the mask head's first GroupNorm has 8 groups)")
    widths = [d_model // 2, d_model // 4, d_model // 8, d_model // 16]
    if min(widths) < 1 or any(c % _groups(c) for c in widths):
        raise ConfigError(f"DetrForSegmentation: d_model {d_model} gives mask-head widths {widths}; each must be >= 1 "
                          "and a multiple of 8 when above 8 (GroupNorm): use a d_model such as 16, 32, 64, 256")


class DetrMHAttentionMap(nn.Module):
    """Attention weights of queries over a (B, d, h, w) map; see the module doc, step 1."""

    def __init__(self, hidden_size: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (hidden_size // heads) ** -0.5
        self.q_linear = nn.Linear(hidden_size, hidden_size)
        self.k_linear = nn.Linear(hidden_size, hidden_size)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``queries`` (B, Q, d), ``keys`` (B, d, h, w), ``mask`` (B, h, w) True = picture ->
        (B, Q, heads, h, w)."""
        b, q_len, d = queries.shape
        h, w = keys.shape[-2:]
        q = self.q_linear(queries).view(b, q_len, self.heads, d // self.heads)
        # the linear applied per cell (the original's 1 x 1 convolution with its weights; called as the
        # module, so adapters and the backends' swaps reach it)
        k = self.k_linear(keys.flatten(2).transpose(1, 2)).view(b, h, w, self.heads, d // self.heads)
        weights = torch.einsum("bqnc,bhwnc->bqnhw", q * self.scale, k)
        if mask is not None:
            weights = weights.masked_fill(~mask[:, None, None], torch.finfo(weights.dtype).min)
        return weights.flatten(2).softmax(-1).view(weights.shape)


class DetrMaskHeadSmallConv(nn.Module):
    """Per-query mask logits from the feature map, the attention maps and the FPN maps; see the
    module doc, step 2."""

    def __init__(self, in_channels: int, fpn_channels: list[int], hidden_size: int, act: str) -> None:
        super().__init__()
        widths = [in_channels, hidden_size // 2, hidden_size // 4, hidden_size // 8, hidden_size // 16]
        self.lay1 = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.gn1 = nn.GroupNorm(_groups(in_channels), in_channels)
        for i in range(2, 6):   # lay2..lay5 / gn2..gn5: halving the width each time
            setattr(self, f"lay{i}", nn.Conv2d(widths[i - 2], widths[i - 1], 3, padding=1))
            setattr(self, f"gn{i}", nn.GroupNorm(_groups(widths[i - 1]), widths[i - 1]))
        self.out_lay = nn.Conv2d(widths[-1], 1, 3, padding=1)
        for i, channels in enumerate(fpn_channels[:3], start=1):   # adapterN: the Nth FPN map to the running width
            setattr(self, f"adapter{i}", nn.Conv2d(channels, widths[i], 1))
        self.act = activation(act)

    def _block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.act(getattr(self, f"gn{i}")(getattr(self, f"lay{i}")(x)))

    def forward(self, features: torch.Tensor, attention: torch.Tensor, fpn: list[torch.Tensor]) -> torch.Tensor:
        """``features`` (B, d, h, w), ``attention`` (B, Q, heads, h, w), ``fpn`` three maps, coarsest
        first -> (B * Q, 1, H, W) at the last FPN map's size."""
        queries = attention.shape[1]

        def per_query(t: torch.Tensor) -> torch.Tensor:   # (B, ...) -> (B * Q, ...), query-major in each picture
            return t.unsqueeze(1).expand(-1, queries, *t.shape[1:]).flatten(0, 1)

        x = torch.cat([per_query(features), attention.flatten(0, 1)], dim=1)
        x = self._block(2, self._block(1, x))
        for i, level in enumerate(fpn[:3], start=1):
            level = getattr(self, f"adapter{i}")(per_query(level))
            x = self._block(i + 2, level + F.interpolate(x, size=level.shape[-2:], mode="nearest"))
        return self.out_lay(x)


@dataclass
class DetrSegmentationOutput(ModelOutput):
    """The detector's outputs plus ``pred_masks`` (B, queries, H/4, W/4 for a ResNet): mask logits
    per query; with labels the loss (box and mask terms) and its parts."""

    loss: torch.Tensor | None = None
    loss_dict: dict | None = None
    logits: torch.Tensor | None = None
    pred_boxes: torch.Tensor | None = None
    pred_masks: torch.Tensor | None = None
    auxiliary_outputs: list | None = None
    last_hidden_state: torch.Tensor | None = None
    decoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_hidden_states: tuple[torch.Tensor, ...] | None = None
