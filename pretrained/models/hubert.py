"""HuBERT (``model_type: "hubert"``): Wav2Vec2's encoder trained on masked-unit prediction; the
bare model, the CTC head and the sequence-classification head.

The same blocks as Wav2Vec2 (:mod:`pretrained.layers.speech_encoder`), under the ``hubert.``
prefix, with HuBERT's two switches: ``feat_proj_layer_norm`` (the LayerNorm before the feature
projection; the bare model reports no ``extract_features``) and ``conv_pos_batch_norm`` (a
BatchNorm1d and a plain convolution as the position signal instead of the weight norm). The heads
are Wav2Vec2's classes under HuBERT's names and config, so checkpoints and ``save_pretrained``
files match the reference's. During training the SpecAugment time spans are drawn over each
batch's full width, as the reference's HuBERT does (Wav2Vec2 keeps them within each row).
``freeze_feature_encoder()`` works on the bare model too (the reference's ``HubertModel`` raises).

Example::

    >>> import torch
    >>> from pretrained.models.hubert import HubertConfig, HubertModel
    >>> cfg = HubertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
    ...                    intermediate_size=37, conv_dim=[16, 16], conv_stride=[5, 2],
    ...                    conv_kernel=[10, 3], num_conv_pos_embeddings=16,
    ...                    num_conv_pos_embedding_groups=4)
    >>> HubertModel.from_config(cfg).eval()(torch.randn(1, 800)).last_hidden_state.shape
    torch.Size([1, 79, 32])
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import torch

from ..config import PretrainedConfig
from ..outputs import BaseModelOutput
from .wav2vec2 import (
    Wav2Vec2ForCTC,
    Wav2Vec2ForSequenceClassification,
    Wav2Vec2Model,
    check_speech_config,
)

_CONV_LISTS = ("conv_dim", "conv_stride", "conv_kernel")


class HubertConfig(PretrainedConfig):
    """The reference's fields and defaults (facebook/hubert-base-ls960's shape)."""

    model_type = "hubert"

    vocab_size: int | None = 32
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout: float = 0.1
    activation_dropout: float = 0.1
    attention_dropout: float = 0.1
    feat_proj_layer_norm: bool = True
    feat_proj_dropout: float = 0.0
    final_dropout: float = 0.1
    layerdrop: float = 0.1
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5
    feat_extract_norm: str = "group"
    feat_extract_activation: str = "gelu"
    conv_dim: list = [512, 512, 512, 512, 512, 512, 512]
    conv_stride: list = [5, 2, 2, 2, 2, 2, 2]
    conv_kernel: list = [10, 3, 3, 3, 3, 2, 2]
    conv_bias: bool = False
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    conv_pos_batch_norm: bool = False
    do_stable_layer_norm: bool = False
    apply_spec_augment: bool = True
    mask_time_prob: float = 0.05
    mask_time_length: int = 10
    mask_time_min_masks: int = 2
    mask_feature_prob: float = 0.0
    mask_feature_length: int = 10
    mask_feature_min_masks: int = 0
    ctc_loss_reduction: str = "sum"
    ctc_zero_infinity: bool = False
    use_weighted_layer_sum: bool = False
    classifier_proj_size: int = 256
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list | None = 2

    def __init__(self, **kwargs: Any) -> None:
        for key in _CONV_LISTS:
            if isinstance(kwargs.get(key), tuple):
                kwargs[key] = list(kwargs[key])
        kwargs.pop("num_feat_extract_layers", None)   # the reference's copy of len(conv_dim)
        super().__init__(**kwargs)

    @property
    def num_feat_extract_layers(self) -> int:
        return len(self.conv_dim)

    @property
    def inputs_to_logits_ratio(self) -> int:
        """Samples per output frame (the product of the convolution strides)."""
        return functools.reduce(operator.mul, self.conv_stride, 1)

    def validate(self) -> None:
        check_speech_config(self)


class HubertModel(Wav2Vec2Model):
    """The bare encoder: ``last_hidden_state`` (B, frames, H)."""

    config_class = HubertConfig
    base_model_prefix = "hubert"
    spans_within_rows = False

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                mask_time_indices: torch.Tensor | None = None,
                output_hidden_states: bool | None = None) -> BaseModelOutput:
        last, _, states, _ = self.encode(input_values, attention_mask, mask_time_indices,
                                         output_hidden_states)
        return BaseModelOutput(last_hidden_state=last, hidden_states=states)


class HubertForCTC(Wav2Vec2ForCTC):
    config_class = HubertConfig
    base_model_prefix = "hubert"
    backbone_class = HubertModel


class HubertForSequenceClassification(Wav2Vec2ForSequenceClassification):
    config_class = HubertConfig
    base_model_prefix = "hubert"
    backbone_class = HubertModel


MODEL_CLASSES = {
    "model": HubertModel,
    "ctc": HubertForCTC,
    "audio-classification": HubertForSequenceClassification,
}
