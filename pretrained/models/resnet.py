"""ResNet (``model_type: "resnet"``, He et al. 2016; the reference's microsoft/resnet-* layout):
the bare network with its pooled output, the image classification head, and the backbone that
detectors and segmenters read feature maps from (DETR's ``backbone.conv_encoder.model``).

Input: ``pixel_values`` (B, num_channels, H, W) from the model's image processor (for
microsoft/resnet-50 the ConvNeXt processor: ``crop_pct`` resize and crop to 224). Any size works.

Every convolution here is ``convolution`` (no bias, padding kernel_size // 2) + ``normalization``
(``nn.BatchNorm2d``, eps 1e-5: in eval mode the running statistics) + an activation. The stem
(``embedder``): a 7 x 7 stride-2 convolution to ``embedding_size`` channels with ``hidden_act``,
then a 3 x 3 stride-2 max pool (padding 1). Then ``len(depths)`` stages of ``depths[i]`` layers
to ``hidden_sizes[i]`` channels; each stage's first layer downsamples by 2 (the first stage only
with ``downsample_in_first_stage``). A layer is ``act(branch(x) + shortcut(x))`` with ``act`` the
config's ``hidden_act``, and ``shortcut`` a 1 x 1 convolution + batch norm (with the layer's
stride) when the width or size changes, else the identity. ``branch``:

- ``layer_type="basic"``: 3 x 3 (stride, relu), 3 x 3 (no activation);
- ``layer_type="bottleneck"``: 1 x 1 to width / 4 (relu), 3 x 3 (relu), 1 x 1 to the width (no
  activation); the stride on the 3 x 3, or on the first 1 x 1 with ``downsample_in_bottleneck``.

The branch's inner activations are ReLU whatever ``hidden_act`` says, as in the reference.
``last_hidden_state`` is the last stage's map; ``pooler_output`` its spatial mean, (B, C, 1, 1)
as the reference returns it; the classifier (``classifier.1`` after a flatten) reads that.
``hidden_states``: the stem's output, then every stage's (``len(depths) + 1`` maps), the same
maps the backbone picks its ``feature_maps`` from (``stage_names``: ``stem``, ``stage1``, ...).

Module names equal the checkpoints' keys (``resnet.embedder.embedder.convolution.weight``,
``resnet.embedder.embedder.normalization.running_mean``,
``resnet.encoder.stages.0.layers.0.shortcut.convolution.weight``,
``resnet.encoder.stages.1.layers.0.layer.2.normalization.weight``, ``classifier.1.weight``); the
backbone has them without ``resnet.`` and loads from a classifier's checkpoint too.

Example::

    >>> import torch
    >>> from pretrained.models.resnet import ResNetBackbone, ResNetConfig, ResNetForImageClassification
    >>> cfg = ResNetConfig(embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1], num_labels=3)
    >>> ResNetForImageClassification.from_config(cfg).eval()(torch.randn(2, 3, 64, 64)).logits.shape
    torch.Size([2, 3])
    >>> bb = ResNetBackbone.from_config(ResNetConfig(embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1],
    ...                                              out_features=["stem", "stage2"]))
    >>> [tuple(m.shape) for m in bb(torch.randn(1, 3, 64, 64)).feature_maps], bb.channels
    ([(1, 8, 16, 16), (1, 32, 8, 8)], [8, 32])
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..config import PretrainedConfig
from ..layers import activation, classifier_linear, sequence_classification_output
from ..layers.backbone import BackboneConfigMixin, BackboneMixin, BackboneOutput
from ..layers.pixels import check_image_pixels
from ..modeling import PreTrainedModel
from ..outputs import BaseModelOutput, SequenceClassifierOutput

LAYER_TYPES = ("basic", "bottleneck")
_REDUCTION = 4   # a bottleneck's inner width is its output width / 4


class ResNetConfig(BackboneConfigMixin, PretrainedConfig):
    """The reference's fields and defaults (microsoft/resnet-50's shape); ``out_features`` /
    ``out_indices`` pick the backbone's maps among ``stage_names`` (see
    :mod:`pretrained.layers.backbone`)."""

    model_type = "resnet"

    num_channels: int = 3
    embedding_size: int = 64
    hidden_sizes: list = [256, 512, 1024, 2048]
    depths: list = [3, 4, 6, 3]
    layer_type: str = "bottleneck"
    hidden_act: str = "relu"
    downsample_in_first_stage: bool = False
    downsample_in_bottleneck: bool = False
    out_features: list | None = None
    out_indices: list | None = None
    stage_names: list | None = None

    def __init__(self, **kwargs: Any) -> None:
        for key in ("hidden_sizes", "depths", "out_features", "out_indices", "stage_names"):
            if isinstance(kwargs.get(key), tuple):   # the reference takes tuples; JSON has lists
                kwargs[key] = list(kwargs[key])
        super().__init__(**kwargs)

    def validate(self) -> None:
        check_resnet_config(self)
        # derived from depths, as the reference does (a stale stored value is replaced)
        object.__setattr__(self, "stage_names", ["stem"] + [f"stage{i}" for i in range(1, len(self.depths) + 1)])
        self.align_backbone_outputs()


def check_resnet_config(config: ResNetConfig) -> None:
    req = config._require
    for key in ("hidden_sizes", "depths"):
        value = getattr(config, key)
        req(isinstance(value, list) and len(value) > 0 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value),
            f"{key} must be a non-empty list of positive ints, got {value!r}")
    req(len(config.hidden_sizes) == len(config.depths),
        f"hidden_sizes has {len(config.hidden_sizes)} entries, depths {len(config.depths)}: one per stage")
    req(config.layer_type in LAYER_TYPES, f"layer_type must be one of {', '.join(LAYER_TYPES)}, "
        f"got {config.layer_type!r}")
    if config.layer_type == "bottleneck":
        req(min(config.hidden_sizes) >= _REDUCTION,
            f"bottleneck layers need hidden_sizes >= {_REDUCTION} (inner width = size / {_REDUCTION}), "
            f"got {config.hidden_sizes}")
    req(config.num_channels > 0, f"num_channels must be > 0, got {config.num_channels}")
    req(config.embedding_size > 0, f"embedding_size must be > 0, got {config.embedding_size}")
    activation(config.hidden_act)


class ResNetConvLayer(nn.Module):
    """``convolution`` (no bias) + ``normalization`` (BatchNorm2d) + the activation (or none)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 act: str | None = "relu") -> None:
        super().__init__()
        self.convolution = nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, stride=stride,
                                     padding=kernel_size // 2, bias=False)
        self.normalization = nn.BatchNorm2d(out_channels)
        self.activation = activation(act) if act is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalization(self.convolution(x))
        return self.activation(x) if self.activation is not None else x


