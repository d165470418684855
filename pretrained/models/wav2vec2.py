"""Wav2Vec2 (``model_type: "wav2vec2"``): the speech encoder, its CTC head (characters per frame,
for speech recognition) and its sequence-classification head (mean-pooled frames).

Raw 16 kHz samples in (``input_values`` (B, samples), with ``attention_mask`` where rows are
padded), frames out: one per ``config.inputs_to_logits_ratio`` samples (320 for the base shape).
The blocks are :mod:`pretrained.layers.speech_encoder` (HuBERT names the same ones); module names
equal the checkpoints' keys (``wav2vec2.feature_extractor.conv_layers.0.conv.weight``,
``wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight.original0``, ``lm_head``,
``projector``, ``classifier``), so loading is a straight copy and ``save_pretrained`` writes
files the reference reads. Both positional-convolution key forms load (``weight_g``/``weight_v``
of older conversions and the parametrization names the reference 5.x writes); saves use the
latter.

Training: ``mask_time_prob`` / ``mask_feature_prob`` (SpecAugment) mask random spans of frames /
channels while ``model.training``; the spans follow the reference's counting rule but are drawn
from torch's generator (deterministic under ``torch.manual_seed``), not numpy's as the reference
does, so they differ from its spans draw for draw. ``freeze_feature_encoder()`` keeps the
convolutions fixed, as fine-tuning recipes do. Not implemented (named errors): adapters
(``add_adapter``, ``adapter_attn_dim``), pre-training and x-vector heads.

Example::

    >>> import torch
    >>> from pretrained.models.wav2vec2 import Wav2Vec2Config, Wav2Vec2ForCTC
    >>> cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                      intermediate_size=37, conv_dim=[16, 16, 16], conv_stride=[5, 2, 2],
    ...                      conv_kernel=[10, 3, 3], num_conv_pos_embeddings=16,
    ...                      num_conv_pos_embedding_groups=4, vocab_size=32)
    >>> model = Wav2Vec2ForCTC.from_config(cfg).eval()
    >>> model(torch.randn(2, 1600)).logits.shape     # 1600 samples -> 79 frames
    torch.Size([2, 79, 32])
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..config import PretrainedConfig
from ..errors import ConfigError, InvalidInputError
from ..layers import (
    FeatureEncoder,
    FeatureProjection,
    SpeechEncoder,
    activation,
    check_input_values,
    conv_output_lengths,
    ctc_loss,
    frame_mask,
    init_normal_,
    init_speech_module,
    masked_mean,
    span_mask,
)
from ..modeling import PreTrainedModel
from ..outputs import CausalLMOutput, ModelOutput, SequenceClassifierOutput

_CONV_LISTS = ("conv_dim", "conv_stride", "conv_kernel", "tdnn_dim", "tdnn_dilation")


class Wav2Vec2Config(PretrainedConfig):
    """The reference's fields and defaults (facebook/wav2vec2-base-960h's shape). The x-vector
    head's and the adapter's convolution sizes are kept as unknown keys when a config has them."""

    model_type = "wav2vec2"

    vocab_size: int | None = 32
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout: float = 0.1
    activation_dropout: float = 0.1
    attention_dropout: float = 0.1
    feat_proj_dropout: float = 0.0
    feat_quantizer_dropout: float = 0.0
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
    do_stable_layer_norm: bool = False
    apply_spec_augment: bool = True
    mask_time_prob: float = 0.05
    mask_time_length: int = 10
    mask_time_min_masks: int = 2
    mask_feature_prob: float = 0.0
    mask_feature_length: int = 10
    mask_feature_min_masks: int = 0
    num_codevectors_per_group: int = 320
    num_codevector_groups: int = 2
    contrastive_logits_temperature: float = 0.1
    num_negatives: int = 100
    codevector_dim: int = 256
    proj_codevector_dim: int = 256
    diversity_loss_weight: float = 0.1
    ctc_loss_reduction: str = "sum"
    ctc_zero_infinity: bool = False
    use_weighted_layer_sum: bool = False
    classifier_proj_size: int = 256
    tdnn_dim: list = [512, 512, 512, 512, 1500]
    tdnn_dilation: list = [1, 2, 3, 1, 1]
    xvector_output_dim: int = 512
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list | None = 2
    add_adapter: bool = False
    adapter_stride: int = 2
    num_adapter_layers: int = 3
    output_hidden_size: int | None = None
    adapter_attn_dim: int | None = None

    def __init__(self, **kwargs: Any) -> None:
        for key in _CONV_LISTS:   # tuples as the reference takes them; JSON has lists
            if isinstance(kwargs.get(key), tuple):
                kwargs[key] = list(kwargs[key])
        kwargs.pop("num_feat_extract_layers", None)   # the reference's copy of len(conv_dim)
        super().__init__(**kwargs)
        if self.output_hidden_size is None:
            self.output_hidden_size = self.hidden_size

    @property
    def num_feat_extract_layers(self) -> int:
        return len(self.conv_dim)

    @property
    def inputs_to_logits_ratio(self) -> int:
        """Samples per output frame (the product of the convolution strides)."""
        return functools.reduce(operator.mul, self.conv_stride, 1)

    def validate(self) -> None:
        check_speech_config(self)


def check_speech_config(cfg: PretrainedConfig) -> None:
    """The checks Wav2Vec2 and HuBERT configs share."""
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "num_conv_pos_embeddings", "num_conv_pos_embedding_groups", "classifier_proj_size"):
        cfg._require(getattr(cfg, key) > 0, f"{key} must be > 0, got {getattr(cfg, key)}")
    cfg._require(cfg.hidden_size % cfg.num_attention_heads == 0,
                 f"hidden_size {cfg.hidden_size} is not a multiple of num_attention_heads "
                 f"{cfg.num_attention_heads}")
    cfg._require(cfg.hidden_size % cfg.num_conv_pos_embedding_groups == 0,
                 f"hidden_size {cfg.hidden_size} is not a multiple of num_conv_pos_embedding_groups "
                 f"{cfg.num_conv_pos_embedding_groups}")
    lens = (len(cfg.conv_dim), len(cfg.conv_stride), len(cfg.conv_kernel))
    cfg._require(len(set(lens)) == 1 and lens[0] > 0,
                 "the convolution lists must have one entry per layer: len(conv_dim) == "
                 f"len(conv_stride) == len(conv_kernel), got {lens[0]}, {lens[1]}, {lens[2]}")
    for key in ("conv_dim", "conv_stride", "conv_kernel"):
        cfg._require(all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in getattr(cfg, key)),
                     f"{key} must hold positive integers, got {getattr(cfg, key)}")
    cfg._require(cfg.feat_extract_norm in ("group", "layer"),
                 f"feat_extract_norm is {cfg.feat_extract_norm!r}; it must be 'group' or 'layer'")
    cfg._require(cfg.ctc_loss_reduction in ("sum", "mean", "none"),
                 f"ctc_loss_reduction {cfg.ctc_loss_reduction!r} is not one of 'sum', 'mean', 'none'")
    for key in ("mask_time_prob", "mask_feature_prob", "layerdrop"):
        cfg._require(0.0 <= getattr(cfg, key) <= 1.0, f"{key} must be in [0, 1], got {getattr(cfg, key)}")
    activation(cfg.hidden_act)
    activation(cfg.feat_extract_activation)


@dataclass
class Wav2Vec2BaseModelOutput(ModelOutput):
    """The bare model's output: ``last_hidden_state`` (B, frames, H) and ``extract_features``
    (B, frames, conv_dim[-1]: the LayerNorm'd convolution features)."""

    last_hidden_state: torch.Tensor
    extract_features: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


# --- models -----------------------------------------------------------------------------------
class Wav2Vec2PreTrainedModel(PreTrainedModel):
    config_class = Wav2Vec2Config
    base_model_prefix = "wav2vec2"
    forward_inputs = frozenset({"input_values", "attention_mask"})
    # the legacy names of the positional convolution's weight norm: saved under the newer ones
    _SAVE_AS: ClassVar[dict[str, str]] = {".weight_g": ".parametrizations.weight.original0",
                                          ".weight_v": ".parametrizations.weight.original1"}

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, Wav2Vec2Model) and hasattr(module, "masked_spec_embed"):
            nn.init.uniform_(module.masked_spec_embed)
        elif isinstance(module, Wav2Vec2ForSequenceClassification) and hasattr(module, "layer_weights"):
            nn.init.constant_(module.layer_weights, 1.0 / (self.config.num_hidden_layers + 1))
        if not init_speech_module(module, std):
            init_normal_(module, std)

    def _unique_state_dict(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, t in super()._unique_state_dict().items():
            for old, new in self._SAVE_AS.items():
                if name.endswith(old):
                    name = name[: -len(old)] + new
            out[name] = t
        return out

    def _get_feat_extract_output_lengths(self, input_lengths: torch.Tensor | int) -> torch.Tensor | int:
        """Frames for ``input_lengths`` samples (the reference's name, which collators call)."""
        return conv_output_lengths(input_lengths, self.config.conv_kernel, self.config.conv_stride)

    @property
    def backbone(self) -> "Wav2Vec2Model":
        return getattr(self, self.base_model_prefix)

    def freeze_feature_encoder(self) -> None:
        """Stop gradients into the convolutional feature encoder (fine-tuning keeps it fixed)."""
        self.backbone.feature_extractor.freeze()

    def freeze_base_model(self) -> None:
        """Train only the head: no gradients for the whole backbone."""
        for p in self.backbone.parameters():
            p.requires_grad_(False)


class Wav2Vec2Model(Wav2Vec2PreTrainedModel):
    """The bare encoder: ``last_hidden_state`` (B, frames, H), ``extract_features``."""

    spans_within_rows: ClassVar[bool] = True   # HuBERT draws time spans over the full width

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__(config)
        if getattr(config, "add_adapter", False) or getattr(config, "adapter_attn_dim", None) is not None:
            raise ConfigError(f"{type(self).__name__}: adapters (add_adapter, adapter_attn_dim) are not "
                              "implemented in pretrained; remove them from the config")
        self.feature_extractor = FeatureEncoder(
            config.conv_dim, config.conv_kernel, config.conv_stride, norm=config.feat_extract_norm,
            act=config.feat_extract_activation, bias=config.conv_bias)
        self.feature_projection = FeatureProjection(
            config.conv_dim[-1], config.hidden_size, config.layer_norm_eps, config.feat_proj_dropout,
            getattr(config, "feat_proj_layer_norm", True))   # HuBERT's switch
        if config.mask_time_prob > 0.0 or config.mask_feature_prob > 0.0:
            self.masked_spec_embed = nn.Parameter(torch.empty(config.hidden_size))
        self.encoder = SpeechEncoder(config, getattr(config, "conv_pos_batch_norm", False))

    @property
    def backbone(self) -> "Wav2Vec2Model":
        return self

    def frame_mask(self, attention_mask: torch.Tensor | None, num_frames: int) -> torch.Tensor | None:
        """The (B, frames) boolean mask of real frames for a (B, samples) mask, or None."""
        if attention_mask is None:
            return None
        return frame_mask(attention_mask, num_frames, self.config.conv_kernel, self.config.conv_stride)

    def _mask_hidden_states(self, x: torch.Tensor, mask_time_indices: torch.Tensor | None,
                            frames: torch.Tensor | None) -> torch.Tensor:
        """SpecAugment: given ``mask_time_indices``, or random spans while training."""
        cfg = self.config
        if not cfg.apply_spec_augment:
            return x
        b, t, h = x.shape
        if mask_time_indices is None and cfg.mask_time_prob > 0 and self.training:
            lengths = frames.sum(-1).tolist() if frames is not None and self.spans_within_rows else None
            mask_time_indices = span_mask(b, t, cfg.mask_time_prob, cfg.mask_time_length,
                                          cfg.mask_time_min_masks, lengths, x.device)
        if mask_time_indices is not None:
            x = torch.where(mask_time_indices.bool()[:, :, None], self.masked_spec_embed.to(x.dtype), x)
        if cfg.mask_feature_prob > 0 and self.training:
            feats = span_mask(b, h, cfg.mask_feature_prob, cfg.mask_feature_length,
                              cfg.mask_feature_min_masks, None, x.device)
            x = x.masked_fill(feats[:, None, :], 0.0)
        return x

    def encode(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None,
               mask_time_indices: torch.Tensor | None, output_hidden_states: bool | None):
        """-> (last_hidden_state, extract_features, hidden_states, frame mask)."""
        cfg = self.config
        weight = self.feature_extractor.conv_layers[0].conv.weight
        x = check_input_values(input_values, attention_mask, weight.dtype, cfg.conv_kernel,
                               cfg.conv_stride).to(weight.device)
        feats = self.feature_extractor(x).transpose(1, 2)
        frames = self.frame_mask(attention_mask.to(feats.device) if attention_mask is not None else None,
                                 feats.shape[1])
        hidden, normed = self.feature_projection(feats)
        hidden = self._mask_hidden_states(hidden, mask_time_indices, frames)
        keep = output_hidden_states if output_hidden_states is not None else cfg.output_hidden_states
        last, states = self.encoder(hidden, frames, bool(keep))
        return last, normed, states, frames

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                mask_time_indices: torch.Tensor | None = None,
                output_hidden_states: bool | None = None) -> Wav2Vec2BaseModelOutput:
        last, feats, states, _ = self.encode(input_values, attention_mask, mask_time_indices,
                                             output_hidden_states)
        return Wav2Vec2BaseModelOutput(last_hidden_state=last, extract_features=feats, hidden_states=states)


