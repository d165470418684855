"""YOLOS (``model_type: "yolos"``, Fang et al. 2021): a plain ViT that detects objects through
``num_detection_tokens`` learned detection tokens, and its set-prediction detection head.

Input: ``pixel_values`` (B, num_channels, H, W) of any size of at least one patch, what
:class:`~pretrained.processing.YolosImageProcessor` returns (``pixel_mask``, which it also returns, is
accepted and not read: YOLOS attends to the padding, as the reference does).

The sequence is ``[CLS] + patches + detection tokens``. The learned ``position_embeddings`` hold
one table for the config's ``image_size`` grid; every forward resizes its patch part bicubically
(align_corners False) to the input's grid, the CLS and detection positions kept. Then the ViT
layers of :mod:`pretrained.layers.vit_blocks`; with ``use_mid_position_embeddings`` each layer but
the last is followed by adding its own (likewise resized) table from
``encoder.mid_position_embeddings`` (num_hidden_layers - 1, 1, tokens, hidden). A final
``layernorm``; the bare model's pooler is ``tanh(pooler.dense(CLS state))``.

The detector reads the detection tokens' final states: ``class_labels_classifier`` and
``bbox_predictor`` are 3-layer MLPs (ReLU between), giving ``logits`` (B, tokens, num_labels + 1;
the last class is "no object") and ``pred_boxes`` = sigmoid(...) as normalised (center_x,
center_y, width, height). With ``labels`` the DETR set loss of :mod:`pretrained.layers.detection`.
``hidden_states``: the embeddings, then every layer's output (before the mid-position addition),
as the reference records them.

Module names equal the checkpoints' keys (``vit.embeddings.detection_tokens``,
``vit.encoder.mid_position_embeddings``, ``vit.encoder.layer.0.attention.attention.query.weight``,
``class_labels_classifier.layers.2.weight``, ``bbox_predictor.layers.0.bias``).

Example::

    >>> import torch
    >>> from pretrained.models.yolos import YolosConfig, YolosForObjectDetection
    >>> cfg = YolosConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
    ...                   image_size=[32, 48], patch_size=8, num_detection_tokens=5, num_labels=3)
    >>> out = YolosForObjectDetection.from_config(cfg).eval()(torch.randn(1, 3, 40, 40))
    >>> out.logits.shape, out.pred_boxes.shape
    (torch.Size([1, 5, 4]), torch.Size([1, 5, 4]))
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..config import PretrainedConfig
from ..errors import UnsupportedOptionError
from ..layers import init_normal_
from ..layers.detection import MLPPredictionHead, ObjectDetectionOutput, detection_loss
from ..layers.vit_blocks import ImagePatchEmbeddings, ViTLayer, check_pixel_values, check_vit_config
from ..modeling import PreTrainedModel
from ..outputs import BaseModelOutput

_MAX_TOKENS = 1 << 20


class YolosConfig(PretrainedConfig):
    """The reference's fields and defaults (hustvl/yolos-base's shape)."""

    model_type = "yolos"

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    image_size: list = [512, 864]
    patch_size: int = 16
    num_channels: int = 3
    qkv_bias: bool = True
    num_detection_tokens: int = 100
    use_mid_position_embeddings: bool = True
    auxiliary_loss: bool = False
    class_cost: int | float = 1
    bbox_cost: int | float = 5
    giou_cost: int | float = 2
    bbox_loss_coefficient: int | float = 5
    giou_loss_coefficient: int | float = 2
    eos_coefficient: float = 0.1

    def __init__(self, **kwargs: Any) -> None:
        if isinstance(kwargs.get("image_size"), tuple):
            kwargs["image_size"] = list(kwargs["image_size"])
        super().__init__(**kwargs)

    @property
    def patch_grid(self) -> tuple[int, int]:
        """(patches along the height, along the width) of ``image_size``: the stored tables' grid."""
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    def validate(self) -> None:
        check_vit_config(self)
        size = self.image_size
        self._require(isinstance(size, list) and len(size) == 2
                      and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size),
                      f"image_size must be a [height, width] pair of positive ints, got {size!r}")
        self._require(self.patch_size > 0, f"patch_size must be a positive int, got {self.patch_size!r}")
        gh, gw = self.patch_grid
        self._require(gh > 0 and gw > 0, f"image_size {size} is smaller than patch_size {self.patch_size}")
        self._require(self.num_channels > 0, f"num_channels must be > 0, got {self.num_channels}")
        self._require(self.num_detection_tokens > 0,
                      f"num_detection_tokens must be > 0, got {self.num_detection_tokens}")
        self._require(gh * gw + self.num_detection_tokens <= _MAX_TOKENS,
                      f"image_size {size} with patch_size {self.patch_size} makes {gh * gw:,} patches, more than "
                      f"this library takes; check config.json")
        for key in ("class_cost", "bbox_cost", "giou_cost", "bbox_loss_coefficient", "giou_loss_coefficient",
                    "eos_coefficient"):
            self._require(getattr(self, key) >= 0, f"{key} must be >= 0, got {getattr(self, key)}")
        self._require(self.class_cost or self.bbox_cost or self.giou_cost,
                      "class_cost, bbox_cost and giou_cost cannot all be 0 (the matching would be arbitrary)")


