"""DETR (``model_type: "detr"``, Carion et al. 2020): a convolutional backbone, a transformer
encoder-decoder over its last feature map, and learned object queries; the bare model, the
object-detection head and the segmentation head (:class:`DetrForSegmentation`: the detector plus
per-query masks from :mod:`pretrained.layers.detr_segmentation`).

Input: ``pixel_values`` (B, num_channels, H, W) and ``pixel_mask`` (B, H, W; 1 = picture, 0 =
padding), what :class:`~pretrained.processing.DetrImageProcessor` returns. Steps:

1. The backbone, its batch norms replaced by :class:`~pretrained.layers.backbone.FrozenBatchNorm2d`:
   a timm-layout ResNet (``use_timm_backbone=True``, the facebook/detr-* checkpoints: ``backbone``
   "resnet50"..., ``dilation`` = DC5; :mod:`pretrained.models.timm_resnet`, no timm, no download:
   ``use_pretrained_backbone`` only warns, when building from a config, that the weights are
   random; trainable, as in the reference 5.x) or this library's ResNet (``backbone_config``,
   ``use_timm_backbone=False``; frozen, as the reference leaves it; ``unfreeze_backbone()``).
   The last feature map feeds the transformer; the pixel mask is brought to each map's size.
2. ``input_projection`` (1 x 1 conv) to ``d_model``, flattened to (B, h*w, d_model), with 2-D
   position embeddings: "sine" (cumulative mask counts normalised to 2 pi, sin / cos at
   temperatures 10000^(2i/d)) or "learned" (``row_embeddings`` / ``column_embeddings``, 50 each).
3. Post-LayerNorm encoder layers: self-attention whose queries and keys (not values) get the
   position embeddings, padding keys masked; ReLU MLP (``fc1``, ``fc2``).
4. Decoder layers over ``num_queries`` zero vectors: self-attention with the learned
   ``query_position_embeddings`` added to queries and keys, cross-attention (queries + query
   positions, keys = encoder states + spatial positions), MLP; a final ``decoder.layernorm``.
   With ``auxiliary_loss`` each layer's output goes through that LayerNorm before the next
   layer (the reference's order) and is kept for the auxiliary losses.
5. The head: ``class_labels_classifier`` (linear, num_labels + 1 classes, the last "no object")
   and ``bbox_predictor`` (3-layer MLP, sigmoid: normalised (cx, cy, w, h)); with ``labels`` the set
   loss of :mod:`pretrained.layers.detection` (auxiliary terms per intermediate layer).

Module names equal the checkpoints' keys as the reference saves them
(``model.backbone.conv_encoder.model.conv1.weight`` or ``...model.embedder.embedder.convolution.weight``,
``model.encoder.layers.0.self_attn.out_proj.weight``, ``model.decoder.layers.0.encoder_attn.q_proj``,
``model.encoder.layers.0.fc1``, ``model.query_position_embeddings``, ``bbox_predictor.layers.2``).

Not supported (named errors): timm backbones other than the torchvision-layout ResNets,
``dilation`` with a ResNet ``backbone_config`` (the reference ignores it there), layer drop in
training (the reference ignores it).

Example::

    >>> import torch
    >>> from pretrained.models.detr import DetrConfig, DetrForObjectDetection
    >>> cfg = DetrConfig(use_timm_backbone=False, d_model=16, encoder_layers=1, decoder_layers=1,
    ...                  encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
    ...                  decoder_ffn_dim=32, num_queries=5, num_labels=3,
    ...                  backbone_config={"model_type": "resnet", "embedding_size": 8, "hidden_sizes": [8, 16],
    ...                                   "depths": [1, 1], "layer_type": "basic", "out_features": ["stage2"]})
    >>> out = DetrForObjectDetection.from_config(cfg).eval()(torch.randn(1, 3, 64, 64))
    >>> out.logits.shape, out.pred_boxes.shape
    (torch.Size([1, 5, 4]), torch.Size([1, 5, 4]))
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..config import PretrainedConfig
from ..errors import ConfigError, InvalidInputError, UnsupportedOptionError
from ..layers import activation, attention, merge_heads, split_heads
from ..layers.backbone import backbone_class, backbone_config, freeze_batch_norms
from ..layers.detection import MLPPredictionHead, ObjectDetectionOutput, detection_loss
from ..layers.detr_segmentation import (DetrMaskHeadSmallConv, DetrMHAttentionMap, DetrSegmentationOutput,
                                       check_mask_head)
from ..layers.pixels import check_image_pixels
from ..modeling import PreTrainedModel
from ..outputs import ModelOutput
from .timm_resnet import legacy_backbone_config

logger = logging.getLogger("pretrained")
_LEARNED_POSITIONS = 50   # rows / columns the learned position tables hold (the reference's)


class DetrConfig(PretrainedConfig):
    """The reference's fields and defaults (facebook/detr-resnet-50's transformer)."""

    model_type = "detr"
    attribute_map = {"hidden_size": "d_model", "num_attention_heads": "encoder_attention_heads",
                     "num_hidden_layers": "encoder_layers"}

    backbone_config: dict | None = None
    use_timm_backbone: bool = True
    num_channels: int = 3
    num_queries: int = 100
    encoder_layers: int = 6
    encoder_ffn_dim: int = 2048
    encoder_attention_heads: int = 8
    decoder_layers: int = 6
    decoder_ffn_dim: int = 2048
    decoder_attention_heads: int = 8
    encoder_layerdrop: float = 0.0
    decoder_layerdrop: float = 0.0
    is_encoder_decoder: bool = True
    activation_function: str = "relu"
    d_model: int = 256
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    init_std: float = 0.02
    init_xavier_std: float = 1.0
    auxiliary_loss: bool = False
    position_embedding_type: str = "sine"
    dilation: bool | None = False
    class_cost: int | float = 1
    bbox_cost: int | float = 5
    giou_cost: int | float = 2
    mask_loss_coefficient: int | float = 1
    dice_loss_coefficient: int | float = 1
    bbox_loss_coefficient: int | float = 5
    giou_loss_coefficient: int | float = 2
    eos_coefficient: float = 0.1

    def __init__(self, **kwargs: Any) -> None:
        inner = kwargs.get("backbone_config")
        if isinstance(inner, PretrainedConfig):   # a config object is stored as its dict, as saved
            kwargs["backbone_config"] = {k: v for k, v in inner.to_dict().items() if k != "pretrained_version"}
        super().__init__(**kwargs)

    def validate(self) -> None:
        req = self._require
        # the legacy timm fields leave the config (the backbone_config dict holds them; "backbone"
        # would also hide the method of that name); with a backbone_config they are ignored, as there
        legacy = {k: self._extra.pop(k) for k in ("backbone", "backbone_kwargs") if k in self._extra}
        for key in legacy:
            self.__dict__.pop(key, None)
        if self.backbone_config is None and self.use_timm_backbone:
            object.__setattr__(self, "backbone_config", legacy_backbone_config(
                legacy.get("backbone"), legacy.get("backbone_kwargs"), self.num_channels, bool(self.dilation)))
        elif self.backbone_config is None:   # the reference's default for use_timm_backbone=False
            object.__setattr__(self, "backbone_config", {"model_type": "resnet", "out_features": ["stage4"]})
        backbone = self.backbone()   # a bad backbone_config fails here, with its own message
        if self.dilation and backbone.model_type != "timm_backbone":
            raise UnsupportedOptionError("DetrConfig: dilation=True (DC5) needs a timm backbone (use_timm_backbone=True, "
                                         "backbone='resnet50'...); the reference ignores it for a ResNet "
                                         "backbone_config: set dilation=False")
        for key in ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "decoder_attention_heads",
                    "encoder_ffn_dim", "decoder_ffn_dim", "num_queries", "num_channels"):
            req(getattr(self, key) > 0, f"{key} must be > 0, got {getattr(self, key)}")
        for key in ("encoder_attention_heads", "decoder_attention_heads"):
            req(self.d_model % getattr(self, key) == 0,
                f"d_model {self.d_model} is not a multiple of {key} {getattr(self, key)}")
        req(self.d_model % 2 == 0, f"d_model must be even (half rows, half columns of positions), got {self.d_model}")
        req(self.position_embedding_type in ("sine", "learned"),
            f"position_embedding_type must be 'sine' or 'learned', got {self.position_embedding_type!r}")
        for key in ("dropout", "attention_dropout", "activation_dropout", "encoder_layerdrop", "decoder_layerdrop"):
            req(0.0 <= getattr(self, key) <= 1.0, f"{key} must be in [0, 1], got {getattr(self, key)}")
        for key in ("class_cost", "bbox_cost", "giou_cost", "bbox_loss_coefficient", "giou_loss_coefficient",
                    "eos_coefficient"):
            req(getattr(self, key) >= 0, f"{key} must be >= 0, got {getattr(self, key)}")
        req(self.class_cost or self.bbox_cost or self.giou_cost,
            "class_cost, bbox_cost and giou_cost cannot all be 0 (the matching would be arbitrary)")
        activation(self.activation_function)

    def backbone(self) -> PretrainedConfig:
        """The backbone's config object (this library's class for its ``model_type``: a ResNet,
        or a timm-layout ResNet for ``use_timm_backbone``)."""
        cfg = backbone_config(self.backbone_config)
        if cfg.model_type not in ("resnet", "timm_backbone"):
            raise ConfigError(f"DetrConfig: backbone model_type {cfg.model_type!r}; DETR here takes a 'resnet' "
                              "backbone_config or a timm ResNet ('timm_backbone', use_timm_backbone=True)")
        if cfg.num_channels != self.num_channels:
            raise ConfigError(f"DetrConfig: num_channels {self.num_channels} but the backbone takes {cfg.num_channels}")
        return cfg

    @property
    def pretrained_backbone_requested(self) -> bool:
        """``use_pretrained_backbone`` (true in the facebook/detr-* configs): never downloaded here."""
        inner = self.backbone_config or {}
        return bool(self._extra.get("use_pretrained_backbone") or inner.get("use_pretrained_backbone"))


# --- backbone and positions ---------------------------------------------------------------------
class DetrConvEncoder(nn.Module):
    """``model``: the backbone (frozen batch norms); returns its feature maps with the pixel
    mask brought to each map's size."""

    def __init__(self, config: DetrConfig) -> None:
        super().__init__()
        cfg = config.backbone()
        self.model = backbone_class(cfg.model_type)(cfg)
        self.timm = cfg.model_type == "timm_backbone"
        freeze_batch_norms(self.model)
        self.freeze_as_built()
        self.channels = list(self.model.channels)

    def freeze_as_built(self) -> None:
        """The reference's (5.x) initial freeze, quirks included: when the backbone's model_type
        has "resnet" in it, what is outside "stage.1/2/3" (all of this ResNet: "stages.N"); a timm
        ResNet ("timm_backbone") trains whole (4.x froze its stem and layer1)."""
        for p in self.model.parameters():
            p.requires_grad_(self.timm)

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for feature in self.model(pixel_values).feature_maps:
            mask = F.interpolate(pixel_mask[None].float(), size=feature.shape[-2:]).to(torch.bool)[0]
            out.append((feature, mask))
        return out


