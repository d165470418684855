"""ConvNeXt V2 (``model_type: "convnextv2"``, Woo et al. 2023): ConvNeXt's blocks
(:mod:`.convnext`) with global response normalisation (``grn``: per channel, the spatial L2 norm
over its mean across channels, ``weight * (x * n) + bias + x``) after the first pointwise layer's
activation, and no layer scale. The backbone, pooled output and classification head are
ConvNeXt's; module names equal the checkpoints' keys (``convnextv2.embeddings.patch_embeddings``,
``convnextv2.encoder.stages.0.layers.0.grn.weight``, ``convnextv2.layernorm``, ``classifier``).

Example::

    >>> import torch
    >>> from pretrained.models.convnextv2 import ConvNextV2Config, ConvNextV2ForImageClassification
    >>> cfg = ConvNextV2Config(num_stages=2, hidden_sizes=[8, 16], depths=[1, 2], image_size=32, num_labels=3)
    >>> model = ConvNextV2ForImageClassification.from_config(cfg).eval()
    >>> model(torch.randn(2, 3, 32, 32)).logits.shape
    torch.Size([2, 3])
"""

from __future__ import annotations

from typing import Any

from ..config import PretrainedConfig
from .convnext import ConvNextForImageClassification, ConvNextModel, check_convnext_config


class ConvNextV2Config(PretrainedConfig):
    """The reference's fields and defaults (facebook/convnextv2-tiny-1k-224's shape)."""

    model_type = "convnextv2"

    num_channels: int = 3
    patch_size: int | list = 4
    num_stages: int = 4
    hidden_sizes: list = [96, 192, 384, 768]
    depths: list = [3, 3, 9, 3]
    hidden_act: str = "gelu"
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    drop_path_rate: float = 0.0
    image_size: int | list = 224

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for key in ("hidden_sizes", "depths"):
            if isinstance(getattr(self, key), tuple):
                setattr(self, key, list(getattr(self, key)))

    def validate(self) -> None:
        check_convnext_config(self)


class ConvNextV2Model(ConvNextModel):
    """ConvNeXt's backbone with GRN blocks (see :class:`.convnext.ConvNextModel`)."""

    config_class = ConvNextV2Config
    base_model_prefix = "convnextv2"
    grn = True


class ConvNextV2ForImageClassification(ConvNextForImageClassification):
    """Image ``logits`` (B, num_labels) from the pooled output (see
    :class:`.convnext.ConvNextForImageClassification`)."""

    config_class = ConvNextV2Config
    base_model_prefix = "convnextv2"
    grn = True
    model_class = ConvNextV2Model


MODEL_CLASSES = {
    "model": ConvNextV2Model,
    "image-classification": ConvNextV2ForImageClassification,
}
