"""The speech encoder that Wav2Vec2 and HuBERT share, written once: raw samples -> frames.

Why one module: the two architectures differ only in names and two switches (HuBERT's optional
feature-projection LayerNorm and batch-normed positional convolution), so the blocks live here and
``models/wav2vec2.py`` / ``models/hubert.py`` name them. Module names equal the checkpoints' keys
(``feature_extractor.conv_layers.0.conv.weight``, ``encoder.pos_conv_embed.conv...``,
``encoder.layers.3.feed_forward.output_dense.bias``).

The path: a stack of strided 1-D convolutions over the waveform (:class:`FeatureEncoder`; the
first layer group-normed in the base "group" shape, every layer layer-normed in the "layer"
shape), a LayerNorm + projection to the model width (:class:`FeatureProjection`), a grouped
convolution over time as the position signal (:class:`PositionalConvEmbedding`, weight-normed),
then transformer layers, post-LayerNorm (base) or pre-LayerNorm ("stable layer norm", large
models) (:class:`SpeechEncoder`).

Example::

    >>> import torch
    >>> enc = FeatureEncoder([8, 8], [10, 3], [5, 2], norm="group", act="gelu", bias=False)
    >>> enc(torch.randn(2, 400)).shape               # (batch, channels, frames)
    torch.Size([2, 8, 39])
    >>> conv_output_lengths(torch.tensor([400, 200]), [10, 3], [5, 2]).tolist()
    [39, 19]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidInputError
from .activations import activation
from .attention import attention, attention_mask_4d, merge_heads, split_heads


# --- lengths and masks ---------------------------------------------------------------------------
def conv_output_lengths(lengths: torch.Tensor | int, kernels: Sequence[int],
                        strides: Sequence[int]) -> torch.Tensor | int:
    """Frames the convolution stack makes of ``lengths`` samples (no padding: floor((L - k) / s)
    + 1 per layer), as the reference computes them for masks and CTC input lengths."""
    for k, s in zip(kernels, strides):
        lengths = torch.div(lengths - k, s, rounding_mode="floor") + 1 \
            if isinstance(lengths, torch.Tensor) else (lengths - k) // s + 1
    return lengths


def frame_mask(attention_mask: torch.Tensor, num_frames: int, kernels: Sequence[int],
               strides: Sequence[int]) -> torch.Tensor:
    """The sample-level mask (B, samples; 1 = real audio, right-padded) -> a boolean frame mask
    (B, frames): the first ``conv_output_lengths(mask.sum(-1))`` frames of each row are real."""
    lengths = conv_output_lengths(attention_mask.sum(-1).long(), kernels, strides)
    if bool((lengths < 1).any()):
        raise InvalidInputError(
            f"attention_mask marks a row with {int(attention_mask.sum(-1).min())} real samples, "
            f"too few for one frame of this model (it needs at least {min_samples(kernels, strides)})")
    return torch.arange(num_frames, device=attention_mask.device)[None, :] < lengths[:, None]


def min_samples(kernels: Sequence[int], strides: Sequence[int]) -> int:
    """The fewest samples that give one frame (the receptive field of the convolution stack)."""
    need = 1
    for k, s in reversed(list(zip(kernels, strides))):
        need = (need - 1) * s + k
    return need


def check_input_values(input_values: torch.Tensor, attention_mask: torch.Tensor | None,
                       dtype: torch.dtype, kernels: Sequence[int], strides: Sequence[int]) -> torch.Tensor:
    """(B, samples) float audio in the model's dtype, or a named error (a 1-D waveform is one row)."""
    if not isinstance(input_values, torch.Tensor):
        raise InvalidInputError(f"input_values must be a torch.Tensor of audio samples, got "
                                f"{type(input_values).__name__}; use the feature extractor with "
                                "return_tensors='pt'")
    if input_values.dim() == 1:
        input_values = input_values.unsqueeze(0)
    if input_values.dim() != 2 or not input_values.is_floating_point():
        raise InvalidInputError(f"input_values must be float samples of shape (batch, samples), got "
                                f"{input_values.dtype} of shape {tuple(input_values.shape)}")
    need = min_samples(kernels, strides)
    if input_values.shape[0] == 0 or input_values.shape[1] < need:
        raise InvalidInputError(f"input_values has shape {tuple(input_values.shape)}; this model needs "
                                f"at least one row of {need} samples (one frame)")
    if attention_mask is not None and tuple(attention_mask.shape) != tuple(input_values.shape):
        raise InvalidInputError(f"attention_mask has shape {tuple(attention_mask.shape)} but "
                                f"input_values has shape {tuple(input_values.shape)}")
    return input_values.to(dtype)


