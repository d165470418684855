"""The Swin Transformer (``model_type: "swin"``, Liu et al. 2021): the bare encoder with its pooled
output, the image classification head, and the backbone detectors and segmenters read feature
maps from (Mask2Former's ``pixel_level_module.encoder``).

Input: ``pixel_values`` (B, num_channels, H, W), what the model's image processor returns. The
image is padded (bottom, right) to a multiple of ``patch_size``, cut into patches by one
convolution (``embeddings.patch_embeddings.projection``) and normalised (``embeddings.norm``,
eps 1e-5); with ``use_absolute_embeddings`` learned ``position_embeddings`` are added (resized
bicubically for another image size with ``interpolate_pos_encoding=True``). Then one stage per
entry of ``depths``; stage ``i`` has width ``embed_dim * 2 ** i`` and ``num_heads[i]`` heads;
every stage but the last ends in patch merging (``downsample``: the map padded to even sides,
each 2 x 2 neighbourhood concatenated, LayerNorm (eps 1e-5) and a linear ``reduction`` to twice
the width). A block (``layers.<i>.blocks.<j>``)::

    x = x + drop_path(attention(layernorm_before(x)))        # in windows, see below
    x = x + output.dense(act(intermediate.dense(layernorm_after(x))))

The attention runs in ``window_size`` x ``window_size`` windows (the map padded with zeros at
the bottom and right to a multiple of the window; the padded positions take part unmasked, as
in the reference) with a learned bias per relative offset and head
(``attention.self.relative_position_bias_table``); odd blocks shift the map cyclically by
``window_size // 2`` first and mask across the shifted regions (-100, see
:mod:`pretrained.layers.windows`). Where a stage's map is no larger than the window
(``min(h, w) == window_size``) the bare model and the classifier use one unshifted window, as the
reference does; a map smaller than the window is a named error (the reference fails there too,
its bias table being fixed to the window), while the backbone always pads to whole windows and
keeps the shift (the reference's ``always_partition``). The final ``layernorm`` (eps
``layer_norm_eps``) closes the bare model; ``pooler_output`` is the mean over the tokens, what
the classifier (``classifier``) reads. Stochastic depth (``drop_path``, rising linearly to
``drop_path_rate`` over all blocks; only the attention branch, as the reference) in training
only.

Outputs: ``last_hidden_state`` (B, h * w, hidden_size) tokens row-major; with
``output_hidden_states``: ``hidden_states`` (the embeddings, then every stage's output after its
patch merging, as tokens) and ``reshaped_hidden_states`` (the same as (B, C, h, w) maps).

Module names equal the checkpoints' keys (``swin.embeddings.patch_embeddings.projection.weight``,
``swin.encoder.layers.0.blocks.0.attention.self.query.weight``,
``...attention.self.relative_position_bias_table``, ``...attention.output.dense``,
``...layernorm_before``, ``...intermediate.dense``, ``...output.dense``,
``swin.encoder.layers.0.downsample.reduction.weight``, ``swin.layernorm``, ``classifier``); the
backbone's have no ``swin.`` (``embeddings.*``, ``encoder.*``, ``hidden_states_norms.<stage>``)
as the reference writes them, and it loads a classifier's checkpoint too. Old checkpoints'
``relative_position_index`` buffers are skipped: the index is computed from the window size.

Example::

    >>> import torch
    >>> from pretrained.models.swin import SwinConfig, SwinForImageClassification
    >>> cfg = SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[1, 2], num_heads=[2, 4],
    ...                  window_size=4, num_labels=3)
    >>> model = SwinForImageClassification.from_config(cfg).eval()
    >>> model(torch.randn(2, 3, 32, 32)).logits.shape
    torch.Size([2, 3])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..config import PretrainedConfig
from ..errors import InvalidInputError
from ..layers import (activation, attention, classifier_linear, init_normal_, merge_heads, sequence_classification_loss,
                      split_heads)
from ..layers.backbone import BackboneConfigMixin, BackboneMixin, BackboneOutput
from ..layers.drop_path import DropPath, drop_path_rates
from ..layers.vit_blocks import _Dense, _Intermediate, check_pixel_values, interpolate_patch_positions, pair
from ..layers.windows import relative_position_index, shifted_window_mask, window_partition, window_reverse
from ..modeling import PreTrainedModel
from ..outputs import ModelOutput

_MAX_WINDOW = 1024   # an untrusted window_size would size the bias table ((2w - 1)^2 rows)
_MAX_BLOCKS = 1000


class SwinConfig(BackboneConfigMixin, PretrainedConfig):
    """The reference's fields and defaults (microsoft/swin-tiny-patch4-window7-224's shape);
    ``num_layers`` (stages), ``hidden_size`` (the last stage's width) and ``stage_names``
    (``stem``, ``stage1``...) are derived from ``depths`` and ``embed_dim``; ``out_features`` /
    ``out_indices`` pick the backbone's maps (see :mod:`pretrained.layers.backbone`)."""

    model_type = "swin"
    attribute_map = {"num_attention_heads": "num_heads", "num_hidden_layers": "num_layers"}

    image_size: int | list = 224
    patch_size: int | list = 4
    num_channels: int = 3
    embed_dim: int = 96
    depths: list = [2, 2, 6, 2]
    num_heads: list = [3, 6, 12, 24]
    window_size: int = 7
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    drop_path_rate: float = 0.1
    hidden_act: str = "gelu"
    use_absolute_embeddings: bool = False
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5
    encoder_stride: int = 32
    num_layers: int | None = None
    hidden_size: int | None = None
    out_features: list | None = None
    out_indices: list | None = None
    stage_names: list | None = None

    def __init__(self, **kwargs: Any) -> None:
        for key in ("image_size", "patch_size", "depths", "num_heads", "out_features", "out_indices", "stage_names"):
            if isinstance(kwargs.get(key), tuple):   # the reference takes tuples; JSON has lists
                kwargs[key] = list(kwargs[key])
        super().__init__(**kwargs)

    def validate(self) -> None:
        check_swin_config(self)
        # derived, as the reference does (a stale stored value is replaced)
        n = len(self.depths)
        object.__setattr__(self, "num_layers", n)
        object.__setattr__(self, "hidden_size", int(self.embed_dim * 2 ** (n - 1)))
        object.__setattr__(self, "stage_names", ["stem"] + [f"stage{i}" for i in range(1, n + 1)])
        self.align_backbone_outputs()


def check_swin_config(config: SwinConfig) -> None:
    req = config._require

    def positive_ints(value: Any) -> bool:
        return isinstance(value, list) and len(value) > 0 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)

    for key in ("depths", "num_heads"):
        req(positive_ints(getattr(config, key)), f"{key} must be a non-empty list of positive ints, "
            f"got {getattr(config, key)!r}")
    req(len(config.num_heads) == len(config.depths),
        f"num_heads has {len(config.num_heads)} entries, depths {len(config.depths)}: one per stage")
    req(sum(config.depths) <= _MAX_BLOCKS, f"depths {config.depths} add up to more than {_MAX_BLOCKS} blocks")
    req(isinstance(config.embed_dim, int) and config.embed_dim > 0, f"embed_dim must be > 0, got {config.embed_dim}")
    for i, heads in enumerate(config.num_heads):
        width = config.embed_dim * 2 ** i
        req(width % heads == 0, f"stage {i + 1} has width {width} (embed_dim * 2**{i}), not a multiple of its "
            f"{heads} heads (num_heads[{i}])")
    req(0 < config.window_size <= _MAX_WINDOW, f"window_size must be in [1, {_MAX_WINDOW}], got {config.window_size}")
    for key in ("image_size", "patch_size"):
        value = getattr(config, key)
        ok = isinstance(value, int) and value > 0 or positive_ints(value) and len(value) == 2
        req(ok, f"{key} must be a positive int or a [height, width] pair, got {value!r}")
    req(config.num_channels > 0, f"num_channels must be > 0, got {config.num_channels}")
    req(config.mlp_ratio > 0 and int(config.mlp_ratio * config.embed_dim) > 0,
        f"mlp_ratio must be > 0, got {config.mlp_ratio}")
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        req(0.0 <= getattr(config, key) <= 1.0, f"{key} must be in [0, 1], got {getattr(config, key)}")
    req(0.0 <= config.drop_path_rate < 1.0, f"drop_path_rate must be in [0, 1), got {config.drop_path_rate}")
    req(config.layer_norm_eps > 0, f"layer_norm_eps must be > 0, got {config.layer_norm_eps}")
    activation(config.hidden_act)


