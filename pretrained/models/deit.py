"""DeiT (``model_type: "deit"``, Touvron et al. 2021): ViT with a second learned token, the
distillation token, after the CLS token; the bare encoder with its pooler, the image
classification head, and the distilled head (``DeiTForImageClassificationWithTeacher``).

Everything else is ViT's (:mod:`pretrained.models.vit`): the same config fields, patches,
pre-LayerNorm layers and final ``layernorm``; the position embeddings have two extra slots
(1 + 1 + patches). ``DeiTForImageClassification`` reads the CLS token (``classifier``);
``DeiTForImageClassificationWithTeacher`` runs ``cls_classifier`` on the CLS token and
``distillation_classifier`` on the distillation token and returns their mean as ``logits``
(inference only, as the reference: it takes no labels). The pooler reads the CLS token.

Module names equal the checkpoints' keys (``deit.embeddings.distillation_token``,
``deit.encoder.layer.0.attention.attention.query.weight``, ``cls_classifier.weight``...).

Example::

    >>> import torch
    >>> from pretrained.models.deit import DeiTConfig, DeiTForImageClassificationWithTeacher
    >>> cfg = DeiTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
    ...                  image_size=32, patch_size=8, num_labels=3)
    >>> out = DeiTForImageClassificationWithTeacher.from_config(cfg).eval()(torch.randn(2, 3, 32, 32))
    >>> out.logits.shape, out.distillation_logits.shape
    (torch.Size([2, 3]), torch.Size([2, 3]))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..layers import classifier_linear
from ..outputs import ModelOutput
from .vit import ViTConfig, ViTForImageClassification, ViTModel


class DeiTConfig(ViTConfig):
    """ViT's fields and defaults (facebook/deit-base-distilled-patch16-224's shape)."""

    model_type = "deit"


@dataclass
class DeiTForImageClassificationWithTeacherOutput(ModelOutput):
    logits: torch.Tensor | None = None
    cls_logits: torch.Tensor | None = None
    distillation_logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


class DeiTModel(ViTModel):
    """ViT's encoder with the distillation token: ``last_hidden_state`` (B, 2 + patches, H)."""

    config_class = DeiTConfig
    base_model_prefix = "deit"
    distillation = True


class DeiTForImageClassification(ViTForImageClassification):
    """Image ``logits`` from the CLS token's final state (the distillation token is not read)."""

    config_class = DeiTConfig
    base_model_prefix = "deit"
    distillation = True

    def __init__(self, config: DeiTConfig) -> None:
        super(ViTForImageClassification, self).__init__(config)
        self.deit = DeiTModel(config, add_pooling_layer=False)
        self.classifier = classifier_linear(config.hidden_size, config.num_labels)


class DeiTForImageClassificationWithTeacher(DeiTForImageClassification):
    """``cls_logits`` from the CLS token, ``distillation_logits`` from the distillation token,
    ``logits`` their mean. Inference only: no labels (fine-tune ``DeiTForImageClassification``)."""

    def __init__(self, config: DeiTConfig) -> None:
        super(ViTForImageClassification, self).__init__(config)
        self.deit = DeiTModel(config, add_pooling_layer=False)
        n = config.num_labels
        self.cls_classifier = classifier_linear(config.hidden_size, n)
        self.distillation_classifier = classifier_linear(config.hidden_size, n)

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool | None = None,
                output_hidden_states: bool | None = None) -> DeiTForImageClassificationWithTeacherOutput:
        out = self.deit(pixel_values, interpolate_pos_encoding, output_hidden_states)
        last = out.last_hidden_state
        cls_logits = self.cls_classifier(last[:, 0])
        distillation_logits = self.distillation_classifier(last[:, 1])
        return DeiTForImageClassificationWithTeacherOutput(
            logits=(cls_logits + distillation_logits) / 2, cls_logits=cls_logits,
            distillation_logits=distillation_logits, hidden_states=out.hidden_states)


MODEL_CLASSES = {
    "model": DeiTModel,
    "image-classification": DeiTForImageClassification,
    "image-classification-with-teacher": DeiTForImageClassificationWithTeacher,
}

__all__ = ["DeiTConfig", "DeiTModel", "DeiTForImageClassification", "DeiTForImageClassificationWithTeacher",
           "DeiTForImageClassificationWithTeacherOutput"]
