"""SegFormer (``model_type: "segformer"``, Xie et al. 2021): the Mix Transformer encoder (MiT) with
its all-MLP decode head for semantic segmentation, or an image classification head.

Input: ``pixel_values`` (B, num_channels, H, W), what :class:`~pretrained.processing.SegformerImageProcessor`
returns. Any size works (no position embeddings: the Mix-FFN's depthwise convolution carries
position) as long as every stage's map is at least its ``sr_ratio`` on each side.

The encoder has ``num_encoder_blocks`` stages. Each stage starts with an *overlapping* patch
embedding (``patch_embeddings.i``: a ``patch_sizes[i]`` convolution with stride ``strides[i]`` and
padding ``patch_sizes[i] // 2``, then a LayerNorm) and runs ``depths[i]`` blocks over the
(B, h*w, C) tokens::

    x = x + drop_path(attention(layer_norm_1(x)))          # efficient self-attention
    x = x + drop_path(mlp(layer_norm_2(x)))                # Mix-FFN

The efficient self-attention (``attention.self``) takes queries from every token but keys and
values from a map shrunk by ``sr_ratios[i]`` (``sr``: a convolution with kernel_size = stride =
sr_ratio, then ``layer_norm``), which is what keeps the first, largest stages affordable;
``attention.output.dense`` projects back. The Mix-FFN (``mlp``) is ``dense2(act(dwconv(dense1(x))))``
with a depthwise 3 x 3 convolution over the token map between the two linears. Each stage ends
with a LayerNorm (``encoder.layer_norm.i``) and is reshaped to a (B, C, h, w) map -- the last one
only when ``reshape_last_stage`` (else it stays (B, h*w, C), as the reference returns it). Every
LayerNorm is PyTorch's default (eps 1e-5), as in the reference: ``layer_norm_eps`` is not read.
Stochastic depth (``drop_path``, rate rising linearly to ``drop_path_rate`` over all blocks) is
applied in training only.

The decode head (``decode_head``) projects every stage's map to ``decoder_hidden_size`` channels
(``linear_c.i.proj``), upsamples them bilinearly to the first stage's size (1/4 of the input for
the usual stride 4), concatenates them last stage first, fuses them with a 1 x 1 convolution
without bias (``linear_fuse``), ``batch_norm``, ReLU, dropout and a 1 x 1 ``classifier``:
``logits`` (B, num_labels, H/4, W/4). With ``labels`` (B, H, W) the logits are upsampled
bilinearly to the labels' size for the loss: cross-entropy ignoring ``semantic_loss_ignore_index``,
or with one label a per-pixel binary cross-entropy whose ignored pixels count as zero loss (the
mean over every pixel, as the reference). The classification head averages the last stage's
tokens into ``classifier``.

Module names equal the checkpoints' keys (``segformer.encoder.patch_embeddings.0.proj.weight``,
``segformer.encoder.block.0.0.attention.self.query.weight``, ``...attention.self.sr.weight``,
``...mlp.dwconv.dwconv.weight``, ``segformer.encoder.layer_norm.0.weight``,
``decode_head.linear_c.0.proj.weight``, ``decode_head.linear_fuse.weight``,
``decode_head.batch_norm.running_mean``, ``decode_head.classifier.weight``).

Example::

    >>> import torch
    >>> from pretrained.models.segformer import SegformerConfig, SegformerForSemanticSegmentation
    >>> cfg = SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
    ...                       patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2],
    ...                       mlp_ratios=[4, 4], decoder_hidden_size=16, num_labels=3)
    >>> model = SegformerForSemanticSegmentation.from_config(cfg).eval()
    >>> model(torch.randn(2, 3, 32, 48)).logits.shape
    torch.Size([2, 3, 8, 12])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..config import PretrainedConfig
from ..errors import InvalidInputError
from ..layers import activation, attention, init_normal_, merge_heads, sequence_classification_output, split_heads
from ..layers.drop_path import DropPath, drop_path_rates
from ..layers.pixels import check_image_pixels
from ..modeling import PreTrainedModel
from ..outputs import BaseModelOutput, SemanticSegmenterOutput, SequenceClassifierOutput

_STAGE_LISTS = ("depths", "sr_ratios", "hidden_sizes", "patch_sizes", "strides", "num_attention_heads",
                "mlp_ratios")


class SegformerConfig(PretrainedConfig):
    """The reference's fields and defaults (the b0 shape: nvidia/segformer-b0-finetuned-ade-512-512)."""

    model_type = "segformer"
    attribute_map = {"num_hidden_layers": "num_encoder_blocks"}

    num_channels: int = 3
    num_encoder_blocks: int = 4
    depths: list = [2, 2, 2, 2]
    sr_ratios: list = [8, 4, 2, 1]
    hidden_sizes: list = [32, 64, 160, 256]
    patch_sizes: list = [7, 3, 3, 3]
    strides: list = [4, 2, 2, 2]
    num_attention_heads: list = [1, 2, 5, 8]
    mlp_ratios: list = [4, 4, 4, 4]
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    classifier_dropout_prob: float = 0.1
    initializer_range: float = 0.02
    drop_path_rate: float = 0.1
    layer_norm_eps: float = 1e-6
    decoder_hidden_size: int = 256
    semantic_loss_ignore_index: int = 255
    reshape_last_stage: bool = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for key in _STAGE_LISTS:
            if isinstance(getattr(self, key), tuple):
                setattr(self, key, list(getattr(self, key)))

    def validate(self) -> None:
        req = self._require
        n = self.num_encoder_blocks
        req(isinstance(n, int) and not isinstance(n, bool) and n > 0, f"num_encoder_blocks must be > 0, got {n!r}")
        for key in _STAGE_LISTS:
            value = getattr(self, key)
            req(isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                          for v in value),
                f"{key} must be a list of positive ints, got {value!r}")
            req(len(value) == n, f"{key} has {len(value)} entries, num_encoder_blocks is {n}")
        for i, (size, heads) in enumerate(zip(self.hidden_sizes, self.num_attention_heads)):
            req(size % heads == 0, f"hidden_sizes[{i}]={size} is not a multiple of num_attention_heads[{i}]={heads}")
        req(self.num_channels > 0, f"num_channels must be > 0, got {self.num_channels}")
        req(self.decoder_hidden_size > 0, f"decoder_hidden_size must be > 0, got {self.decoder_hidden_size}")
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout_prob"):
            req(0.0 <= getattr(self, key) <= 1.0, f"{key} must be in [0, 1], got {getattr(self, key)}")
        req(0.0 <= self.drop_path_rate < 1.0, f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        activation(self.hidden_act)


# --- encoder ----------------------------------------------------------------------------------
class SegformerOverlapPatchEmbeddings(nn.Module):
    """(B, C_in, H, W) -> (B, h*w, C) tokens through an overlapping strided convolution
    (``proj``) and ``layer_norm``; returns the map's (h, w) too."""

    def __init__(self, patch_size: int, stride: int, in_channels: int, hidden_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=stride,
                              padding=patch_size // 2)
        self.layer_norm = nn.LayerNorm(hidden_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        height, width = x.shape[2:]
        return self.layer_norm(x.flatten(2).transpose(1, 2)), height, width


class SegformerEfficientSelfAttention(nn.Module):
    """Queries from every token, keys and values from the map shrunk ``sr_ratio`` times on each
    side (``sr`` + ``layer_norm``; none when the ratio is 1)."""

    def __init__(self, config: SegformerConfig, hidden_size: int, num_heads: int, sr_ratio: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = config.attention_probs_dropout_prob
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(hidden_size, hidden_size, kernel_size=sr_ratio, stride=sr_ratio)
            self.layer_norm = nn.LayerNorm(hidden_size)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        kv = x
        if self.sr_ratio > 1:
            b, _, c = x.shape
            kv = self.sr(x.transpose(1, 2).reshape(b, c, height, width))
            kv = self.layer_norm(kv.reshape(b, c, -1).transpose(1, 2))
        q = split_heads(self.query(x), self.num_heads)
        k = split_heads(self.key(kv), self.num_heads)
        v = split_heads(self.value(kv), self.num_heads)
        y = attention(q, k, v, None, causal=False, dropout=self.dropout if self.training else 0.0)
        return merge_heads(y)


class SegformerSelfOutput(nn.Module):
    """``dense`` back to the stage's width, then dropout."""

    def __init__(self, config: SegformerConfig, hidden_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.dense(x))


class SegformerAttention(nn.Module):
    def __init__(self, config: SegformerConfig, hidden_size: int, num_heads: int, sr_ratio: int) -> None:
        super().__init__()
        self.self = SegformerEfficientSelfAttention(config, hidden_size, num_heads, sr_ratio)
        self.output = SegformerSelfOutput(config, hidden_size)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return self.output(self.self(x, height, width))


class SegformerDWConv(nn.Module):
    """A depthwise 3 x 3 convolution (``dwconv``) over the (B, h*w, C) tokens laid out as their map."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, groups=dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        b, _, c = x.shape
        x = self.dwconv(x.transpose(1, 2).reshape(b, c, height, width))
        return x.flatten(2).transpose(1, 2)


class SegformerMixFFN(nn.Module):
    """``dense2(dropout(act(dwconv(dense1(x)))))`` then dropout."""

    def __init__(self, config: SegformerConfig, hidden_size: int, inner: int) -> None:
        super().__init__()
        self.dense1 = nn.Linear(hidden_size, inner)
        self.dwconv = SegformerDWConv(inner)
        self.act = activation(config.hidden_act)
        self.dense2 = nn.Linear(inner, hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = self.dropout(self.act(self.dwconv(self.dense1(x), height, width)))
        return self.dropout(self.dense2(x))


class SegformerLayer(nn.Module):
    """One pre-LayerNorm block (see the module docstring)."""

    def __init__(self, config: SegformerConfig, stage: int, drop_path: float) -> None:
        super().__init__()
        dim = config.hidden_sizes[stage]
        self.layer_norm_1 = nn.LayerNorm(dim)
        self.attention = SegformerAttention(config, dim, config.num_attention_heads[stage], config.sr_ratios[stage])
        self.drop_path = DropPath(drop_path)
        self.layer_norm_2 = nn.LayerNorm(dim)
        self.mlp = SegformerMixFFN(config, dim, int(dim * config.mlp_ratios[stage]))

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = x + self.drop_path(self.attention(self.layer_norm_1(x), height, width))
        return x + self.drop_path(self.mlp(self.layer_norm_2(x), height, width))


class SegformerEncoder(nn.Module):
    """The stages: ``patch_embeddings.i``, ``block.i.j``, ``layer_norm.i``."""

    def __init__(self, config: SegformerConfig) -> None:
        super().__init__()
        self.config = config
        total = sum(config.depths)
        rates = drop_path_rates(config.drop_path_rate, total)
        channels = [config.num_channels, *config.hidden_sizes[:-1]]
        self.patch_embeddings = nn.ModuleList(
            SegformerOverlapPatchEmbeddings(p, s, c, h)
            for p, s, c, h in zip(config.patch_sizes, config.strides, channels, config.hidden_sizes))
        blocks, start = [], 0
        for stage, depth in enumerate(config.depths):
            blocks.append(nn.ModuleList(SegformerLayer(config, stage, rates[start + j]) for j in range(depth)))
            start += depth
        self.block = nn.ModuleList(blocks)
        self.layer_norm = nn.ModuleList(nn.LayerNorm(h) for h in config.hidden_sizes)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """Every stage's output and the last stage's map size (h, w)."""
        states = []
        last = len(self.block) - 1
        for i, (embed, blocks, norm) in enumerate(zip(self.patch_embeddings, self.block, self.layer_norm)):
            x, height, width = embed(x)
            for block in blocks:
                x = block(x, height, width)
            x = norm(x)
            if i < last or self.config.reshape_last_stage:
                x = x.reshape(x.shape[0], height, width, -1).permute(0, 3, 1, 2).contiguous()
            states.append(x)
        return states, (height, width)


def min_image_size(config: SegformerConfig) -> int:
    """The smallest side every stage's sequence reduction can take (its map >= sr_ratio)."""
    side = 1
    while True:
        h, ok = side, True
        for p, s, r in zip(config.patch_sizes, config.strides, config.sr_ratios):
            h = (h + 2 * (p // 2) - p) // s + 1
            ok = ok and h >= r and h >= 1
        if ok:
            return side
        side += 1


def check_segformer_pixels(pixel_values: Any, config: SegformerConfig, dtype: torch.dtype, model: str) -> torch.Tensor:
    """(B, num_channels, H, W) float pixels (one (C, H, W) image is a batch of one), large enough
    for every stage's sequence reduction; or a named error."""
    pixel_values = check_image_pixels(pixel_values, config.num_channels, dtype, model)
    got = tuple(pixel_values.shape)
    side = min_image_size(config)
    if min(got[2:]) < side:
        raise InvalidInputError(
            f"pixel_values of {got[2]}x{got[3]} is too small for {model}: its stages' sequence reduction "
            f"(sr_ratios {config.sr_ratios}) needs at least {side}x{side} pixels; resize with the image processor")
    return pixel_values


# --- heads ------------------------------------------------------------------------------------
class SegformerMLP(nn.Module):
    """One stage's map (B, C, h, w) -> (B, h*w, decoder_hidden_size) through ``proj``."""

    def __init__(self, config: SegformerConfig, input_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(input_dim, config.decoder_hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.flatten(2).transpose(1, 2))


class SegformerDecodeHead(nn.Module):
    """The all-MLP decoder (see the module docstring): (B, num_labels, h0, w0) logits at the first
    stage's map size."""

    def __init__(self, config: SegformerConfig) -> None:
        super().__init__()
        self.linear_c = nn.ModuleList(SegformerMLP(config, h) for h in config.hidden_sizes)
        width = config.decoder_hidden_size
        self.linear_fuse = nn.Conv2d(width * config.num_encoder_blocks, width, kernel_size=1, bias=False)
        self.batch_norm = nn.BatchNorm2d(width)
        self.activation = nn.ReLU()
        self.dropout = nn.Dropout(config.classifier_dropout_prob)
        self.classifier = nn.Conv2d(width, config.num_labels, kernel_size=1)

    def forward(self, states: list[torch.Tensor], last_hw: tuple[int, int]) -> torch.Tensor:
        b = states[0].shape[0]
        size = tuple(states[0].shape[2:])
        maps = []
        for state, mlp in zip(states, self.linear_c):
            if state.dim() == 3:   # the last stage left as tokens (reshape_last_stage False)
                state = state.reshape(b, *last_hw, -1).permute(0, 3, 1, 2)
            height, width = state.shape[2:]
            x = mlp(state).transpose(1, 2).reshape(b, -1, height, width)
            if (height, width) != size:   # bilinear to the same size is the identity: skipped
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            maps.append(x)
        x = self.linear_fuse(torch.cat(maps[::-1], dim=1))
        x = self.dropout(self.activation(self.batch_norm(x)))
        return self.classifier(x)


def semantic_segmentation_loss(config: SegformerConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The reference's loss: logits upsampled (bilinear) to the labels' (H, W); cross-entropy that
    ignores ``semantic_loss_ignore_index``, or with one label a binary cross-entropy per pixel,
    the ignored (and negative) pixels counted as zero in the mean."""
    if not isinstance(labels, torch.Tensor):
        raise InvalidInputError(f"labels must be a torch.Tensor of (batch, height, width) class ids, got "
                                f"{type(labels).__name__}")
    if labels.dim() == 2:
        labels = labels.unsqueeze(0)
    if labels.dim() != 3 or labels.shape[0] != logits.shape[0]:
        raise InvalidInputError(
            f"labels has shape {tuple(labels.shape)}; a semantic segmentation head takes one (height, width) map of "
            f"class ids per image, (batch={logits.shape[0]}, height, width): the processor's 'labels' from "
            "segmentation_maps=")
    labels = labels.to(logits.device)
    up = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    ignore = config.semantic_loss_ignore_index
    n = config.num_labels
    if n > 1:
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise InvalidInputError(f"labels must hold integer class ids for {n} labels, got {labels.dtype}")
        labels = labels.long()
        bad = (labels != ignore) & ((labels < 0) | (labels >= n))
        if bool(bad.any()):
            raise InvalidInputError(
                f"labels hold class ids {sorted(set(labels[bad].unique().tolist()))[:8]} outside 0..{n - 1} (and not the "
                f"ignored {ignore}, config.semantic_loss_ignore_index); with a 0 = background dataset whose background "
                "is not a class, preprocess with do_reduce_labels=True")
        return F.cross_entropy(up, labels, ignore_index=ignore)
    valid = ((labels >= 0) & (labels != ignore)).to(up.dtype)
    loss = F.binary_cross_entropy_with_logits(up.squeeze(1), labels.to(up.dtype), reduction="none")
    return (loss * valid).mean()


# --- models -----------------------------------------------------------------------------------
class SegformerPreTrainedModel(PreTrainedModel):
    config_class = SegformerConfig
    base_model_prefix = "segformer"
    forward_inputs = frozenset({"pixel_values"})

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()   # weight 1, bias 0, running mean 0 / var 1
        else:
            init_normal_(module, std)

    @property
    def backbone(self) -> "SegformerModel":
        return getattr(self, self.base_model_prefix)

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.encoder.patch_embeddings[0].proj

    def _encode(self, pixel_values: Any) -> tuple[list[torch.Tensor], tuple[int, int]]:
        weight = self.get_input_embeddings().weight
        x = check_segformer_pixels(pixel_values, self.config, weight.dtype, type(self).__name__)
        return self.backbone.encoder(x.to(weight.device))


class SegformerModel(SegformerPreTrainedModel):
    """The Mix Transformer encoder: ``last_hidden_state`` the last stage's (B, C, h, w) map ((B, h*w,
    C) tokens when not ``reshape_last_stage``); with ``output_hidden_states`` every stage's output."""

    def __init__(self, config: SegformerConfig) -> None:
        super().__init__(config)
        self.encoder = SegformerEncoder(config)

    @property
    def backbone(self) -> "SegformerModel":
        return self

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool | None = None) -> BaseModelOutput:
        keep = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        states, _ = self._encode(pixel_values)
        return BaseModelOutput(last_hidden_state=states[-1], hidden_states=tuple(states) if keep else None)


class SegformerForImageClassification(SegformerPreTrainedModel):
    """Image ``logits`` (B, num_labels) from the mean of the last stage's tokens; with ``labels``
    the loss the config's ``problem_type`` names (inferred from the labels the first time)."""

    def __init__(self, config: SegformerConfig) -> None:
        super().__init__(config)
        self.segformer = SegformerModel(config)
        self.classifier = nn.Linear(config.hidden_sizes[-1], config.num_labels)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None,
                output_hidden_states: bool | None = None) -> SequenceClassifierOutput:
        out = self.segformer(pixel_values, output_hidden_states)
        last = out.last_hidden_state
        if last.dim() == 4:
            last = last.flatten(2).transpose(1, 2)
        logits = self.classifier(last.mean(dim=1))
        return sequence_classification_output(self.config, logits, labels, out)


class SegformerForSemanticSegmentation(SegformerPreTrainedModel):
    """Per-pixel ``logits`` (B, num_labels, H/4, W/4) from the all-MLP decode head; with ``labels``
    (B, H, W) class ids (the processor's, from ``segmentation_maps``) the loss described in the
    module docstring. Upsample the logits to the picture's size with the processor's
    ``post_process_semantic_segmentation``."""

    def __init__(self, config: SegformerConfig) -> None:
        super().__init__(config)
        self.segformer = SegformerModel(config)
        self.decode_head = SegformerDecodeHead(config)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None,
                output_hidden_states: bool | None = None) -> SemanticSegmenterOutput:
        keep = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        states, last_hw = self._encode(pixel_values)
        logits = self.decode_head(states, last_hw)
        loss = None if labels is None else semantic_segmentation_loss(self.config, logits, labels)
        return SemanticSegmenterOutput(loss=loss, logits=logits, hidden_states=tuple(states) if keep else None)


MODEL_CLASSES = {
    "model": SegformerModel,
    "image-classification": SegformerForImageClassification,
    "semantic-segmentation": SegformerForSemanticSegmentation,
}