class ResNetShortCut(nn.Module):
    """The residual's projection when width or size changes: 1 x 1 convolution + batch norm."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.convolution = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)
        self.normalization = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalization(self.convolution(x))


class ResNetLayer(nn.Module):
    """One residual layer, basic or bottleneck (see the module docstring): ``shortcut`` and the
    branch ``layer`` (an nn.Sequential of conv layers, so its keys are ``layer.<i>.*``)."""

    def __init__(self, config: ResNetConfig, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        if in_channels != out_channels or stride != 1:
            self.shortcut = ResNetShortCut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Identity()
        if config.layer_type == "bottleneck":
            inner = out_channels // _REDUCTION
            first = stride if config.downsample_in_bottleneck else 1
            self.layer = nn.Sequential(
                ResNetConvLayer(in_channels, inner, kernel_size=1, stride=first),
                ResNetConvLayer(inner, inner, stride=stride // first),
                ResNetConvLayer(inner, out_channels, kernel_size=1, act=None))
        else:
            self.layer = nn.Sequential(ResNetConvLayer(in_channels, out_channels, stride=stride),
                                       ResNetConvLayer(out_channels, out_channels, act=None))
        self.activation = activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layer(x)
        h += self.shortcut(x)   # in place, as the reference: one picture-sized tensor fewer at the peak
        return self.activation(h)


class ResNetStage(nn.Module):
    def __init__(self, config: ResNetConfig, in_channels: int, out_channels: int, stride: int, depth: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(ResNetLayer(config, in_channels, out_channels, stride),
                                    *(ResNetLayer(config, out_channels, out_channels) for _ in range(depth - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ResNetEmbeddings(nn.Module):
    """The stem: ``embedder`` (7 x 7 stride 2, ``hidden_act``) then ``pooler`` (3 x 3 max pool, stride 2)."""

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        self.embedder = ResNetConvLayer(config.num_channels, config.embedding_size, kernel_size=7, stride=2,
                                        act=config.hidden_act)
        self.pooler = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.pooler(self.embedder(pixel_values))


class ResNetEncoder(nn.Module):
    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        widths = [config.embedding_size] + list(config.hidden_sizes)
        self.stages = nn.ModuleList(
            ResNetStage(config, widths[i], widths[i + 1], 2 if i > 0 or config.downsample_in_first_stage else 1, d)
            for i, d in enumerate(config.depths))

    def forward(self, x: torch.Tensor, keep: bool) -> tuple[torch.Tensor, tuple | None]:
        states = [x] if keep else None
        for stage in self.stages:
            x = stage(x)
            if keep:
                states.append(x)
        return x, tuple(states) if keep else None


# --- models -----------------------------------------------------------------------------------
class ResNetPreTrainedModel(PreTrainedModel):
    config_class = ResNetConfig
    base_model_prefix = "resnet"
    forward_inputs = frozenset({"pixel_values"})

    def _init_weights(self, module: nn.Module) -> None:
        # the reference's: He-normal convolutions (fan out), torch's default Linear, unit batch norms
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                bound = 1 / math.sqrt(module.in_features) if module.in_features > 0 else 0
                nn.init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            module.running_mean.zero_()
            module.running_var.fill_(1.0)
            module.num_batches_tracked.zero_()

    def _pixels(self, pixel_values: Any) -> torch.Tensor:
        weight = self.embedder.embedder.convolution.weight
        return check_image_pixels(pixel_values, self.config.num_channels, weight.dtype,
                                  type(self).__name__).to(weight.device)

    def get_input_embeddings(self) -> nn.Module:
        return self.embedder.embedder.convolution


class ResNetModel(ResNetPreTrainedModel):
    """``last_hidden_state`` (B, hidden_sizes[-1], H', W') of the last stage, ``pooler_output``
    (B, hidden_sizes[-1], 1, 1) its spatial mean, and with ``output_hidden_states`` the stem's and
    every stage's output."""

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__(config)
        self.embedder = ResNetEmbeddings(config)
        self.encoder = ResNetEncoder(config)
        self.pooler = nn.AdaptiveAvgPool2d((1, 1))

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool | None = None) -> BaseModelOutput:
        keep = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        last, states = self.encoder(self.embedder(self._pixels(pixel_values)), bool(keep))
        return BaseModelOutput(last_hidden_state=last, pooler_output=self.pooler(last), hidden_states=states)