class DetrConvModel(nn.Module):
    """``conv_encoder``: what the checkpoints name ``model.backbone.conv_encoder``."""

    def __init__(self, config: DetrConfig) -> None:
        super().__init__()
        self.conv_encoder = DetrConvEncoder(config)

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return self.conv_encoder(pixel_values, pixel_mask)


def sine_positions(mask: torch.Tensor, features: int, dtype: torch.dtype, temperature: float = 10000.0) -> torch.Tensor:
    """(B, h, w) mask -> (B, 2 * features, h, w): DETR's normalised sine embedding, rows first."""
    m = mask.to(dtype)
    y = m.cumsum(1)
    x = m.cumsum(2)
    eps, scale = 1e-6, 2 * math.pi
    y = y / (y[:, -1:, :] + eps) * scale
    x = x / (x[:, :, -1:] + eps) * scale
    dim_t = torch.arange(features, dtype=torch.int64, device=mask.device).to(dtype)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / features)
    pos_x = x[:, :, :, None] / dim_t
    pos_y = y[:, :, :, None] / dim_t
    pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class DetrLearnedPositionEmbedding(nn.Module):
    """Learned ``column_embeddings`` and ``row_embeddings`` (50 each), concatenated per cell."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.row_embeddings = nn.Embedding(_LEARNED_POSITIONS, dim)
        self.column_embeddings = nn.Embedding(_LEARNED_POSITIONS, dim)

    def forward(self, shape: torch.Size) -> torch.Tensor:
        b, _, h, w = shape
        if h > _LEARNED_POSITIONS or w > _LEARNED_POSITIONS:
            raise InvalidInputError(f"the feature map is {h}x{w}, more than the {_LEARNED_POSITIONS}x{_LEARNED_POSITIONS} "
                                    "learned positions; use smaller pictures (the image processor's size)")
        device = self.row_embeddings.weight.device
        x = self.column_embeddings(torch.arange(w, device=device))
        y = self.row_embeddings(torch.arange(h, device=device))
        pos = torch.cat([x.unsqueeze(0).repeat(h, 1, 1), y.unsqueeze(1).repeat(1, w, 1)], dim=-1)
        return pos.permute(2, 0, 1).unsqueeze(0).repeat(b, 1, 1, 1)


# --- transformer --------------------------------------------------------------------------------
class DetrAttention(nn.Module):
    """Multi-head attention whose queries and keys get position embeddings added (not values)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None, mask: torch.Tensor | None,
                keys: torch.Tensor | None = None, key_positions: torch.Tensor | None = None) -> torch.Tensor:
        query_in = x if positions is None else x + positions
        if keys is None:   # self-attention: the keys are the queries' input
            keys, key_in = x, query_in
        else:
            key_in = keys if key_positions is None else keys + key_positions
        q = split_heads(self.q_proj(query_in), self.heads)
        k = split_heads(self.k_proj(key_in), self.heads)
        v = split_heads(self.v_proj(keys), self.heads)
        y = attention(q, k, v, mask, causal=False, dropout=self.dropout if self.training else 0.0)
        return self.out_proj(merge_heads(y))


