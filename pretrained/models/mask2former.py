"""Mask2Former (``model_type: "mask2former"``, Cheng et al. 2022): universal image segmentation
(semantic, instance, panoptic) with one architecture.

Input: ``pixel_values`` (B, num_channels, H, W), what :class:`~pretrained.processing.
Mask2FormerImageProcessor` returns (``pixel_mask`` is accepted and, as in the reference, not
read: padding is computed like any pixel).

1. ``model.pixel_level_module.encoder``: the backbone ``backbone_config`` names (Swin by default,
   ResNet too; built through :mod:`pretrained.layers.backbone`), its four feature maps (strides
   4 to 32).
2. ``model.pixel_level_module.decoder``: the pixel decoder (:mod:`pretrained.layers.
   mask2former_pixel_decoder`): multi-scale deformable attention over the three coarsest maps, an
   FPN step to stride 4, the per-pixel mask features.
3. ``model.transformer_module``: ``num_queries`` queries through ``decoder_layers - 1`` masked-
   attention layers (:mod:`pretrained.layers.mask2former_decoder`), a mask prediction from the
   normalised queries before the first layer and after every layer.
4. ``class_predictor``: ``num_labels + 1`` logits per query (the last: "no object") from each of
   those normalised queries; ``class_queries_logits`` / ``masks_queries_logits`` are the last
   layer's (B, Q, num_labels + 1) and (B, Q, H/4, W/4); the image processor's post-processing turns
   them into maps and segments.

With ``mask_labels`` and ``class_labels`` the loss (:mod:`pretrained.layers.mask2former_loss`):
Hungarian matching and point-sampled mask losses, over every layer's prediction (as the reference
computes it: ``use_auxiliary_loss`` does not turn the earlier layers' terms off). Module names equal the checkpoints' keys (``model.pixel_level_module.
encoder.embedder...``, ``model.transformer_module.decoder.layers.0.cross_attn.in_proj_weight``,
``class_predictor``, ``criterion.empty_weight``).

Example::

    >>> import torch
    >>> from pretrained.models.mask2former import Mask2FormerConfig, Mask2FormerForUniversalSegmentation
    >>> backbone = {"model_type": "resnet", "embedding_size": 8, "hidden_sizes": [8, 16, 24, 32], "depths": [1, 1, 1, 1],
    ...             "layer_type": "basic", "out_features": ["stage1", "stage2", "stage3", "stage4"]}
    >>> cfg = Mask2FormerConfig(backbone_config=backbone, feature_size=32, mask_feature_size=16, hidden_dim=16,
    ...                         encoder_feedforward_dim=32, encoder_layers=1, decoder_layers=3, num_attention_heads=2,
    ...                         dim_feedforward=32, num_queries=5, num_labels=3)
    >>> model = Mask2FormerForUniversalSegmentation.from_config(cfg).eval()
    >>> out = model(torch.randn(1, 3, 64, 64))
    >>> out.class_queries_logits.shape, out.masks_queries_logits.shape
    (torch.Size([1, 5, 4]), torch.Size([1, 5, 16, 16]))
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import PretrainedConfig
from ..errors import ConfigError, UnsupportedOptionError
from ..layers import activation
from ..layers.backbone import backbone_class, backbone_config
from ..layers.deformable_attention import MultiscaleDeformableAttention, init_deformable_attention_
from ..layers.mask2former_decoder import (Mask2FormerMaskedAttentionDecoderLayer, Mask2FormerTransformerModule,
                                          MaskedCrossAttention)
from ..layers.mask2former_loss import check_mask_labels, mask2former_losses, weighted_loss
from ..layers.mask2former_pixel_decoder import NUM_FEATURE_LEVELS, Mask2FormerPixelDecoder
from ..layers.pixels import check_image_pixels
from ..modeling import PreTrainedModel
from ..outputs import ModelOutput

# the reference's default backbone (facebook/mask2former-swin-small-*'s shape)
DEFAULT_BACKBONE = {"model_type": "swin", "depths": [2, 2, 18, 2], "drop_path_rate": 0.3,
                    "out_features": ["stage1", "stage2", "stage3", "stage4"]}


class Mask2FormerConfig(PretrainedConfig):
    """The reference's fields and defaults; ``backbone_config`` is the backbone's config (a config
    object, or a dict with ``model_type`` as config.json stores it; Swin-small-shaped by default)."""

    model_type = "mask2former"
    attribute_map = {"hidden_size": "hidden_dim", "num_hidden_layers": "decoder_layers"}

    feature_size: int = 256
    mask_feature_size: int = 256
    hidden_dim: int = 256
    encoder_feedforward_dim: int = 1024
    activation_function: str = "relu"
    encoder_layers: int = 6
    decoder_layers: int = 10
    num_attention_heads: int = 8
    dropout: float = 0.0
    dim_feedforward: int = 2048
    pre_norm: bool = False
    enforce_input_projection: bool = False
    common_stride: int = 4
    ignore_value: int = 255
    num_queries: int = 100
    no_object_weight: float = 0.1
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    train_num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    init_std: float = 0.02
    init_xavier_std: float = 1.0
    use_auxiliary_loss: bool = True
    feature_strides: list = [4, 8, 16, 32]
    output_auxiliary_logits: bool | None = None

    def __init__(self, backbone_config: Any = None, **kwargs: Any) -> None:
        if kwargs.get("use_timm_backbone"):
            raise UnsupportedOptionError("use_timm_backbone=True: timm backbones are not available here; give a "
                                         "backbone_config (model_type 'swin' or 'resnet')")
        if isinstance(kwargs.get("backbone"), str) and backbone_config is None:
            raise UnsupportedOptionError(f"backbone={kwargs['backbone']!r}: a backbone named by checkpoint is not "
                                         "supported; give its config as backbone_config")
        if isinstance(kwargs.get("feature_strides"), tuple):
            kwargs["feature_strides"] = list(kwargs["feature_strides"])
        object.__setattr__(self, "backbone_config", _backbone_config(
            copy.deepcopy(DEFAULT_BACKBONE) if backbone_config is None else backbone_config))
        super().__init__(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["backbone_config"] = self.backbone_config.to_dict()
        return dict(sorted(out.items()))

    def validate(self) -> None:
        req = self._require
        for key in ("feature_size", "mask_feature_size", "hidden_dim", "encoder_feedforward_dim", "dim_feedforward",
                    "num_attention_heads", "num_queries", "decoder_layers", "common_stride", "train_num_points"):
            req(getattr(self, key) > 0, f"{key} must be > 0, got {getattr(self, key)}")
        req(self.encoder_layers >= 0, f"encoder_layers must be >= 0, got {self.encoder_layers}")
        req(self.feature_size % 32 == 0, f"feature_size must be a multiple of 32 (GroupNorm of 32 groups), got "
                                         f"{self.feature_size}")
        for key in ("feature_size", "hidden_dim"):
            req(getattr(self, key) % self.num_attention_heads == 0,
                f"{key} {getattr(self, key)} is not divisible by num_attention_heads {self.num_attention_heads}")
        strides = self.feature_strides
        req(isinstance(strides, list) and len(strides) >= NUM_FEATURE_LEVELS and all(
            isinstance(s, int) and s > 0 and s & (s - 1) == 0 for s in strides),
            f"feature_strides must list at least {NUM_FEATURE_LEVELS} powers of two, got {strides!r}")
        finest = min(strides[-NUM_FEATURE_LEVELS:])
        req(self.common_stride & (self.common_stride - 1) == 0 and self.common_stride <= finest,
            f"common_stride must be a power of two up to {finest}, got {self.common_stride}")
        maps = len(self.backbone_config.out_features)
        req(maps == len(strides), f"the backbone returns {maps} maps (out_features "
                                  f"{self.backbone_config.out_features}) but feature_strides has {len(strides)}")
        req(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        req(0.0 <= self.importance_sample_ratio <= 1.0 and self.oversample_ratio >= 1.0,
            "importance_sample_ratio must be in [0, 1] and oversample_ratio >= 1")
        activation(self.activation_function)


def _backbone_config(value: Any):
    try:
        cfg = backbone_config(value)
    except ConfigError as e:
        raise ConfigError(f"Mask2FormerConfig.backbone_config: {e}") from None
    if not hasattr(cfg, "out_features"):
        raise ConfigError(f"Mask2FormerConfig.backbone_config: {type(cfg).__name__} is not a backbone config")
    return cfg


@dataclass
class Mask2FormerModelOutput(ModelOutput):
    """The reference's fields: the backbone's last map, the mask features, the last layer's queries
    (B, Q, C); with ``output_hidden_states`` the backbone maps, the pixel decoder's three maps, the
    transformer decoder's states (Q, B, C) and normalised intermediate queries (Q, B, C);
    ``masks_queries_logits`` every prediction's masks; ``attentions`` the query self-attentions."""

    encoder_last_hidden_state: torch.Tensor | None = None
    pixel_decoder_last_hidden_state: torch.Tensor | None = None
    transformer_decoder_last_hidden_state: torch.Tensor | None = None
    encoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    pixel_decoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    transformer_decoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    transformer_decoder_intermediate_states: tuple[torch.Tensor, ...] | None = None
    masks_queries_logits: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class Mask2FormerForUniversalSegmentationOutput(ModelOutput):
    """``class_queries_logits`` (B, Q, num_labels + 1) and ``masks_queries_logits`` (B, Q, H/4, W/4)
    of the last layer; ``auxiliary_logits`` (with ``output_auxiliary_logits``) the earlier
    predictions as dicts of both; ``loss`` with labels; the rest as :class:`Mask2FormerModelOutput`."""

    loss: torch.Tensor | None = None
    class_queries_logits: torch.Tensor | None = None
    masks_queries_logits: torch.Tensor | None = None
    auxiliary_logits: list[dict[str, torch.Tensor]] | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    pixel_decoder_last_hidden_state: torch.Tensor | None = None
    transformer_decoder_last_hidden_state: torch.Tensor | None = None
    encoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    pixel_decoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    transformer_decoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class Mask2FormerPixelLevelModule(nn.Module):
    """``encoder`` (the backbone) and ``decoder`` (the pixel decoder)."""

    def __init__(self, config: Mask2FormerConfig) -> None:
        super().__init__()
        self.encoder = backbone_class(config.backbone_config.model_type)(config.backbone_config)
        self.decoder = Mask2FormerPixelDecoder(config, feature_channels=self.encoder.channels)