class ResNetForImageClassification(ResNetPreTrainedModel):
    """Image ``logits`` (B, num_labels) from the pooled output; with ``labels`` the loss the
    config's ``problem_type`` names (inferred from the labels the first time)."""

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__(config)
        self.resnet = ResNetModel(config)
        self.classifier = nn.Sequential(nn.Flatten(), classifier_linear(config.hidden_sizes[-1], config.num_labels))

    def get_input_embeddings(self) -> nn.Module:
        return self.resnet.get_input_embeddings()

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None,
                output_hidden_states: bool | None = None) -> SequenceClassifierOutput:
        out = self.resnet(pixel_values, output_hidden_states)
        logits = self.classifier(out.pooler_output)
        return sequence_classification_output(self.config, logits, labels, out)


class ResNetBackbone(BackboneMixin, ResNetPreTrainedModel):
    """The feature maps of ``config.out_features`` (default: the last stage), for detectors and
    segmenters: ``forward(pixel_values).feature_maps``, a tuple of (B, C, H, W) maps; ``channels``
    their widths. Built from a config (or :func:`pretrained.layers.backbone.load_backbone` on a
    ``backbone_config``), or loaded from any ResNet checkpoint, a classifier's included::

        ResNetBackbone.from_pretrained(path, out_features=["stage1", "stage2", "stage3", "stage4"])
    """

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__(config)
        self.num_features = [config.embedding_size] + list(config.hidden_sizes)
        self.embedder = ResNetEmbeddings(config)
        self.encoder = ResNetEncoder(config)

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool | None = None) -> BackboneOutput:
        keep = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        _, states = self.encoder(self.embedder(self._pixels(pixel_values)), True)
        return BackboneOutput(feature_maps=self.select_feature_maps(states), hidden_states=states if keep else None)


MODEL_CLASSES = {
    "model": ResNetModel,
    "image-classification": ResNetForImageClassification,
    "backbone": ResNetBackbone,
}