class _Block(nn.Module):
    """The residual MLP (``fc1``, ``fc2``) and LayerNorms both layer kinds share."""

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        h = F.dropout(self.act(self.fc1(x)), p=self.activation_dropout, training=self.training)
        return self.final_layer_norm(x + F.dropout(self.fc2(h), p=self.dropout, training=self.training))

    def _mlp_init(self, config: DetrConfig, ffn: int) -> None:
        self.fc1 = nn.Linear(config.d_model, ffn)
        self.fc2 = nn.Linear(ffn, config.d_model)
        self.final_layer_norm = nn.LayerNorm(config.d_model)
        self.act = activation(config.activation_function)
        self.dropout = config.dropout
        self.activation_dropout = config.activation_dropout


class DetrEncoderLayer(_Block):
    def __init__(self, config: DetrConfig) -> None:
        super().__init__()
        self.self_attn = DetrAttention(config.d_model, config.encoder_attention_heads, config.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model)
        self._mlp_init(config, config.encoder_ffn_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor) -> torch.Tensor:
        h = F.dropout(self.self_attn(x, positions, mask), p=self.dropout, training=self.training)
        y = self._mlp(self.self_attn_layer_norm(x + h))
        if self.training and not torch.isfinite(y).all():   # float16 overflow: clamp, as the reference
            big = torch.finfo(y.dtype).max - 1000
            y = y.clamp(min=-big, max=big)
        return y


