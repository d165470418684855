"""The Audio Spectrogram Transformer (``model_type: "audio-spectrogram-transformer"``, Gong et
al. 2021): a ViT over patches of a Kaldi log-mel filter bank; the bare encoder and its audio
classification head.

Input: ``input_values`` (B, max_length, num_mel_bins) fbank frames, what
:class:`pretrained.processing.ASTFeatureExtractor` returns (1024 frames x 128 bins for the AudioSet
checkpoints). The spectrogram, laid out (B, 1, bins, frames), is cut into ``patch_size`` x
``patch_size`` patches that overlap: one every ``frequency_stride`` bins and ``time_stride``
frames (10 and 10: 12 x 101 patches of 16 x 16), each projected to ``hidden_size`` by one
convolution (``embeddings.patch_embeddings.projection``); patches run frequency-major. A CLS
token and a distillation token (DeiT's) go in front, learned ``position_embeddings`` are added,
then pre-LayerNorm ViT layers (:mod:`pretrained.layers.vit_blocks`) and a final ``layernorm``.
The pooled output is the mean of the two tokens' states; the classification head
(``classifier.layernorm``, ``classifier.dense``) reads it. Losses as every sequence head's:
cross-entropy, BCE with logits for ``problem_type="multi_label_classification"`` (or float
labels), MSE for regression (``num_labels=1``).

Module names equal the checkpoints' keys (``audio_spectrogram_transformer.embeddings.cls_token``,
``audio_spectrogram_transformer.encoder.layer.0.attention.attention.query.weight``,
``classifier.dense.weight``), so loading is a straight copy and ``save_pretrained`` writes the
reference's layout. ``attention_mask``, as the reference takes it, masks tokens: (B, 2 + patches),
1 = attend; the feature extractor does not make one.

Example::

    >>> import torch
    >>> from pretrained.models.audio_spectrogram_transformer import ASTConfig, ASTForAudioClassification
    >>> cfg = ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
    ...                 num_mel_bins=26, max_length=64, num_labels=5)
    >>> model = ASTForAudioClassification.from_config(cfg).eval()
    >>> cfg.num_patches                  # 2 along frequency x 5 along time
    10
    >>> model(torch.randn(2, 64, 26)).logits.shape
    torch.Size([2, 5])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import PretrainedConfig
from ..errors import InvalidInputError
from ..layers import attention_mask_4d, init_normal_, sequence_classification_output
from ..layers.vit_blocks import check_vit_config, vit_encoder
from ..modeling import PreTrainedModel
from ..outputs import BaseModelOutput, SequenceClassifierOutput

_MAX_PATCHES = 1 << 20   # 1024 x 1024 frames of 1 x 1 patches; AudioSet's shape has 1,212


class ASTConfig(PretrainedConfig):
    """The reference's fields and defaults (MIT/ast-finetuned-audioset-10-10-0.4593's shape)."""

    model_type = "audio-spectrogram-transformer"

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    patch_size: int = 16
    qkv_bias: bool = True
    frequency_stride: int = 10
    time_stride: int = 10
    max_length: int = 1024
    num_mel_bins: int = 128

    def __init__(self, **kwargs: Any) -> None:
        patch = kwargs.get("patch_size")
        if isinstance(patch, (list, tuple)) and len(patch) == 2 and patch[0] == patch[1]:
            kwargs["patch_size"] = patch[0]   # a square patch written as a pair
        super().__init__(**kwargs)

    @property
    def patch_grid(self) -> tuple[int, int]:
        """(patches along frequency, patches along time)."""
        return ((self.num_mel_bins - self.patch_size) // self.frequency_stride + 1,
                (self.max_length - self.patch_size) // self.time_stride + 1)

    @property
    def num_patches(self) -> int:
        f, t = self.patch_grid
        return f * t

    def validate(self) -> None:
        check_vit_config(self)
        for key in ("patch_size", "frequency_stride", "time_stride", "max_length", "num_mel_bins"):
            self._require(getattr(self, key) > 0, f"{key} must be > 0, got {getattr(self, key)}")
        self._require(self.num_mel_bins >= self.patch_size,
                      f"num_mel_bins {self.num_mel_bins} is smaller than patch_size {self.patch_size}: "
                      "no patch fits along frequency")
        self._require(self.max_length >= self.patch_size,
                      f"max_length {self.max_length} is smaller than patch_size {self.patch_size}: "
                      "no patch fits along time")
        self._require(self.num_patches <= _MAX_PATCHES,
                      f"num_mel_bins {self.num_mel_bins} x max_length {self.max_length} with patch_size "
                      f"{self.patch_size} and strides ({self.frequency_stride}, {self.time_stride}) make "
                      f"{self.num_patches:,} patches, more than this library takes ({_MAX_PATCHES:,}); "
                      "check config.json")


# --- embeddings -------------------------------------------------------------------------------
class ASTPatchEmbeddings(nn.Module):
    """(B, frames, bins) -> (B, patches, hidden): one strided convolution over (bins, frames)."""

    def __init__(self, config: ASTConfig) -> None:
        super().__init__()
        p = config.patch_size
        self.projection = nn.Conv2d(1, config.hidden_size, kernel_size=(p, p),
                                    stride=(config.frequency_stride, config.time_stride))

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        image = input_values.transpose(1, 2).unsqueeze(1)     # (B, 1, bins, frames)
        return self.projection(image).flatten(2).transpose(1, 2)


class ASTEmbeddings(nn.Module):
    """CLS and distillation tokens, then the patches; learned positions added to all."""

    def __init__(self, config: ASTConfig) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.distillation_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.patch_embeddings = ASTPatchEmbeddings(config)
        self.position_embeddings = nn.Parameter(torch.zeros(1, config.num_patches + 2, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embeddings(input_values)
        b = patches.shape[0]
        tokens = torch.cat((self.cls_token.expand(b, -1, -1), self.distillation_token.expand(b, -1, -1),
                            patches), dim=1)
        return self.dropout(tokens + self.position_embeddings)


def check_input_values(input_values: Any, config: ASTConfig, dtype: torch.dtype) -> torch.Tensor:
    """(B, max_length, num_mel_bins) float frames in ``dtype`` (one (max_length, num_mel_bins)
    spectrogram is a batch of one), or a named error."""
    want = (config.max_length, config.num_mel_bins)
    hint = (f"AST takes fbank frames (batch, max_length={want[0]}, num_mel_bins={want[1]}); make "
            "them from audio with ASTFeatureExtractor (pretrained.processing) and return_tensors='pt'")
    if not isinstance(input_values, torch.Tensor):
        raise InvalidInputError(f"input_values must be a torch.Tensor, got {type(input_values).__name__}; {hint}")
    if not input_values.is_floating_point():
        raise InvalidInputError(f"input_values must hold float frames, got {input_values.dtype}; {hint}")
    if input_values.dim() == 2 and tuple(input_values.shape) == want:
        input_values = input_values.unsqueeze(0)
    if input_values.dim() != 3 or tuple(input_values.shape[1:]) != want or input_values.shape[0] == 0:
        got = tuple(input_values.shape)
        if input_values.dim() == 3 and tuple(input_values.shape[1:]) == want[::-1]:
            hint = f"the frames look transposed (bins before frames): pass input_values.transpose(1, 2); {hint}"
        elif input_values.dim() == 2:
            hint = f"a 2-D input looks like raw audio samples; {hint}"
        raise InvalidInputError(f"input_values has shape {got}; {hint}")
    return input_values.to(dtype)


def token_attention_mask(attention_mask: torch.Tensor | None, batch: int, tokens: int) -> torch.Tensor | None:
    """The reference's (B, tokens) mask (1 = attend) as the attention helper's boolean mask."""
    if attention_mask is None:
        return None
    if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != (batch, tokens):
        shape = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__
        raise InvalidInputError(
            f"attention_mask has shape {shape}; AST masks tokens: (batch, 2 + patches) = ({batch}, {tokens}) "
            "(the CLS and distillation tokens, then the patches), 1 = attend. Frames are not masked: "
            "ASTFeatureExtractor pads them, and the model takes no frame mask")
    return attention_mask_4d(attention_mask, causal=False, q_len=tokens)


# --- models -----------------------------------------------------------------------------------
class ASTPreTrainedModel(PreTrainedModel):
    config_class = ASTConfig
    base_model_prefix = "audio_spectrogram_transformer"
    forward_inputs = frozenset({"input_values", "attention_mask"})

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, ASTEmbeddings):
            for p in (module.cls_token, module.distillation_token, module.position_embeddings):
                nn.init.zeros_(p)
        else:
            init_normal_(module, std)

    @property
    def backbone(self) -> "ASTModel":
        return getattr(self, self.base_model_prefix)

    def get_input_embeddings(self) -> ASTPatchEmbeddings:
        return self.backbone.embeddings.patch_embeddings


class ASTModel(ASTPreTrainedModel):
    """The encoder: ``last_hidden_state`` (B, 2 + patches, H) after the final LayerNorm,
    ``pooler_output`` (B, H) the mean of the CLS and distillation tokens' states, and with
    ``output_hidden_states`` the embeddings and every layer's output."""

    def __init__(self, config: ASTConfig) -> None:
        super().__init__(config)
        self.embeddings = ASTEmbeddings(config)
        self.encoder = vit_encoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    @property
    def backbone(self) -> "ASTModel":
        return self

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None) -> BaseModelOutput:
        weight = self.embeddings.patch_embeddings.projection.weight
        x = check_input_values(input_values, self.config, weight.dtype).to(weight.device)
        x = self.embeddings(x)
        mask = token_attention_mask(attention_mask, x.shape[0], x.shape[1])
        keep = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        x, states = self.encoder(x, mask.to(x.device) if mask is not None else None, bool(keep))
        last = self.layernorm(x)
        return BaseModelOutput(last_hidden_state=last, pooler_output=(last[:, 0] + last[:, 1]) / 2,
                               hidden_states=states)


class ASTMLPHead(nn.Module):
    """LayerNorm then a linear over the pooled state (``classifier.layernorm``, ``classifier.dense``)."""

    def __init__(self, config: ASTConfig) -> None:
        super().__init__()
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dense = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.dense(self.layernorm(pooled))


class ASTForAudioClassification(ASTPreTrainedModel):
    """Clip ``logits`` (B, num_labels) from the pooled tokens; with ``labels`` the loss the
    config's ``problem_type`` names (inferred from the labels the first time, as the reference)."""

    def __init__(self, config: ASTConfig) -> None:
        super().__init__(config)
        self.audio_spectrogram_transformer = ASTModel(config)
        self.classifier = ASTMLPHead(config)

    def forward(self, input_values: torch.Tensor, labels: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None) -> SequenceClassifierOutput:
        out = self.audio_spectrogram_transformer(input_values, attention_mask, output_hidden_states)
        logits = self.classifier(out.pooler_output)
        return sequence_classification_output(self.config, logits, labels, out)


MODEL_CLASSES = {
    "model": ASTModel,
    "audio-classification": ASTForAudioClassification,
}
