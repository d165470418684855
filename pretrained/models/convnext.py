"""ConvNeXt (``model_type: "convnext"``, Liu et al. 2022): the bare convolutional backbone with its
pooled output, and the image classification head. ConvNeXt V2 (:mod:`.convnextv2`) reuses the
blocks here with GRN in place of the layer scale.

Input: ``pixel_values`` (B, num_channels, H, W), what the model's image processor returns. Any
size works (there are no position embeddings) as long as every downsampling step keeps a pixel:
H and W at least ``patch_size * 2 ** (num_stages - 1)``.

The stem (``embeddings``) is a ``patch_size`` x ``patch_size`` convolution with stride
``patch_size`` to ``hidden_sizes[0]`` channels and a channels-first LayerNorm (eps 1e-6). Then
``num_stages`` stages; every stage but the first starts by downsampling (channels-first
LayerNorm, then a 2 x 2 convolution with stride 2 to the stage's width), then ``depths[i]``
blocks, each::

    x + drop_path(gamma * pwconv2(act(pwconv1(layernorm(dwconv(x))))))

with ``dwconv`` a depthwise 7 x 7 convolution (padding 3), the LayerNorm (eps 1e-6) and the two
pointwise ``nn.Linear`` layers (width x4) over channels-last features, ``gamma`` the layer scale
(``layer_scale_parameter``; absent when ``layer_scale_init_value`` is 0), and stochastic depth
(``drop_path``, rate rising linearly to ``drop_path_rate`` over all blocks) in training only.
``last_hidden_state`` is the last stage's (B, C, H/32, W/32) map; ``pooler_output`` the
spatial mean through the final ``layernorm`` (eps ``layer_norm_eps``); the classifier reads the
pooled output. ``hidden_states``: the stem's output, then every stage's.

Module names equal the checkpoints' keys (``convnext.embeddings.patch_embeddings.weight``,
``convnext.encoder.stages.1.downsampling_layer.1.weight``,
``convnext.encoder.stages.0.layers.0.dwconv.weight``, ``...pwconv1.weight``,
``...layer_scale_parameter``, ``convnext.layernorm``, ``classifier``).

Example::

    >>> import torch
    >>> from pretrained.models.convnext import ConvNextConfig, ConvNextForImageClassification
    >>> cfg = ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 2], image_size=32, num_labels=3)
    >>> model = ConvNextForImageClassification.from_config(cfg).eval()
    >>> model(torch.randn(2, 3, 32, 32)).logits.shape
    torch.Size([2, 3])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import PretrainedConfig
from ..errors import InvalidInputError
from ..layers import activation, classifier_linear, init_normal_, sequence_classification_output
from ..layers.drop_path import DropPath, drop_path_rates
from ..layers.vit_blocks import check_pixel_values, pair
from ..modeling import PreTrainedModel
from ..outputs import BaseModelOutput, SequenceClassifierOutput

_BLOCK_EPS = 1e-6   # the stem's, the downsampling and the blocks' LayerNorms (fixed in the reference)


class ConvNextConfig(PretrainedConfig):
    """The reference's fields and defaults (facebook/convnext-tiny-224's shape)."""

    model_type = "convnext"

    num_channels: int = 3
    patch_size: int | list = 4
    num_stages: int = 4
    hidden_sizes: list = [96, 192, 384, 768]
    depths: list = [3, 3, 9, 3]
    hidden_act: str = "gelu"
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    layer_scale_init_value: float = 1e-6
    drop_path_rate: float = 0.0
    image_size: int | list = 224

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for key in ("hidden_sizes", "depths"):
            if isinstance(getattr(self, key), tuple):
                setattr(self, key, list(getattr(self, key)))

    def validate(self) -> None:
        check_convnext_config(self)


def check_convnext_config(config) -> None:
    req = config._require
    for key in ("hidden_sizes", "depths"):
        value = getattr(config, key)
        req(isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                      for v in value),
            f"{key} must be a list of positive ints, got {value!r}")
        req(len(value) == config.num_stages, f"{key} has {len(value)} entries, num_stages is {config.num_stages}")
    req(isinstance(config.num_stages, int) and config.num_stages > 0, f"num_stages must be > 0, got {config.num_stages}")
    req(config.num_channels > 0, f"num_channels must be > 0, got {config.num_channels}")
    ok = isinstance(config.patch_size, int) and config.patch_size > 0 or (
        isinstance(config.patch_size, list) and len(config.patch_size) == 2
        and all(isinstance(v, int) and v > 0 for v in config.patch_size))
    req(ok, f"patch_size must be a positive int or a [height, width] pair, got {config.patch_size!r}")
    req(config.layer_norm_eps > 0, f"layer_norm_eps must be > 0, got {config.layer_norm_eps}")
    req(0.0 <= config.drop_path_rate < 1.0, f"drop_path_rate must be in [0, 1), got {config.drop_path_rate}")
    activation(config.hidden_act)


class ChannelsFirstLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class GRN(nn.Module):
    """ConvNeXt V2's global response normalisation over channels-last (B, H, W, C) features:
    ``weight * (x * n) + bias + x`` with ``n`` each channel's spatial L2 norm over its mean across
    channels (+ 1e-6)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.bias = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norms = torch.linalg.vector_norm(x, ord=2, dim=(1, 2), keepdim=True)
        n = norms / (norms.mean(dim=-1, keepdim=True) + 1e-6)
        return self.weight * (x * n) + self.bias + x