class DetrDecoderLayer(_Block):
    def __init__(self, config: DetrConfig) -> None:
        super().__init__()
        self.self_attn = DetrAttention(config.d_model, config.decoder_attention_heads, config.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model)
        self.encoder_attn = DetrAttention(config.d_model, config.decoder_attention_heads, config.attention_dropout)
        self.encoder_attn_layer_norm = nn.LayerNorm(config.d_model)
        self._mlp_init(config, config.decoder_ffn_dim)

    def forward(self, x: torch.Tensor, self_mask: torch.Tensor | None, query_positions: torch.Tensor,
                memory: torch.Tensor, memory_mask: torch.Tensor | None, memory_positions: torch.Tensor) -> torch.Tensor:
        h = F.dropout(self.self_attn(x, query_positions, self_mask), p=self.dropout, training=self.training)
        x = self.self_attn_layer_norm(x + h)
        h = self.encoder_attn(x, query_positions, memory_mask, keys=memory, key_positions=memory_positions)
        x = self.encoder_attn_layer_norm(x + F.dropout(h, p=self.dropout, training=self.training))
        return self._mlp(x)


class DetrEncoder(nn.Module):
    def __init__(self, config: DetrConfig) -> None:
        super().__init__()
        self.dropout = config.dropout
        self.layers = nn.ModuleList(DetrEncoderLayer(config) for _ in range(config.encoder_layers))


class DetrDecoder(nn.Module):
    def __init__(self, config: DetrConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DetrDecoderLayer(config) for _ in range(config.decoder_layers))
        self.layernorm = nn.LayerNorm(config.d_model)