class Mask2FormerLoss(nn.Module):
    """Holds ``empty_weight`` (the class weights of the cross-entropy: 1, and ``no_object_weight``
    for "no object"), as the checkpoints store it; the loss itself is
    :func:`~pretrained.layers.mask2former_loss.mask2former_losses`."""

    def __init__(self, config: Mask2FormerConfig) -> None:
        super().__init__()
        weight = torch.ones(config.num_labels + 1)
        weight[-1] = config.no_object_weight
        self.register_buffer("empty_weight", weight)


class Mask2FormerPreTrainedModel(PreTrainedModel):
    config_class = Mask2FormerConfig
    base_model_prefix = "model"
    forward_inputs = frozenset({"pixel_values", "pixel_mask"})
    # the backbones' (SwinBackbone.ignore_unexpected): the reference 5.x writes the Swin bare model's
    # unused final norm with a backbone; old Swin checkpoints hold relative_position_index buffers
    ignore_unexpected = (r"(^|\.)swin\.layernorm\.", r"relative_position_index$")

    def init_weights(self) -> None:
        """The reference's fresh initialisation; the backbone gets its own family's."""
        backbones = [m for m in self.modules() if isinstance(m, PreTrainedModel) and m is not self
                     and not isinstance(m, Mask2FormerPreTrainedModel)]
        inside = {id(m) for b in backbones for m in b.modules()}
        for module in reversed(list(self.modules())):   # children before the modules that override their init
            if id(module) not in inside:
                self._init_weights(module)
        for backbone in backbones:
            backbone.init_weights()
        self.tie_weights()

    def _init_weights(self, module: nn.Module) -> None:
        std, gain = self.config.init_std, self.config.init_xavier_std
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=1.0)   # queries and level embeddings: torch's default
        elif isinstance(module, MultiscaleDeformableAttention):
            init_deformable_attention_(module)
        elif isinstance(module, MaskedCrossAttention):
            nn.init.zeros_(module.in_proj_bias)
            nn.init.zeros_(module.out_proj.bias)
        elif isinstance(module, Mask2FormerMaskedAttentionDecoderLayer):
            for p in module.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p, gain=gain)
        elif isinstance(module, Mask2FormerTransformerModule):
            for proj in module.input_projections:
                if isinstance(proj, nn.Conv2d):
                    nn.init.xavier_uniform_(proj.weight, gain=gain)
                    nn.init.zeros_(proj.bias)
            for block in module.decoder.mask_predictor.mask_embedder:   # the mask MLP: torch's default
                block[0].reset_parameters()
        elif isinstance(module, Mask2FormerPixelDecoder):
            nn.init.normal_(module.level_embed, std=1.0)
        elif isinstance(module, Mask2FormerLoss):
            module.empty_weight.fill_(1.0)
            module.empty_weight[-1] = self.config.no_object_weight

    def get_input_embeddings(self) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} reads pixels: it has no input embeddings")