@dataclass
class SwinModelOutput(ModelOutput):
    """The bare model's outputs (see the module doc)."""

    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    reshaped_hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class SwinImageClassifierOutput(ModelOutput):
    """``logits`` (B, num_labels), the loss with ``labels``, the bare model's hidden states."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    reshaped_hidden_states: tuple[torch.Tensor, ...] | None = None


# --- embeddings ---------------------------------------------------------------------------------
class SwinPatchEmbeddings(nn.Module):
    """(B, C, H, W) -> (B, h * w, embed_dim) tokens and the grid (h, w): the pixels padded with
    zeros at the bottom and right to a multiple of the patch, then one convolution."""

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        self.patch = pair(config.patch_size)
        self.projection = nn.Conv2d(config.num_channels, config.embed_dim, kernel_size=self.patch, stride=self.patch)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        height, width = pixel_values.shape[-2:]
        pad_h, pad_w = -height % self.patch[0], -width % self.patch[1]
        if pad_h or pad_w:
            pixel_values = F.pad(pixel_values, (0, pad_w, 0, pad_h))
        x = self.projection(pixel_values)
        return x.flatten(2).transpose(1, 2), (x.shape[2], x.shape[3])


class SwinEmbeddings(nn.Module):
    """Patch embeddings, ``norm`` (eps 1e-5, fixed in the reference), the absolute
    ``position_embeddings`` with ``use_absolute_embeddings``, dropout."""

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        self.patch_embeddings = SwinPatchEmbeddings(config)
        self.image = pair(config.image_size)
        self.patch = pair(config.patch_size)
        self.grid = (self.image[0] // self.patch[0], self.image[1] // self.patch[1])
        self.position_embeddings = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], config.embed_dim)) \
            if config.use_absolute_embeddings else None
        self.norm = nn.LayerNorm(config.embed_dim)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool) -> tuple[torch.Tensor, tuple]:
        height, width = pixel_values.shape[-2:]
        x, grid = self.patch_embeddings(pixel_values)
        x = self.norm(x)
        if self.position_embeddings is not None:
            x = x + self._positions(x.shape[1], height, width, interpolate_pos_encoding)
        return self.dropout(x), grid

    def _positions(self, patches: int, height: int, width: int, resize: bool) -> torch.Tensor:
        positions = self.position_embeddings
        have = positions.shape[1]
        if resize:
            # the reference's rule: kept for a square image of as many patches, else resized to
            # (H // patch, W // patch), which a size not a multiple of the patch does not fill
            new_grid = (height // self.patch[0], width // self.patch[1])
            positions = interpolate_patch_positions(positions, 0, self.grid, new_grid,
                                                    patches == have and height == width)
            have = positions.shape[1]
        if patches != have:
            how = ("make height and width multiples of the patch size" if resize else
                   "resize with the image processor, or pass interpolate_pos_encoding=True")
            raise InvalidInputError(
                f"pixel_values of {height}x{width} give {patches} patches, but the absolute position embeddings "
                f"(use_absolute_embeddings) cover {have} ({self.grid[0]}x{self.grid[1]} at image_size "
                f"{self.image[0]}x{self.image[1]}); {how}")
        return positions


# --- blocks -------------------------------------------------------------------------------------
class SwinSelfAttention(nn.Module):
    """``query`` / ``key`` / ``value`` over the tokens of each window, scaled dot-product attention
    with the learned ``relative_position_bias_table`` ((2w - 1)^2 offsets x heads) added to the
    scores, and the shifted windows' mask when given."""

    def __init__(self, config: SwinConfig, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window = config.window_size
        self.dropout = config.attention_probs_dropout_prob
        self.query = nn.Linear(dim, dim, bias=config.qkv_bias)
        self.key = nn.Linear(dim, dim, bias=config.qkv_bias)
        self.value = nn.Linear(dim, dim, bias=config.qkv_bias)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * self.window - 1) ** 2, num_heads))

    def forward(self, x: torch.Tensor, shift_mask: torch.Tensor | None) -> torch.Tensor:
        """``x`` (B * n_windows, window * window, dim); ``shift_mask`` None or (n_windows, N, N)."""
        q = split_heads(self.query(x), self.num_heads)
        k = split_heads(self.key(x), self.num_heads)
        v = split_heads(self.value(x), self.num_heads)
        n = x.shape[1]
        index = relative_position_index(self.window, self.window, x.device)
        bias = self.relative_position_bias_table[index].view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if shift_mask is not None:   # every image of the batch has the same windows
            windows = shift_mask.shape[0]
            bias = (bias + shift_mask.unsqueeze(1)).unsqueeze(0).expand(x.shape[0] // windows, -1, -1, -1, -1)
            bias = bias.reshape(x.shape[0], self.num_heads, n, n)
        y = attention(q, k, v, bias.to(q.dtype), causal=False, dropout=self.dropout if self.training else 0.0)
        return merge_heads(y)


class SwinAttention(nn.Module):
    """``self`` (the windowed attention; a module named as the checkpoints name it) and its
    output projection ``output.dense`` (+ dropout)."""

    def __init__(self, config: SwinConfig, dim: int, num_heads: int) -> None:
        super().__init__()
        self.add_module("self", SwinSelfAttention(config, dim, num_heads))
        self.output = _Dense(dim, dim, config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, shift_mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(self._modules["self"](x, shift_mask))


class SwinLayer(nn.Module):
    """One block (see the module doc); ``shift_size`` is 0 for even blocks, window_size // 2 for
    odd ones."""

    def __init__(self, config: SwinConfig, dim: int, num_heads: int, drop_path: float, shift_size: int) -> None:
        super().__init__()
        self.window_size = config.window_size
        self.shift_size = shift_size
        self.layernorm_before = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attention = SwinAttention(config, dim, num_heads)
        self.drop_path = DropPath(drop_path)
        self.layernorm_after = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.intermediate = _Intermediate(dim, int(config.mlp_ratio * dim), config.hidden_act)
        self.output = _Dense(int(config.mlp_ratio * dim), dim, config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, grid: tuple[int, int], always_partition: bool) -> torch.Tensor:
        height, width = grid
        window = self.window_size
        # a map no larger than one window is one unshifted window (the bare model's rule)
        shift = 0 if not always_partition and min(grid) <= window else self.shift_size
        b, _, c = x.shape
        h = self.layernorm_before(x).view(b, height, width, c)
        pad_h, pad_w = -height % window, -width % window
        if pad_h or pad_w:
            h = F.pad(h, (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = height + pad_h, width + pad_w
        if shift:
            h = torch.roll(h, shifts=(-shift, -shift), dims=(1, 2))
        mask = shifted_window_mask(hp, wp, window, shift, h.dtype, h.device) if shift else None
        h = window_reverse(self.attention(window_partition(h, window), mask), window, hp, wp)
        if shift:
            h = torch.roll(h, shifts=(shift, shift), dims=(1, 2))
        if pad_h or pad_w:
            h = h[:, :height, :width]
        x = x + self.drop_path(h.reshape(b, height * width, c))
        return x + self.output(self.intermediate(self.layernorm_after(x)))


class SwinPatchMerging(nn.Module):
    """(B, h * w, C) -> (B, ceil(h/2) * ceil(w/2), 2C): odd sides padded with zeros, each 2 x 2
    neighbourhood concatenated (top-left, bottom-left, top-right, bottom-right), ``norm``
    (eps 1e-5) and ``reduction`` (no bias)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        height, width = grid
        b, _, c = x.shape
        x = x.view(b, height, width, c)
        if height % 2 or width % 2:
            x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.reshape(b, -1, 4 * c)))


class SwinStage(nn.Module):
    """The stage's ``blocks`` and, but for the last stage, its ``downsample`` (patch merging)."""

    def __init__(self, config: SwinConfig, dim: int, num_heads: int, rates: list[float], last: bool) -> None:
        super().__init__()
        shift = config.window_size // 2
        self.blocks = nn.ModuleList(SwinLayer(config, dim, num_heads, r, 0 if i % 2 == 0 else shift)
                                    for i, r in enumerate(rates))
        self.downsample = None if last else SwinPatchMerging(dim)


def to_map(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, h * w, C) tokens -> a (B, C, h, w) map."""
    return x.reshape(x.shape[0], grid[0], grid[1], x.shape[2]).permute(0, 3, 1, 2).contiguous()


class SwinEncoder(nn.Module):
    """The stages (``layers.<i>``). :meth:`forward` returns the last tokens and, when asked,
    the tokens and maps after every stage (the embeddings first); ``before_downsampling`` gives
    each stage's map before its patch merging instead (what the backbone reads)."""

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        total = sum(config.depths)
        rates = drop_path_rates(config.drop_path_rate, total)
        self.layers = nn.ModuleList()
        start = 0
        for i, (depth, heads) in enumerate(zip(config.depths, config.num_heads)):
            self.layers.append(SwinStage(config, config.embed_dim * 2 ** i, heads, rates[start:start + depth],
                                         last=i == len(config.depths) - 1))
            start += depth

    def forward(self, x: torch.Tensor, grid: tuple[int, int], keep: bool, always_partition: bool = False,
                before_downsampling: bool = False) -> tuple[torch.Tensor, tuple | None, tuple | None]:
        tokens, maps = ([x], [to_map(x, grid)]) if keep else (None, None)
        for stage in self.layers:
            for block in stage.blocks:
                x = block(x, grid, always_partition)
            before, before_grid = x, grid
            if stage.downsample is not None:
                x = stage.downsample(x, grid)
                grid = ((grid[0] + 1) // 2, (grid[1] + 1) // 2)
            if keep:
                tokens.append(x)
                maps.append(to_map(before, before_grid) if before_downsampling else to_map(x, grid))
        return x, tuple(tokens) if keep else None, tuple(maps) if keep else None


def stage_grids(config: SwinConfig, height: int, width: int) -> list[tuple[int, int]]:
    """The (h, w) token grid each stage runs on for an image of height x width."""
    ph, pw = pair(config.patch_size)
    grid = (-(-height // ph), -(-width // pw))
    grids = [grid]
    for _ in range(len(config.depths) - 1):
        grid = ((grid[0] + 1) // 2, (grid[1] + 1) // 2)
        grids.append(grid)
    return grids


def check_swin_pixels(pixel_values: Any, config: SwinConfig, dtype: torch.dtype, model: str,
                      always_partition: bool) -> torch.Tensor:
    """(B, num_channels, H, W) float pixels; for the bare model and the classifier, large
    enough that no stage's map is smaller than a window. Else a named error."""
    x = check_pixel_values(pixel_values, config, dtype, True, model)
    if always_partition:
        return x
    height, width = x.shape[2:]
    window, stages = config.window_size, len(config.depths)
    grid = stage_grids(config, height, width)[-1]
    if min(grid) < window:
        ph, pw = pair(config.patch_size)
        need = [p * (2 ** (stages - 1) * (window - 1)) + 1 for p in (ph, pw)]
        raise InvalidInputError(
            f"pixel_values of {height}x{width} is too small for {model}: its last stage sees a {grid[0]}x{grid[1]} "
            f"map, smaller than its {window}x{window} windows (window_size; the relative position bias is "
            f"learned for that size, and the reference fails here too). Give images of at least "
            f"{need[0]}x{need[1]} pixels (resize with the model's image processor), or use SwinBackbone, "
            "which pads every map to whole windows")
    return x


# --- models -------------------------------------------------------------------------------------
class SwinPreTrainedModel(PreTrainedModel):
    config_class = SwinConfig
    base_model_prefix = "swin"
    forward_inputs = frozenset({"pixel_values", "interpolate_pos_encoding"})
    # old checkpoints stored the index buffer; it is computed from the window size here
    ignore_unexpected = (r"relative_position_index$",)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, SwinEmbeddings):
            if module.position_embeddings is not None:
                nn.init.zeros_(module.position_embeddings)
        elif isinstance(module, SwinSelfAttention):
            nn.init.zeros_(module.relative_position_bias_table)
        else:
            init_normal_(module, std)

    def get_input_embeddings(self) -> nn.Module:
        return self._trunk().embeddings.patch_embeddings

    def _trunk(self) -> nn.Module:
        """The module holding ``embeddings`` and ``encoder``."""
        return getattr(self, self.base_model_prefix, self)

    def _run(self, pixel_values: Any, interpolate_pos_encoding: bool | None, keep: bool,
             always_partition: bool = False, before_downsampling: bool = False):
        trunk = self._trunk()
        weight = trunk.embeddings.patch_embeddings.projection.weight
        x = check_swin_pixels(pixel_values, self.config, weight.dtype, type(self).__name__.replace("Model", ""),
                              always_partition).to(weight.device)
        x, grid = trunk.embeddings(x, bool(interpolate_pos_encoding))
        return trunk.encoder(x, grid, keep, always_partition, before_downsampling)

    def _keep(self, output_hidden_states: bool | None) -> bool:
        return bool(output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states)


class SwinModel(SwinPreTrainedModel):
    """The encoder: ``last_hidden_state`` (B, tokens, hidden_size) through ``layernorm``,
    ``pooler_output`` (B, hidden_size) its mean over the tokens; with ``output_hidden_states``
    ``hidden_states`` and ``reshaped_hidden_states`` (see the module doc)."""

    def __init__(self, config: SwinConfig) -> None:
        super().__init__(config)
        self.num_features = config.hidden_size
        self.embeddings = SwinEmbeddings(config)
        self.encoder = SwinEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool | None = None,
                output_hidden_states: bool | None = None) -> SwinModelOutput:
        last, tokens, maps = self._run(pixel_values, interpolate_pos_encoding, self._keep(output_hidden_states))
        last = self.layernorm(last)
        return SwinModelOutput(last_hidden_state=last, pooler_output=last.mean(dim=1), hidden_states=tokens,
                               reshaped_hidden_states=maps)


class SwinForImageClassification(SwinPreTrainedModel):
    """Image ``logits`` (B, num_labels) from the pooled output; with ``labels`` the loss the
    config's ``problem_type`` names (inferred from the labels the first time)."""

    def __init__(self, config: SwinConfig) -> None:
        super().__init__(config)
        self.swin = SwinModel(config)
        self.classifier = classifier_linear(config.hidden_size, config.num_labels)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None,
                interpolate_pos_encoding: bool | None = None,
                output_hidden_states: bool | None = None) -> SwinImageClassifierOutput:
        out = self.swin(pixel_values, interpolate_pos_encoding, output_hidden_states)
        logits = self.classifier(out.pooler_output)
        loss = None
        if labels is not None:
            loss = sequence_classification_loss(self.config, logits, labels.to(logits.device))
        return SwinImageClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                         reshaped_hidden_states=out.reshaped_hidden_states)


class SwinBackbone(BackboneMixin, SwinPreTrainedModel):
    """Feature maps for detectors and segmenters (Mask2Former).

    Contract: ``forward(pixel_values)`` with (B, num_channels, H, W) pixels of any size (every
    map is padded to whole windows, the shifts kept) returns a :class:`BackboneOutput` whose
    ``feature_maps`` is a tuple with one (B, C, h, w) map per ``config.out_features`` (default:
    the last stage), in stage order: ``stem`` is the patch embeddings (h = ceil(H / patch)),
    ``stage<i>`` the output of stage i before its patch merging (h halved, rounded up, per
    stage), each through its own LayerNorm (``hidden_states_norms.<name>``, eps 1e-5).
    ``channels`` lists their widths (``num_features``: every stage's, the stem first:
    ``[embed_dim, embed_dim, 2 * embed_dim, ...]``). With ``output_hidden_states`` also
    ``hidden_states``: every stage's map before its norm, the stem first.

    Built from a config (or :func:`pretrained.layers.backbone.load_backbone` on a
    ``backbone_config``), or loaded from a backbone's or a classifier's checkpoint::

        SwinBackbone.from_pretrained(path, out_features=["stage1", "stage2", "stage3", "stage4"])

    Inside a parent model (Mask2Former's ``model.pixel_level_module.encoder``) its keys are
    ``<prefix>.embeddings.*``, ``<prefix>.encoder.*`` and ``<prefix>.hidden_states_norms.<stage>.*``;
    the reference 5.x also writes ``<prefix>.swin.layernorm.*`` (a norm no backbone uses) and old
    checkpoints ``...relative_position_index``: a parent lists :attr:`ignore_unexpected` (these two
    patterns, which match under any prefix) in its own.
    """

    forward_inputs = frozenset({"pixel_values"})
    # the reference 5.x also writes the bare model's unused final norm with a backbone
    ignore_unexpected = SwinPreTrainedModel.ignore_unexpected + (r"(^|\.)swin\.layernorm\.",)

    def __init__(self, config: SwinConfig) -> None:
        super().__init__(config)
        self.num_features = [config.embed_dim] + [config.embed_dim * 2 ** i for i in range(len(config.depths))]
        self.embeddings = SwinEmbeddings(config)
        self.encoder = SwinEncoder(config)
        self.hidden_states_norms = nn.ModuleDict(
            {name: nn.LayerNorm(width) for name, width in zip(self.out_features, self.channels)})

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool | None = None) -> BackboneOutput:
        _, _, maps = self._run(pixel_values, False, True, always_partition=True, before_downsampling=True)
        features = []
        for name, m in zip(self.stage_names, maps):
            if name in self.out_features:
                features.append(self.hidden_states_norms[name](m.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous())
        return BackboneOutput(feature_maps=tuple(features), hidden_states=maps if self._keep(output_hidden_states)
                              else None)


MODEL_CLASSES = {
    "model": SwinModel,
    "image-classification": SwinForImageClassification,
    "backbone": SwinBackbone,
}