@dataclass
class DetrModelOutput(ModelOutput):
    """The decoder's last states (B, num_queries, d_model) and the encoder's (B, h*w, d_model);
    ``intermediate_hidden_states`` (decoder_layers, B, num_queries, d_model) with auxiliary_loss."""

    last_hidden_state: torch.Tensor
    decoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    intermediate_hidden_states: torch.Tensor | None = None


def _key_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, S) 1 = keep -> a boolean (B, 1, 1, S) attention mask (None when nothing is masked)."""
    if mask is None or bool(mask.all()):
        return None
    return mask.bool()[:, None, None, :]


# --- models -------------------------------------------------------------------------------------
class DetrPreTrainedModel(PreTrainedModel):
    config_class = DetrConfig
    base_model_prefix = "model"
    forward_inputs = frozenset({"pixel_values", "pixel_mask"})

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.init_std
        if isinstance(module, DetrMaskHeadSmallConv):   # the reference's: He-uniform (a=1) convolutions
            for m in module.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_uniform_(m.weight, a=1)
                    nn.init.zeros_(m.bias)
        elif isinstance(module, DetrMHAttentionMap):
            for m in (module.q_linear, module.k_linear):
                nn.init.xavier_uniform_(m.weight, gain=self.config.init_xavier_std)
                nn.init.zeros_(m.bias)
        elif isinstance(module, DetrLearnedPositionEmbedding):
            nn.init.uniform_(module.row_embeddings.weight)
            nn.init.uniform_(module.column_embeddings.weight)
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def init_weights(self) -> None:
        super().init_weights()
        for module in self.modules():   # the backbone keeps its own (He) initialisation
            if isinstance(module, DetrConvEncoder):
                module.model.init_weights()
        if self.config.pretrained_backbone_requested:   # built from a config, not loaded from a checkpoint
            logger.warning("%s: use_pretrained_backbone=True, but backbone weights are never downloaded (nor by the "
                           "reference): the backbone weights are random; from_pretrained loads a checkpoint's",
                           type(self).__name__)

    def _finish_loading(self, *args: Any, **kwargs: Any) -> None:
        super()._finish_loading(*args, **kwargs)
        self._conv_encoder().freeze_as_built()   # loading made fresh parameters: frozen again, as built

    def freeze_backbone(self) -> None:
        """Stop training the backbone's parameters (its batch norms are frozen anyway)."""
        for p in self._conv_encoder().model.parameters():
            p.requires_grad_(False)

    def unfreeze_backbone(self) -> None:
        """Train the backbone's convolutions too."""
        for p in self._conv_encoder().model.parameters():
            p.requires_grad_(True)

    def _conv_encoder(self) -> DetrConvEncoder:
        return next(m for m in self.modules() if isinstance(m, DetrConvEncoder))

    def get_input_embeddings(self) -> nn.Module:
        return self._conv_encoder().model.get_input_embeddings()