def resize_token_positions(tables: torch.Tensor, grid: tuple[int, int], new_grid: tuple[int, int],
                           detection_tokens: int) -> torch.Tensor:
    """(N, 1 + gh*gw + D, H) position tables -> the same for ``new_grid``: the patch part laid out
    on its grid and resized bicubically (align_corners False); the CLS position (first) and the D
    detection positions (last) kept."""
    n, _, dim = tables.shape
    patches = tables[:, 1:-detection_tokens].transpose(1, 2).reshape(n, dim, grid[0], grid[1])
    patches = F.interpolate(patches, size=new_grid, mode="bicubic", align_corners=False)
    return torch.cat((tables[:, :1], patches.flatten(2).transpose(1, 2), tables[:, -detection_tokens:]), dim=1)


class YolosEmbeddings(nn.Module):
    """``cls_token``, the patches (``patch_embeddings.projection``), ``detection_tokens``; the
    resized ``position_embeddings`` added; dropout."""

    def __init__(self, config: YolosConfig) -> None:
        super().__init__()
        self.grid = config.patch_grid
        self.patch = config.patch_size
        self.detection = config.num_detection_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.detection_tokens = nn.Parameter(torch.zeros(1, config.num_detection_tokens, config.hidden_size))
        self.patch_embeddings = ImagePatchEmbeddings(config)
        self.position_embeddings = nn.Parameter(
            torch.zeros(1, 1 + self.grid[0] * self.grid[1] + self.detection, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        height, width = pixel_values.shape[-2:]
        patches = self.patch_embeddings(pixel_values)
        b = patches.shape[0]
        x = torch.cat((self.cls_token.expand(b, -1, -1), patches, self.detection_tokens.expand(b, -1, -1)), dim=1)
        new_grid = (height // self.patch, width // self.patch)
        return self.dropout(x + resize_token_positions(self.position_embeddings, self.grid, new_grid, self.detection))


class YolosEncoder(nn.Module):
    """The ViT layers (``layer.N``), the mid-position tables added between them."""

    def __init__(self, config: YolosConfig) -> None:
        super().__init__()
        self.grid = config.patch_grid
        self.patch = config.patch_size
        self.detection = config.num_detection_tokens
        self.layer = nn.ModuleList(ViTLayer(config) for _ in range(config.num_hidden_layers))
        if config.use_mid_position_embeddings:
            tokens = 1 + self.grid[0] * self.grid[1] + self.detection
            self.mid_position_embeddings = nn.Parameter(
                torch.zeros(config.num_hidden_layers - 1, 1, tokens, config.hidden_size))
        else:
            self.mid_position_embeddings = None

    def forward(self, x: torch.Tensor, height: int, width: int, output_hidden_states: bool
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        mid = None
        if self.mid_position_embeddings is not None and len(self.layer) > 1:
            new_grid = (height // self.patch, width // self.patch)
            tables = self.mid_position_embeddings[:, 0]
            mid = resize_token_positions(tables, self.grid, new_grid, self.detection)
        states = [x] if output_hidden_states else None
        for i, layer in enumerate(self.layer):
            x = layer(x, None)
            if states is not None:
                states.append(x)
            if mid is not None and i < len(self.layer) - 1:
                x = x + mid[i].unsqueeze(0)
        return x, tuple(states) if states is not None else None


class YolosPooler(nn.Module):
    """``tanh(dense(state of the CLS token))``."""

    def __init__(self, config: YolosConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, last: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(last[:, 0]))


class YolosPreTrainedModel(PreTrainedModel):
    config_class = YolosConfig
    base_model_prefix = "vit"
    forward_inputs = frozenset({"pixel_values", "pixel_mask"})

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Conv2d):
            nn.init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, YolosEmbeddings):
            for p in (module.cls_token, module.detection_tokens, module.position_embeddings):
                nn.init.trunc_normal_(p, std=std)
        elif isinstance(module, YolosEncoder) and module.mid_position_embeddings is not None:
            nn.init.trunc_normal_(module.mid_position_embeddings, std=std)
        else:
            init_normal_(module, std)

    @property
    def backbone(self) -> "YolosModel":
        return getattr(self, self.base_model_prefix)

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.embeddings.patch_embeddings


class YolosModel(YolosPreTrainedModel):
    """The encoder: ``last_hidden_state`` (B, 1 + patches + detection tokens, H) after the final
    LayerNorm, ``pooler_output`` (None with ``add_pooling_layer=False``) and, with
    ``output_hidden_states``, the embeddings and every layer's output."""

    def __init__(self, config: YolosConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = YolosEmbeddings(config)
        self.encoder = YolosEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = YolosPooler(config) if add_pooling_layer else None

    @property
    def backbone(self) -> "YolosModel":
        return self

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None) -> BaseModelOutput:
        weight = self.embeddings.patch_embeddings.projection.weight
        x = check_pixel_values(pixel_values, self.config, weight.dtype, True, "YOLOS").to(weight.device)
        height, width = x.shape[-2:]
        keep = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        x, states = self.encoder(self.embeddings(x), height, width, bool(keep))
        last = self.layernorm(x)
        pooled = self.pooler(last) if self.pooler is not None else None
        return BaseModelOutput(last_hidden_state=last, pooler_output=pooled, hidden_states=states)


class YolosForObjectDetection(YolosPreTrainedModel):
    """``logits`` and ``pred_boxes`` per detection token; with ``labels`` (one dict of
    ``class_labels`` and normalised ``boxes`` per image) the set loss and its parts."""

    def __init__(self, config: YolosConfig) -> None:
        super().__init__(config)
        self.vit = YolosModel(config, add_pooling_layer=False)
        h = config.hidden_size
        self.class_labels_classifier = MLPPredictionHead(h, h, config.num_labels + 1, 3)
        self.bbox_predictor = MLPPredictionHead(h, h, 4, 3)

    def forward(self, pixel_values: torch.Tensor, labels: list[dict] | None = None,
                pixel_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None) -> ObjectDetectionOutput:
        if labels is not None and self.config.auxiliary_loss:
            raise UnsupportedOptionError(
                "auxiliary_loss=True with labels: YOLOS has no decoder layers to take auxiliary outputs from "
                "(the reference fails on it too); set auxiliary_loss=False")
        out = self.backbone(pixel_values, pixel_mask, output_hidden_states)
        tokens = out.last_hidden_state[:, -self.config.num_detection_tokens:]
        logits = self.class_labels_classifier(tokens)
        pred_boxes = self.bbox_predictor(tokens).sigmoid()
        loss = parts = None
        if labels is not None:
            loss, parts = detection_loss(logits, pred_boxes, labels, self.config)
        return ObjectDetectionOutput(loss=loss, loss_dict=parts, logits=logits, pred_boxes=pred_boxes,
                                     last_hidden_state=out.last_hidden_state, hidden_states=out.hidden_states)


MODEL_CLASSES = {
    "model": YolosModel,
    "object-detection": YolosForObjectDetection,
}