class Mask2FormerModel(Mask2FormerPreTrainedModel):
    """Backbone, pixel decoder and transformer decoder (see the module docstring); returns a
    :class:`Mask2FormerModelOutput`."""

    def __init__(self, config: Mask2FormerConfig) -> None:
        super().__init__(config)
        self.pixel_level_module = Mask2FormerPixelLevelModule(config)
        self.transformer_module = Mask2FormerTransformerModule(in_features=config.feature_size, config=config)

    def run(self, pixel_values: Any, keep_hidden: bool, keep_attentions: bool):
        """(backbone maps, mask features, the pixel decoder's maps, the transformer module's output)."""
        backbone = self.pixel_level_module.encoder
        weight = next(backbone.parameters())
        x = check_image_pixels(pixel_values, self.config.backbone_config.num_channels, weight.dtype,
                               type(self).__name__).to(weight.device)
        maps = backbone(x).feature_maps
        mask_features, multi_scale, _ = self.pixel_level_module.decoder(maps)
        decoded = self.transformer_module(multi_scale, mask_features, keep_hidden, keep_attentions)
        return maps, mask_features, multi_scale, decoded

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None,
                **kwargs: Any) -> Mask2FormerModelOutput:
        _check_kwargs(kwargs, type(self).__name__)
        keep = bool(output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states)
        maps, mask_features, multi_scale, decoded = self.run(pixel_values, keep, bool(output_attentions))
        return Mask2FormerModelOutput(
            encoder_last_hidden_state=maps[-1], pixel_decoder_last_hidden_state=mask_features,
            transformer_decoder_last_hidden_state=decoded.last_hidden_state,
            encoder_hidden_states=tuple(maps) if keep else None, pixel_decoder_hidden_states=multi_scale if keep else None,
            transformer_decoder_hidden_states=decoded.hidden_states,
            transformer_decoder_intermediate_states=decoded.intermediate_hidden_states if keep else None,
            masks_queries_logits=decoded.masks_queries_logits, attentions=decoded.attentions)