class ConvNextLayer(nn.Module):
    """One block (see the module docstring); ``grn`` for V2 (which has no layer scale)."""

    def __init__(self, config, dim: int, drop_path: float, grn: bool = False) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.layernorm = nn.LayerNorm(dim, eps=_BLOCK_EPS)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = activation(config.hidden_act)
        self.grn = GRN(4 * dim) if grn else None
        self.pwconv2 = nn.Linear(4 * dim, dim)
        scale = 0.0 if grn else getattr(config, "layer_scale_init_value", 0.0)
        self.layer_scale_parameter = nn.Parameter(scale * torch.ones(dim)) if scale > 0 else None
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layernorm(self.dwconv(x).permute(0, 2, 3, 1))
        h = self.act(self.pwconv1(h))
        if self.grn is not None:
            h = self.grn(h)
        h = self.pwconv2(h)
        if self.layer_scale_parameter is not None:
            h = self.layer_scale_parameter * h
        return x + self.drop_path(h.permute(0, 3, 1, 2))


class ConvNextStage(nn.Module):
    """Downsampling (channels-first LayerNorm + 2 x 2 stride-2 convolution; none for the first
    stage) and the stage's blocks."""

    def __init__(self, config, in_dim: int, out_dim: int, stride: int, rates: list[float], grn: bool) -> None:
        super().__init__()
        if in_dim != out_dim or stride > 1:
            self.downsampling_layer = nn.Sequential(ChannelsFirstLayerNorm(in_dim, eps=_BLOCK_EPS),
                                                    nn.Conv2d(in_dim, out_dim, kernel_size=2, stride=stride))
        else:
            self.downsampling_layer = nn.Identity()
        self.layers = nn.Sequential(*(ConvNextLayer(config, out_dim, r, grn) for r in rates))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.downsampling_layer(x))


class ConvNextEmbeddings(nn.Module):
    """The stem: ``patch_embeddings`` (patch_size convolution, stride patch_size) + ``layernorm``."""

    def __init__(self, config) -> None:
        super().__init__()
        ph, pw = pair(config.patch_size)
        self.patch_embeddings = nn.Conv2d(config.num_channels, config.hidden_sizes[0], kernel_size=(ph, pw),
                                          stride=(ph, pw))
        self.layernorm = ChannelsFirstLayerNorm(config.hidden_sizes[0], eps=_BLOCK_EPS)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.layernorm(self.patch_embeddings(pixel_values))