class Wav2Vec2ForCTC(Wav2Vec2PreTrainedModel):
    """Per-frame vocabulary ``logits`` (B, frames, vocab_size) for CTC decoding (the tokenizer's
    ``decode`` collapses repeats and drops the ``<pad>`` blank). With ``labels`` (B, U; -100 or
    the pad id where padded) the CTC ``loss`` with ``config.ctc_loss_reduction`` ("sum" by
    default) and ``ctc_zero_infinity``."""

    backbone_class: ClassVar[type] = Wav2Vec2Model

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__(config)
        if config.vocab_size is None:
            raise ConfigError(f"{type(self).__name__} needs config.vocab_size (the CTC vocabulary); "
                              "pass vocab_size= to from_pretrained")
        self.add_module(self.base_model_prefix, self.backbone_class(config))
        self.dropout = nn.Dropout(config.final_dropout)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                mask_time_indices: torch.Tensor | None = None) -> CausalLMOutput:
        if labels is not None and int(labels.max()) >= self.config.vocab_size:
            raise InvalidInputError(f"labels hold id {int(labels.max())}, outside the CTC vocabulary "
                                    f"[0, {self.config.vocab_size})")
        last, _, states, _ = self.backbone.encode(input_values, attention_mask, mask_time_indices,
                                                  output_hidden_states)
        logits = self.lm_head(self.dropout(last))
        loss = None
        if labels is not None:
            samples = attention_mask.sum(-1) if attention_mask is not None else \
                torch.full((logits.shape[0],), input_values.shape[-1], device=logits.device)
            lengths = self._get_feat_extract_output_lengths(samples.long()).to(logits.device)
            loss = ctc_loss(logits, labels, lengths, self.config.pad_token_id, self.config.ctc_loss_reduction,
                            self.config.ctc_zero_infinity)
        return CausalLMOutput(loss=loss, logits=logits, hidden_states=states)