def _check_kwargs(kwargs: dict, name: str) -> None:
    kwargs.pop("return_dict", None)   # outputs are always the dataclass (it also unpacks like a tuple)
    if kwargs:
        raise UnsupportedOptionError(f"{name} got unexpected arguments {sorted(kwargs)}")


class Mask2FormerForUniversalSegmentation(Mask2FormerPreTrainedModel):
    """Mask2Former with its class head (and loss); returns a
    :class:`Mask2FormerForUniversalSegmentationOutput` for the image processor's post-processing."""

    def __init__(self, config: Mask2FormerConfig) -> None:
        super().__init__(config)
        self.model = Mask2FormerModel(config)
        self.class_predictor = nn.Linear(config.hidden_dim, config.num_labels + 1)
        self.criterion = Mask2FormerLoss(config)

    def forward(self, pixel_values: torch.Tensor, mask_labels: list[torch.Tensor] | None = None,
                class_labels: list[torch.Tensor] | None = None, pixel_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, output_auxiliary_logits: bool | None = None,
                output_attentions: bool | None = None, **kwargs: Any) -> Mask2FormerForUniversalSegmentationOutput:
        _check_kwargs(kwargs, type(self).__name__)
        config = self.config
        keep = bool(output_hidden_states if output_hidden_states is not None else config.output_hidden_states)
        aux_out = output_auxiliary_logits if output_auxiliary_logits is not None else config.output_auxiliary_logits
        training_loss = mask_labels is not None or class_labels is not None
        maps, mask_features, multi_scale, decoded = self.model.run(pixel_values, keep, bool(output_attentions))
        every = bool(aux_out) or training_loss
        states = decoded.intermediate_hidden_states if every else decoded.intermediate_hidden_states[-1:]
        classes = [self.class_predictor(s.transpose(0, 1)) for s in states]
        masks = decoded.masks_queries_logits
        loss = None
        if training_loss:
            logits = masks[-1]
            targets, target_classes = check_mask_labels(mask_labels, class_labels, logits.shape[0], config.num_labels,
                                                        logits.device, logits.dtype)
            # every earlier prediction is supervised too: the reference does so whatever use_auxiliary_loss says
            auxiliary = list(zip(masks[:-1], classes[:-1]))
            losses = mask2former_losses(logits, classes[-1], targets, target_classes, auxiliary, config,
                                        self.criterion.empty_weight)
            loss = weighted_loss(losses, config)
        return Mask2FormerForUniversalSegmentationOutput(
            loss=loss, class_queries_logits=classes[-1], masks_queries_logits=masks[-1],
            auxiliary_logits=[{"masks_queries_logits": m, "class_queries_logits": c}
                              for m, c in zip(masks[:-1], classes[:-1])] if aux_out else None,
            encoder_last_hidden_state=maps[-1], pixel_decoder_last_hidden_state=mask_features,
            transformer_decoder_last_hidden_state=decoded.last_hidden_state,
            encoder_hidden_states=tuple(maps) if keep else None, pixel_decoder_hidden_states=multi_scale if keep else None,
            transformer_decoder_hidden_states=decoded.hidden_states, attentions=decoded.attentions)


MODEL_CLASSES = {
    "model": Mask2FormerModel,
    "universal-segmentation": Mask2FormerForUniversalSegmentation,
}

__all__ = ["Mask2FormerConfig", "Mask2FormerModel", "Mask2FormerForUniversalSegmentation",
           "Mask2FormerModelOutput", "Mask2FormerForUniversalSegmentationOutput"]