# --- feature encoder --------------------------------------------------------------------------------
class ConvLayer(nn.Module):
    """One strided convolution of the feature encoder -> [norm] -> activation. ``norm``: "group"
    (GroupNorm with one group per channel: a per-channel norm over time), "layer" (LayerNorm over
    channels at each frame) or None."""

    def __init__(self, n_in: int, n_out: int, kernel: int, stride: int, bias: bool,
                 norm: str | None, act: str) -> None:
        super().__init__()
        self.conv = nn.Conv1d(n_in, n_out, kernel_size=kernel, stride=stride, bias=bias)
        self.norm_kind = norm
        if norm == "group":
            self.layer_norm = nn.GroupNorm(n_out, n_out, affine=True)
        elif norm == "layer":
            self.layer_norm = nn.LayerNorm(n_out, elementwise_affine=True)
        self.activation = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm_kind == "group":
            x = self.layer_norm(x)
        elif self.norm_kind == "layer":
            x = self.layer_norm(x.transpose(-2, -1)).transpose(-2, -1)
        return self.activation(x)


class FeatureEncoder(nn.Module):
    """The convolutions over the raw waveform: (B, samples) -> (B, conv_dim[-1], frames).
    ``norm="group"``: only the first layer is normed (wav2vec2-base); ``"layer"``: every layer."""

    def __init__(self, dims: Sequence[int], kernels: Sequence[int], strides: Sequence[int], *,
                 norm: str, act: str, bias: bool) -> None:
        super().__init__()
        layers = []
        for i, (d, k, s) in enumerate(zip(dims, kernels, strides)):
            n = norm if norm == "layer" or i == 0 else None
            layers.append(ConvLayer(dims[i - 1] if i else 1, d, k, s, bias, n, act))
        self.conv_layers = nn.ModuleList(layers)

    def freeze(self) -> None:
        """No gradients for these weights (fine-tuning keeps the pretrained convolutions)."""
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        x = input_values[:, None]
        for layer in self.conv_layers:
            x = layer(x)
        return x