class ConvNextEncoder(nn.Module):
    def __init__(self, config, grn: bool = False) -> None:
        super().__init__()
        total = sum(config.depths)
        rates = drop_path_rates(config.drop_path_rate, total)
        self.stages = nn.ModuleList()
        prev, start = config.hidden_sizes[0], 0
        for i, (dim, depth) in enumerate(zip(config.hidden_sizes, config.depths)):
            self.stages.append(ConvNextStage(config, prev, dim, 2 if i > 0 else 1, rates[start:start + depth], grn))
            prev, start = dim, start + depth

    def forward(self, x: torch.Tensor, keep: bool) -> tuple[torch.Tensor, tuple | None]:
        states = [x] if keep else None
        for stage in self.stages:
            x = stage(x)
            if keep:
                states.append(x)
        return x, tuple(states) if keep else None


def check_convnext_pixels(pixel_values: Any, config, dtype: torch.dtype, model: str) -> torch.Tensor:
    """(B, num_channels, H, W) float pixels, large enough for every downsampling step; or a named
    error."""
    x = check_pixel_values(pixel_values, config, dtype, True, model)
    ph, pw = pair(config.patch_size)
    step = 2 ** (config.num_stages - 1)
    height, width = x.shape[2:]
    if height < ph * step or width < pw * step:
        raise InvalidInputError(
            f"pixel_values of {height}x{width} is too small for {model}: its {config.num_stages} stages need at "
            f"least {ph * step}x{pw * step} pixels (patch {ph}x{pw}, then {config.num_stages - 1} halvings); "
            "resize with the model's image processor (AutoImageProcessor)")
    return x


# --- models -----------------------------------------------------------------------------------
class ConvNextPreTrainedModel(PreTrainedModel):
    config_class = ConvNextConfig
    base_model_prefix = "convnext"
    forward_inputs = frozenset({"pixel_values"})
    grn = False   # ConvNeXt V2

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, GRN):
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, ConvNextLayer):
            if module.layer_scale_parameter is not None:
                nn.init.constant_(module.layer_scale_parameter, self.config.layer_scale_init_value)
        else:
            init_normal_(module, std)

    @property
    def backbone(self) -> "ConvNextModel":
        return getattr(self, self.base_model_prefix)

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.embeddings.patch_embeddings


class ConvNextModel(ConvNextPreTrainedModel):
    """The backbone: ``last_hidden_state`` (B, hidden_sizes[-1], H', W') of the last stage,
    ``pooler_output`` (B, hidden_sizes[-1]) its spatial mean through ``layernorm``, and with
    ``output_hidden_states`` the stem's and every stage's output."""

    def __init__(self, config: ConvNextConfig) -> None:
        super().__init__(config)
        self.embeddings = ConvNextEmbeddings(config)
        self.encoder = ConvNextEncoder(config, grn=self.grn)
        self.layernorm = nn.LayerNorm(config.hidden_sizes[-1], eps=config.layer_norm_eps)

    @property
    def backbone(self) -> "ConvNextModel":
        return self

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool | None = None) -> BaseModelOutput:
        weight = self.embeddings.patch_embeddings.weight
        x = check_convnext_pixels(pixel_values, self.config, weight.dtype,
                                  type(self).__name__.replace("Model", "")).to(weight.device)
        keep = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        last, states = self.encoder(self.embeddings(x), bool(keep))
        pooled = self.layernorm(last.mean(dim=(-2, -1)))
        return BaseModelOutput(last_hidden_state=last, pooler_output=pooled, hidden_states=states)


class ConvNextForImageClassification(ConvNextPreTrainedModel):
    """Image ``logits`` (B, num_labels) from the pooled output; with ``labels`` the loss the
    config's ``problem_type`` names (inferred from the labels the first time)."""

    model_class = ConvNextModel

    def __init__(self, config: ConvNextConfig) -> None:
        super().__init__(config)
        setattr(self, self.base_model_prefix, self.model_class(config))
        self.classifier = classifier_linear(config.hidden_sizes[-1], config.num_labels)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None,
                output_hidden_states: bool | None = None) -> SequenceClassifierOutput:
        out = self.backbone(pixel_values, output_hidden_states)
        logits = self.classifier(out.pooler_output)
        return sequence_classification_output(self.config, logits, labels, out)


MODEL_CLASSES = {
    "model": ConvNextModel,
    "image-classification": ConvNextForImageClassification,
}