class Wav2Vec2ForSequenceClassification(Wav2Vec2PreTrainedModel):
    """Utterance ``logits`` (B, num_labels): frames -> ``projector`` -> mean over real frames ->
    ``classifier``. ``use_weighted_layer_sum``: a softmax-weighted sum of every layer's states
    (``layer_weights``) instead of the last. The loss is cross-entropy, as the reference's."""

    backbone_class: ClassVar[type] = Wav2Vec2Model

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__(config)
        if getattr(config, "add_adapter", False):
            raise ConfigError(f"{type(self).__name__} does not take adapters (add_adapter=True)")
        self.add_module(self.base_model_prefix, self.backbone_class(config))
        if config.use_weighted_layer_sum:
            n = config.num_hidden_layers + 1
            self.layer_weights = nn.Parameter(torch.ones(n) / n)
        self.projector = nn.Linear(config.hidden_size, config.classifier_proj_size)
        self.classifier = nn.Linear(config.classifier_proj_size, config.num_labels)

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                mask_time_indices: torch.Tensor | None = None) -> SequenceClassifierOutput:
        weighted = self.config.use_weighted_layer_sum
        keep = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        last, _, states, frames = self.backbone.encode(input_values, attention_mask, mask_time_indices,
                                                       True if weighted else keep)
        if weighted:
            w = torch.softmax(self.layer_weights, dim=-1)
            last = (torch.stack(states, dim=1) * w.view(-1, 1, 1)).sum(dim=1)
        logits = self.classifier(masked_mean(self.projector(last), frames))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, self.config.num_labels), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=states if keep else None)


MODEL_CLASSES = {
    "model": Wav2Vec2Model,
    "ctc": Wav2Vec2ForCTC,
    "audio-classification": Wav2Vec2ForSequenceClassification,
}