class FeatureProjection(nn.Module):
    """[LayerNorm] -> Linear -> dropout over the conv features (B, frames, conv_dim[-1]).
    Returns ``(projected, normed)``: Wav2Vec2 reports the normed features as ``extract_features``."""

    def __init__(self, n_in: int, hidden: int, eps: float, dropout: float, layer_norm: bool = True) -> None:
        super().__init__()
        if layer_norm:
            self.layer_norm = nn.LayerNorm(n_in, eps=eps)
        self.has_norm = layer_norm
        self.projection = nn.Linear(n_in, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        normed = self.layer_norm(x) if self.has_norm else x
        return self.dropout(self.projection(normed)), normed


# --- positions ----------------------------------------------------------------------------------------
class _Holder(nn.Module):
    """An empty module that only holds parameters (the checkpoints' nesting of names)."""


class WeightNormConv1d(nn.Module):
    """A Conv1d whose weight is ``g * v / ||v||`` (weight normalisation, norm over every axis but
    the kernel axis: ``g`` has shape (1, 1, kernel)), stored as checkpoints hold it.

    Why both names: checkpoints converted before PyTorch's parametrizations carry
    ``conv.weight_g`` / ``conv.weight_v``; the reference 5.x saves
    ``conv.parametrizations.weight.original0`` / ``original1``. Each parameter is registered under
    both names (one tensor), so either loads; the model's save writes the newer pair.
    """

    def __init__(self, channels: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.padding = kernel // 2
        self.groups = groups
        self.parametrizations = _Holder()
        self.parametrizations.weight = _Holder()
        holder = self.parametrizations.weight
        holder.original0 = nn.Parameter(torch.empty(1, 1, kernel))
        holder.original1 = nn.Parameter(torch.empty(channels, channels // groups, kernel))
        self.bias = nn.Parameter(torch.empty(channels))
        self.weight_g = holder.original0   # the legacy names of the same tensors
        self.weight_v = holder.original1

    @property
    def weight(self) -> torch.Tensor:
        holder = self.parametrizations.weight
        g, v = holder.original0, holder.original1
        return v * (g / v.norm(dim=(0, 1), keepdim=True))

    def reset_parameters(self, std: float) -> None:
        holder = self.parametrizations.weight
        with torch.no_grad():
            holder.original1.normal_(0.0, std)
            holder.original0.copy_(holder.original1.norm(dim=(0, 1), keepdim=True))
            self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grouped_conv1d(x, self.weight, self.bias, self.padding, self.groups)


def grouped_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int,
                   groups: int) -> torch.Tensor:
    """``F.conv1d`` with ``groups``; on CPU in bfloat16/float16 computed in float32, then rounded.

    Why: PyTorch 2.13's CPU convolution in bfloat16 returns wrong numbers for some narrow shapes
    (8 input channels per group with a kernel of 16 or more: errors the size of the outputs, which
    the reference's bfloat16 run inherits), while float32 is right for all of them. The positional
    convolution is one layer, so the float32 copy costs little."""
    if x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16):
        y = F.conv1d(x.float(), weight.float(), None if bias is None else bias.float(),
                     padding=padding, groups=groups)
        return y.to(x.dtype)
    return F.conv1d(x, weight, bias, padding=padding, groups=groups)


class PositionalConvEmbedding(nn.Module):
    """Relative position signal: a grouped convolution over time with 'same' padding (one frame
    dropped for an even kernel), then the activation. ``batch_norm`` (HuBERT's
    ``conv_pos_batch_norm``): a BatchNorm1d before a plain Conv1d instead of the weight norm."""

    def __init__(self, hidden: int, kernel: int, groups: int, act: str, batch_norm: bool = False) -> None:
        super().__init__()
        if batch_norm:
            self.batch_norm = nn.BatchNorm1d(hidden)
            self.conv = nn.Conv1d(hidden, hidden, kernel_size=kernel, padding=kernel // 2, groups=groups)
        else:
            self.conv = WeightNormConv1d(hidden, kernel, groups)
        self.has_batch_norm = batch_norm
        self.drop_last = kernel % 2 == 0
        self.activation = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        if self.has_batch_norm:
            x = self.batch_norm(x)
        conv = self.conv
        x = conv(x) if isinstance(conv, WeightNormConv1d) else \
            grouped_conv1d(x, conv.weight, conv.bias, conv.padding[0], conv.groups)
        if self.drop_last:
            x = x[:, :, :-1]
        return self.activation(x).transpose(1, 2)


# --- transformer layers -------------------------------------------------------------------------------
class SpeechAttention(nn.Module):
    """Bidirectional multi-head self-attention (``q_proj``/``k_proj``/``v_proj``/``out_proj``)."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = heads
        self.dropout_p = dropout
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(hidden, hidden)
        self.v_proj = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q = split_heads(self.q_proj(x), self.num_heads)
        k = split_heads(self.k_proj(x), self.num_heads)
        v = split_heads(self.v_proj(x), self.num_heads)
        y = attention(q, k, v, mask, causal=False, dropout=self.dropout_p if self.training else 0.0)
        return self.out_proj(merge_heads(y))


class FeedForward(nn.Module):
    def __init__(self, hidden: int, inner: int, act: str, activation_dropout: float,
                 hidden_dropout: float) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(hidden, inner)
        self.intermediate_act_fn = activation(act)
        self.intermediate_dropout = nn.Dropout(activation_dropout)
        self.output_dense = nn.Linear(inner, hidden)
        self.output_dropout = nn.Dropout(hidden_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.intermediate_dropout(self.intermediate_act_fn(self.intermediate_dense(x)))
        return self.output_dropout(self.output_dense(x))


class SpeechEncoderLayer(nn.Module):
    """One transformer layer. ``pre_norm`` False (base): attention -> add -> LayerNorm -> FFN ->
    add -> LayerNorm. True ("stable layer norm"): LayerNorm before attention and before the FFN,
    residuals around them."""

    def __init__(self, config, pre_norm: bool) -> None:
        super().__init__()
        h = config.hidden_size
        self.pre_norm = pre_norm
        self.attention = SpeechAttention(h, config.num_attention_heads, config.attention_dropout)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.layer_norm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(h, config.intermediate_size, config.hidden_act,
                                        config.activation_dropout, config.hidden_dropout)
        self.final_layer_norm = nn.LayerNorm(h, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.dropout(self.attention(self.layer_norm(x), mask))
            return x + self.feed_forward(self.final_layer_norm(x))
        x = self.layer_norm(x + self.dropout(self.attention(x, mask)))
        return self.final_layer_norm(x + self.feed_forward(x))


class SpeechEncoder(nn.Module):
    """Positional convolution + transformer layers over the projected frames (B, T, H).

    Padded frames are zeroed before the positional convolution and masked as keys in attention.
    ``hidden_states`` as the reference 5.x records them: the first layer's input, then every
    layer's output (for the pre-LayerNorm shape the last entry is before the final LayerNorm,
    which only ``last_hidden_state`` gets). ``layerdrop`` skips whole layers while training (a
    skipped layer repeats its input in ``hidden_states``, so their count stays L + 1)."""

    def __init__(self, config, batch_norm_positions: bool = False) -> None:
        super().__init__()
        self.stable = bool(config.do_stable_layer_norm)
        self.config = config   # layerdrop is read at each call, as the reference does
        self.pos_conv_embed = PositionalConvEmbedding(
            config.hidden_size, config.num_conv_pos_embeddings, config.num_conv_pos_embedding_groups,
            config.feat_extract_activation, batch_norm_positions)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.layers = nn.ModuleList(SpeechEncoderLayer(config, self.stable)
                                    for _ in range(config.num_hidden_layers))

    def forward(self, x: torch.Tensor, frames: torch.Tensor | None, output_hidden_states: bool = False
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        mask = None
        if frames is not None:
            x = x.masked_fill(~frames[:, :, None], 0.0)
            mask = attention_mask_4d(frames, causal=False, q_len=x.shape[1])
        x = x + self.pos_conv_embed(x)
        if not self.stable:
            x = self.layer_norm(x)
        x = self.dropout(x)
        states = [x] if output_hidden_states else None
        for layer in self.layers:
            drop = self.config.layerdrop
            if not (self.training and drop > 0 and float(torch.rand([])) < drop):
                x = layer(x, mask)
            if states is not None:
                states.append(x)
        if self.stable:
            x = self.layer_norm(x)
        return x, tuple(states) if states is not None else None


# --- training-time masking (SpecAugment) -----------------------------------------------------------
def span_mask(batch: int, length: int, prob: float, span: int, min_spans: int,
              lengths: Sequence[int] | None, device: torch.device) -> torch.Tensor:
    """Random spans to mask, (batch, length) bool: about ``prob * L / span`` spans of ``span``
    steps per row (at least ``min_spans``), starts drawn without replacement within each row's own
    length, overlaps allowed, so ``prob`` is an upper bound. The count rule is the reference's;
    the random numbers come from torch (deterministic under ``torch.manual_seed``), not numpy's,
    so the spans differ from the reference's draw for draw."""
    if span < 1 or span > length:
        raise InvalidInputError(f"mask length {span} must be between 1 and the {length} steps masked")
    eps = float(torch.rand([]))

    def count(n: int) -> int:
        k = max(int(prob * n / span + eps), min_spans)
        k = min(k, length // span)
        return max(min(k, n - (span - 1)), 0)

    out = torch.zeros(batch, length, dtype=torch.bool)
    for row, n in enumerate(lengths if lengths is not None else [length] * batch):
        k = count(int(n))
        if k == 0:
            continue
        starts = torch.randperm(int(n) - span + 1)[:k]
        idx = (starts[:, None] + torch.arange(span)[None, :]).clamp(max=length - 1).flatten()
        out[row, idx] = True
    return out.to(device)


def ctc_loss(logits: torch.Tensor, labels: torch.Tensor, logit_lengths: torch.Tensor, blank: int,
             reduction: str, zero_infinity: bool) -> torch.Tensor:
    """CTC over per-frame ``logits`` (B, T, V) as the reference 5.x computes it: label positions
    that are -100 or the blank (pad) id are dropped wherever they sit, log-softmax in float32."""
    labels = labels.to(logits.device)
    keep = (labels != -100) & (labels != blank)
    log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)
    return F.ctc_loss(log_probs, labels.masked_select(keep), logit_lengths, keep.sum(-1),
                      blank=blank, reduction=reduction, zero_infinity=zero_infinity)


def masked_mean(x: torch.Tensor, frames: torch.Tensor | None) -> torch.Tensor:
    """Mean over real frames (B, T, D) -> (B, D): the classification head's pooling."""
    if frames is None:
        return x.mean(dim=1)
    x = x.masked_fill(~frames[:, :, None], 0.0)
    return x.sum(dim=1) / frames.sum(dim=1, keepdim=True).to(x.dtype)


def init_speech_module(module: nn.Module, std: float) -> bool:
    """The reference's initialisation of the speech blocks; False for modules it does not cover
    (the caller's default then applies)."""
    if isinstance(module, WeightNormConv1d):
        w = module.parametrizations.weight.original1
        module.reset_parameters(2 * math.sqrt(1 / (w.shape[-1] * w.shape[0])))
    elif isinstance(module, FeatureProjection):
        k = math.sqrt(1 / module.projection.in_features)
        nn.init.uniform_(module.projection.weight, a=-k, b=k)
        nn.init.uniform_(module.projection.bias, a=-k, b=k)
    elif isinstance(module, nn.Conv1d):
        nn.init.kaiming_normal_(module.weight)
        if module.bias is not None:
            k = math.sqrt(module.groups / (module.in_channels * module.kernel_size[0]))
            nn.init.uniform_(module.bias, a=-k, b=k)
    elif isinstance(module, (nn.GroupNorm, nn.LayerNorm)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm1d):
        module.reset_parameters()
    else:
        return False
    return True
