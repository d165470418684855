"""The Vision Transformer (``model_type: "vit"``, Dosovitskiy et al. 2020): the bare encoder with
its pooler, and the image classification head.

Input: ``pixel_values`` (B, num_channels, H, W), what the model's image processor returns
(resized to ``image_size``, rescaled and normalised). The image is cut into ``patch_size``
patches (row-major), each projected to ``hidden_size`` by one convolution
(``embeddings.patch_embeddings.projection``); a CLS token goes in front, learned
``position_embeddings`` are added (resized bicubically for another image size with
``interpolate_pos_encoding=True``), then pre-LayerNorm ViT layers
(:mod:`pretrained.layers.vit_blocks`) and a final ``layernorm``. The pooler is
``pooler_act(pooler.dense(state of the CLS token))``; the classification head
(``classifier``) reads the CLS token's state itself, not the pooler (which its checkpoints do not
have). Losses as every sequence head's: cross-entropy, BCE with logits for
``problem_type="multi_label_classification"`` (or float labels), MSE for regression.

Module names equal the checkpoints' keys (``vit.embeddings.cls_token``,
``vit.embeddings.patch_embeddings.projection.weight``,
``vit.encoder.layer.0.attention.attention.query.weight``, ``vit.layernorm``, ``vit.pooler.dense``,
``classifier``), so loading is a straight copy and ``save_pretrained`` writes the reference's
layout.

Example::

    >>> import torch
    >>> from pretrained.models.vit import ViTConfig, ViTForImageClassification
    >>> cfg = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
    ...                 image_size=32, patch_size=8, num_labels=3)
    >>> model = ViTForImageClassification.from_config(cfg).eval()
    >>> model(torch.randn(2, 3, 32, 32)).logits.shape
    torch.Size([2, 3])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import PretrainedConfig
from ..layers import activation, classifier_linear, init_normal_, sequence_classification_output
from ..layers.vit_blocks import ImageEmbeddings, check_pixel_values, check_vit_config, pair, vit_encoder
from ..modeling import PreTrainedModel
from ..outputs import BaseModelOutput, SequenceClassifierOutput

_MAX_PATCHES = 1 << 20


class ViTConfig(PretrainedConfig):
    """The reference's fields and defaults (google/vit-base-patch16-224's shape)."""

    model_type = "vit"

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    image_size: int | list = 224
    patch_size: int | list = 16
    num_channels: int = 3
    qkv_bias: bool = True
    encoder_stride: int = 16
    pooler_output_size: int | None = None
    pooler_act: str = "tanh"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.pooler_output_size is None:   # the reference writes hidden_size in its place
            self.pooler_output_size = self.hidden_size

    @property
    def patch_grid(self) -> tuple[int, int]:
        """(patches along the height, patches along the width) at ``image_size``."""
        (h, w), (ph, pw) = pair(self.image_size), pair(self.patch_size)
        return h // ph, w // pw

    @property
    def num_patches(self) -> int:
        gh, gw = self.patch_grid
        return gh * gw

    def validate(self) -> None:
        check_vit_config(self)
        for key in ("image_size", "patch_size"):
            value = getattr(self, key)
            ok = (isinstance(value, int) and value > 0) or (
                isinstance(value, list) and len(value) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value))
            self._require(ok, f"{key} must be a positive int or a [height, width] pair, got {value!r}")
        self._require(self.num_channels > 0, f"num_channels must be > 0, got {self.num_channels}")
        self._require(self.num_patches > 0, f"image_size {self.image_size} is smaller than patch_size "
                                            f"{self.patch_size}: no patch fits")
        self._require(self.num_patches <= _MAX_PATCHES,
                      f"image_size {self.image_size} with patch_size {self.patch_size} makes "
                      f"{self.num_patches:,} patches, more than this library takes ({_MAX_PATCHES:,}); "
                      "check config.json")
        if self.pooler_output_size is not None:
            self._require(self.pooler_output_size > 0,
                          f"pooler_output_size must be > 0, got {self.pooler_output_size}")
        activation(self.pooler_act)


class ViTPooler(nn.Module):
    """``activation(dense(state of the first token))`` (``pooler.dense``)."""

    def __init__(self, config) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.pooler_output_size or config.hidden_size)
        self.activation = activation(config.pooler_act)

    def forward(self, last: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(last[:, 0]))


# --- models -----------------------------------------------------------------------------------
class ViTPreTrainedModel(PreTrainedModel):
    config_class = ViTConfig
    base_model_prefix = "vit"
    forward_inputs = frozenset({"pixel_values", "interpolate_pos_encoding"})
    distillation = False   # DeiT's second token

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Conv2d):
            nn.init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, ImageEmbeddings):
            nn.init.trunc_normal_(module.position_embeddings, std=std)
            nn.init.trunc_normal_(module.cls_token, std=std)
            if module.extra == 2:
                nn.init.zeros_(module.distillation_token)
        else:
            init_normal_(module, std)

    @property
    def backbone(self) -> "ViTModel":
        return getattr(self, self.base_model_prefix)

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.embeddings.patch_embeddings


class ViTModel(ViTPreTrainedModel):
    """The encoder: ``last_hidden_state`` (B, 1 + patches, H) after the final LayerNorm,
    ``pooler_output`` (B, pooler_output_size) from the CLS token (None with
    ``add_pooling_layer=False``), and with ``output_hidden_states`` the embeddings and every
    layer's output."""

    def __init__(self, config: ViTConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = ImageEmbeddings(config, distillation=self.distillation)
        self.encoder = vit_encoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = ViTPooler(config) if add_pooling_layer else None

    @property
    def backbone(self) -> "ViTModel":
        return self

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool | None = None,
                output_hidden_states: bool | None = None) -> BaseModelOutput:
        weight = self.embeddings.patch_embeddings.projection.weight
        resize = bool(interpolate_pos_encoding)
        x = check_pixel_values(pixel_values, self.config, weight.dtype, resize,
                               type(self).__name__.replace("Model", "")).to(weight.device)
        x = self.embeddings(x, resize)
        keep = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        x, states = self.encoder(x, None, bool(keep))
        last = self.layernorm(x)
        pooled = self.pooler(last) if self.pooler is not None else None
        return BaseModelOutput(last_hidden_state=last, pooler_output=pooled, hidden_states=states)


class ViTForImageClassification(ViTPreTrainedModel):
    """Image ``logits`` (B, num_labels) from the CLS token's final state; with ``labels`` the
    loss the config's ``problem_type`` names (inferred from the labels the first time)."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__(config)
        self.vit = ViTModel(config, add_pooling_layer=False)
        self.classifier = classifier_linear(config.hidden_size, config.num_labels)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None,
                interpolate_pos_encoding: bool | None = None,
                output_hidden_states: bool | None = None) -> SequenceClassifierOutput:
        out = self.backbone(pixel_values, interpolate_pos_encoding, output_hidden_states)
        logits = self.classifier(out.last_hidden_state[:, 0])
        return sequence_classification_output(self.config, logits, labels, out)


MODEL_CLASSES = {
    "model": ViTModel,
    "image-classification": ViTForImageClassification,
}