class DetrModel(DetrPreTrainedModel):
    """Backbone + encoder-decoder: ``last_hidden_state`` (B, num_queries, d_model) after the
    decoder's LayerNorm, ``encoder_last_hidden_state``; with ``output_hidden_states`` both
    stacks' states (their input first; the decoder's last one after its LayerNorm, as the
    reference returns it)."""

    def __init__(self, config: DetrConfig) -> None:
        super().__init__(config)
        self.backbone = DetrConvModel(config)
        half = config.d_model // 2
        self.position_embedding = DetrLearnedPositionEmbedding(half) if config.position_embedding_type == "learned" \
            else None
        self.query_position_embeddings = nn.Embedding(config.num_queries, config.d_model)
        self.input_projection = nn.Conv2d(self.backbone.conv_encoder.channels[-1], config.d_model, kernel_size=1)
        self.encoder = DetrEncoder(config)
        self.decoder = DetrDecoder(config)

    def _pixels(self, pixel_values: Any, pixel_mask: Any) -> tuple[torch.Tensor, torch.Tensor]:
        weight = self.input_projection.weight
        x = check_image_pixels(pixel_values, self.config.num_channels, weight.dtype, "DETR").to(weight.device)
        b, _, h, w = x.shape
        if pixel_mask is None:
            return x, torch.ones((b, h, w), dtype=torch.long, device=x.device)
        if not isinstance(pixel_mask, torch.Tensor) or pixel_mask.is_floating_point() and not bool(
                ((pixel_mask == 0) | (pixel_mask == 1)).all()):
            raise InvalidInputError("pixel_mask must be a tensor of 0 (padding) and 1 (picture), as the image "
                                    "processor returns it")
        if pixel_mask.dim() == 2:
            pixel_mask = pixel_mask.unsqueeze(0)
        if tuple(pixel_mask.shape) != (b, h, w):
            raise InvalidInputError(f"pixel_mask has shape {tuple(pixel_mask.shape)}, the pixels {tuple(x.shape)}: "
                                    f"it must be (batch, height, width) = ({b}, {h}, {w})")
        return x, pixel_mask.to(x.device)

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None,
                decoder_attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None) -> DetrModelOutput:
        return self.run(pixel_values, pixel_mask, decoder_attention_mask, output_hidden_states)[0]

    def run(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None,
            decoder_attention_mask: torch.Tensor | None = None, output_hidden_states: bool | None = None
            ) -> tuple[DetrModelOutput, list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        """:meth:`forward`'s output, the backbone's (feature map, mask) pairs and the projected
        last map (B, d_model, h, w): what the segmentation head reads besides."""
        cfg = self.config
        if self.training and (cfg.encoder_layerdrop or cfg.decoder_layerdrop):
            raise UnsupportedOptionError("encoder_layerdrop / decoder_layerdrop > 0 in training: the reference "
                                         "ignores layer drop for DETR, so it is not done here either; set them to 0")
        keep = bool(output_hidden_states if output_hidden_states is not None else cfg.output_hidden_states)
        x, pixel_mask = self._pixels(pixel_values, pixel_mask)
        maps = self.backbone(x, pixel_mask)
        feature, mask = maps[-1]
        b = x.shape[0]
        projected = self.input_projection(feature)
        tokens = projected.flatten(2).transpose(1, 2)
        if self.position_embedding is not None:
            positions = self.position_embedding(feature.shape).to(x.dtype)
        else:
            positions = sine_positions(mask, cfg.d_model // 2, x.dtype)
        positions = positions.flatten(2).transpose(1, 2)
        flat_mask = mask.flatten(1)
        memory_mask = _key_mask(flat_mask)

        h = F.dropout(tokens, p=cfg.dropout, training=self.training)
        encoder_states = [h] if keep else None
        for layer in self.encoder.layers:
            h = layer(h, memory_mask, positions)
            if encoder_states is not None:
                encoder_states.append(h)
        memory = h

        query_positions = self.query_position_embeddings.weight.unsqueeze(0).repeat(b, 1, 1)
        q = torch.zeros_like(query_positions)
        self_mask = _key_mask(decoder_attention_mask.to(q.device)) if decoder_attention_mask is not None else None
        decoder_states = [q] if keep else None
        intermediate = [] if cfg.auxiliary_loss else None
        for layer in self.decoder.layers:
            q = layer(q, self_mask, query_positions, memory, memory_mask, positions)
            if decoder_states is not None:
                decoder_states.append(q)
            if intermediate is not None:   # the reference normalises between layers when it keeps them
                q = self.decoder.layernorm(q)
                intermediate.append(q)
        last = self.decoder.layernorm(q)
        if decoder_states is not None:   # as the reference records them: the last one is the normalised output
            decoder_states[-1] = last
        return DetrModelOutput(
            last_hidden_state=last, decoder_hidden_states=tuple(decoder_states) if keep else None,
            encoder_last_hidden_state=memory, encoder_hidden_states=tuple(encoder_states) if keep else None,
            intermediate_hidden_states=torch.stack(intermediate) if intermediate is not None else None), maps, projected


class DetrForObjectDetection(DetrPreTrainedModel):
    """``logits`` (B, num_queries, num_labels + 1) and ``pred_boxes``; with ``labels`` the set
    loss, its parts and (``auxiliary_loss``) the intermediate layers' outputs."""

    def __init__(self, config: DetrConfig) -> None:
        super().__init__(config)
        self.model = DetrModel(config)
        self.class_labels_classifier = nn.Linear(config.d_model, config.num_labels + 1)
        self.bbox_predictor = MLPPredictionHead(config.d_model, config.d_model, 4, 3)

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None,
                decoder_attention_mask: torch.Tensor | None = None, labels: list[dict] | None = None,
                output_hidden_states: bool | None = None) -> ObjectDetectionOutput:
        out = self.model(pixel_values, pixel_mask, decoder_attention_mask, output_hidden_states)
        logits = self.class_labels_classifier(out.last_hidden_state)
        pred_boxes = self.bbox_predictor(out.last_hidden_state).sigmoid()
        loss = parts = aux = None
        if labels is not None:
            pairs = []
            if self.config.auxiliary_loss:
                inter = out.intermediate_hidden_states
                classes, boxes = self.class_labels_classifier(inter), self.bbox_predictor(inter).sigmoid()
                pairs = list(zip(classes[:-1], boxes[:-1]))
                aux = [{"logits": c, "pred_boxes": bx} for c, bx in pairs]
            loss, parts = detection_loss(logits, pred_boxes, labels, self.config, pairs)
        return ObjectDetectionOutput(
            loss=loss, loss_dict=parts, logits=logits, pred_boxes=pred_boxes, auxiliary_outputs=aux,
            last_hidden_state=out.last_hidden_state, decoder_hidden_states=out.decoder_hidden_states,
            encoder_last_hidden_state=out.encoder_last_hidden_state, encoder_hidden_states=out.encoder_hidden_states)


class DetrForSegmentation(DetrPreTrainedModel):
    """The detector (``detr``) plus ``bbox_attention`` and ``mask_head``: ``pred_masks`` (B,
    num_queries, H/4, W/4) mask logits per query besides ``logits`` and ``pred_boxes``; with
    ``labels`` (``class_labels``, ``boxes`` and ``masks`` per picture) the set loss with the mask
    terms. The backbone must give at least 3 feature maps (``out_features``; the last feeds the
    transformer, the first three the mask head's FPN)."""

    def __init__(self, config: DetrConfig) -> None:
        super().__init__(config)
        self.detr = DetrForObjectDetection(config)
        channels = self.detr.model.backbone.conv_encoder.channels
        heads = config.encoder_attention_heads
        check_mask_head(config.d_model, heads, channels)
        self.mask_head = DetrMaskHeadSmallConv(config.d_model + heads, channels[:3][::-1], config.d_model,
                                               config.activation_function)
        self.bbox_attention = DetrMHAttentionMap(config.d_model, heads)

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None,
                decoder_attention_mask: torch.Tensor | None = None, labels: list[dict] | None = None,
                output_hidden_states: bool | None = None) -> DetrSegmentationOutput:
        detr = self.detr
        out, maps, projected = detr.model.run(pixel_values, pixel_mask, decoder_attention_mask, output_hidden_states)
        hidden = out.last_hidden_state
        logits = detr.class_labels_classifier(hidden)
        pred_boxes = detr.bbox_predictor(hidden).sigmoid()
        b, _, h, w = projected.shape
        memory = out.encoder_last_hidden_state.transpose(1, 2).reshape(b, -1, h, w)
        attention = self.bbox_attention(hidden, memory, maps[-1][1])
        masks = self.mask_head(projected, attention, [m for m, _ in maps[:3]][::-1])
        pred_masks = masks.view(b, hidden.shape[1], *masks.shape[-2:])
        loss = parts = aux = None
        if labels is not None:
            pairs = []
            if self.config.auxiliary_loss:
                inter = out.intermediate_hidden_states
                classes, boxes = detr.class_labels_classifier(inter), detr.bbox_predictor(inter).sigmoid()
                pairs = list(zip(classes[:-1], boxes[:-1]))
                aux = [{"logits": c, "pred_boxes": bx} for c, bx in pairs]
            loss, parts = detection_loss(logits, pred_boxes, labels, self.config, pairs, pred_masks=pred_masks)
        return DetrSegmentationOutput(
            loss=loss, loss_dict=parts, logits=logits, pred_boxes=pred_boxes, pred_masks=pred_masks,
            auxiliary_outputs=aux, last_hidden_state=hidden, decoder_hidden_states=out.decoder_hidden_states,
            encoder_last_hidden_state=out.encoder_last_hidden_state, encoder_hidden_states=out.encoder_hidden_states)


MODEL_CLASSES = {
    "model": DetrModel,
    "object-detection": DetrForObjectDetection,
    # the reference lists it under AutoModelForUniversalSegmentation and AutoModelForImageSegmentation
    # (which picks the first head it finds, this one)
    "universal-segmentation": DetrForSegmentation,
}
