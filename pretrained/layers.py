"""Shared building blocks: activations, attention masks, attention, GPT-2's Conv1D, head losses.

Model files import from here rather than re-implementing; a block lives here once two models
share it.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError, InvalidInputError


# --- activations ------------------------------------------------------------------------------
def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


def _gelu_fast(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,  # exact (erf)
    "gelu_new": _gelu_tanh,  # GPT-2's tanh approximation
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_fast": _gelu_fast,
    "quick_gelu": _quick_gelu,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
}


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation function a config names (``hidden_act``, ``activation_function``)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ConfigError(
            f"activation {name!r} is not supported; use one of {sorted(ACTIVATIONS)}"
        ) from None


# --- attention --------------------------------------------------------------------------------
def check_attention_mask(attention_mask: torch.Tensor | None, input_shape: tuple[int, int]) -> None:
    if attention_mask is not None and tuple(attention_mask.shape) != tuple(input_shape):
        raise InvalidInputError(
            f"attention_mask has shape {tuple(attention_mask.shape)} but the input has shape "
            f"{tuple(input_shape)}; pass the mask the tokenizer returned with these ids"
        )


def attention_mask_4d(
    attention_mask: torch.Tensor | None,
    *,
    causal: bool,
    q_len: int,
    past_len: int = 0,
) -> torch.Tensor | None:
    """Boolean mask of shape (B, 1, q_len, k_len), True where a query may attend, or None
    when nothing is masked (SDPA then takes its faster unmasked or ``is_causal`` path).

    A query row that may attend to nothing (a left-padding position under a causal mask)
    comes out of SDPA as zeros, as in the reference, never NaN.
    """
    if attention_mask is None or bool(attention_mask.all()):
        if not causal or q_len == 1:
            return None
        attention_mask = None
    k_len = past_len + q_len
    keep = None
    if attention_mask is not None:
        keep = attention_mask[:, None, None, :].bool()  # (B, 1, 1, k)
    if causal:
        device = attention_mask.device if attention_mask is not None else None
        q_pos = torch.arange(past_len, k_len, device=device).view(-1, 1)
        k_pos = torch.arange(k_len, device=device).view(1, -1)
        causal_keep = (k_pos <= q_pos)[None, None]  # (1, 1, q, k)
        keep = causal_keep if keep is None else keep & causal_keep
    return keep


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    *,
    causal: bool,
    dropout: float = 0.0,
    scale: float | None = None,
) -> torch.Tensor:
    """Scaled dot-product attention over (B, heads, T, head_dim) tensors.

    With no mask and a causal model, SDPA's own ``is_causal`` path is used (fastest).
    """
    is_causal = causal and mask is None and q.shape[-2] > 1
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=is_causal, scale=scale
    )


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, T, n_heads * hd) -> (B, n_heads, T, hd)"""
    b, t, _ = x.shape
    return x.view(b, t, n_heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, n_heads, T, hd) -> (B, T, n_heads * hd)"""
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


class Conv1D(nn.Module):
    """GPT-2's linear layer with the weight stored as (in, out); kept so checkpoint names and
    shapes load and save unchanged. Uses a packed copy of its weight when
    :func:`set_weight_packing` turned packing on (as :class:`PackedLinear`)."""

    packing: bool = False

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packing and packed_linear_ok(x, self.weight):
            return packed_linear(x, _packed_cache(self), (self.weight.t(),), (self.bias,))
        return F.linear(x, self.weight.t(), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[0]}, out_features={self.weight.shape[1]}"


# --- head losses ------------------------------------------------------------------------------
def sequence_classification_loss(config, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Loss for a sequence-classification head, chosen by ``config.problem_type`` (inferred
    from the labels the first time, as the reference does)."""
    num_labels = logits.shape[-1]
    if config.problem_type is None:
        if num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    if config.problem_type == "regression":
        if num_labels == 1:
            return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
        return F.mse_loss(logits, labels.to(logits.dtype))
    if config.problem_type == "single_label_classification":
        return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1))
    if config.problem_type == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    raise ConfigError(
        f"problem_type {config.problem_type!r} is not one of 'regression', "
        "'single_label_classification', 'multi_label_classification'"
    )


def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over every position; label -100 is ignored."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1))


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token loss: position t predicts label t+1; label -100 is ignored."""
    return token_loss(logits[:, :-1, :], labels[:, 1:])


def span_loss(start_logits, end_logits, start_positions, end_positions) -> torch.Tensor:
    """Question-answering loss; positions outside the sequence are clamped and ignored."""
    n = start_logits.shape[1]
    start = start_positions.view(-1).clamp(0, n)
    end = end_positions.view(-1).clamp(0, n)
    ls = F.cross_entropy(start_logits, start, ignore_index=n)
    le = F.cross_entropy(end_logits, end, ignore_index=n)
    return (ls + le) / 2


def init_normal_(module: nn.Module, std: float) -> None:
    """The reference's default initialisation (used for weights a checkpoint does not hold)."""
    if isinstance(module, (nn.Linear, Conv1D)):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=std)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)



# --- decoder blocks: RMSNorm, rotary embeddings, causal masks, grouped-query attention --------
class RMSNorm(nn.Module):
    """Root-mean-square norm (Llama family): computed in float32, cast back, then scaled."""

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps
        # float32 0-dim CPU tensors (usable with tensors on any device): with them the ops
        # below skip the conversion a Python number costs each call
        self._n = torch.tensor(float(hidden_size), device="cpu")
        self._eps = torch.tensor(eps, device="cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the reference's x * rsqrt(mean(x^2) + eps), bit for bit (mean is sum / n), in as few
        # kernel calls as possible: each costs microseconds in a decode step, where caches are
        # cold (F.rms_norm gives the same bits in twice as many)
        h = x if x.dtype == torch.float32 else x.float()
        h = h * h.pow(2).sum(-1, keepdim=True).div_(self._n).add_(self._eps).rsqrt_()
        return self.weight * (h if x.dtype == torch.float32 else h.to(x.dtype))

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.eps}"


ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3")
_ROPE_REQUIRED = {"linear": ("factor",), "dynamic": ("factor",), "yarn": ("factor",),
                  "llama3": ("factor", "low_freq_factor", "high_freq_factor")}


def standardize_rope_parameters(
    rope_parameters: dict | None,
    *,
    rope_scaling: dict | None = None,
    rope_theta: float | None = None,
    partial_rotary_factor: float | None = None,
    max_position_embeddings: int,
    default_theta: float = 10000.0,
    owner: str = "config",
) -> dict:
    """One RoPE dict from a config.json of any age.

    Newer files hold ``rope_parameters`` ({"rope_type", "rope_theta", "factor", ...}); older ones
    hold ``rope_theta`` and ``rope_scaling`` ({"type" or "rope_type", "factor", ...}). As in the
    reference, ``rope_scaling`` wins over ``rope_parameters`` and loose keys fill what is missing.
    Raises :class:`ConfigError` for an unsupported type or a missing required key.
    """
    source = rope_scaling if rope_scaling else rope_parameters
    if source is not None and not isinstance(source, dict):
        raise ConfigError(f"{owner}.rope_parameters must be a JSON object, got {source!r}")
    params = dict(source or {})
    params.setdefault("rope_theta", default_theta if rope_theta is None else rope_theta)
    if partial_rotary_factor is not None:
        params.setdefault("partial_rotary_factor", partial_rotary_factor)
    rope_type = params.get("rope_type", params.get("type", "default"))
    params["rope_type"] = rope_type
    if rope_type not in ROPE_TYPES:
        raise ConfigError(f"{owner}: rope type {rope_type!r} is not supported; use one of "
                          f"{', '.join(ROPE_TYPES)}")
    if rope_type in ("llama3", "yarn"):
        params.setdefault("original_max_position_embeddings", max_position_embeddings)
    missing = [k for k in _ROPE_REQUIRED.get(rope_type, ()) if params.get(k) is None]
    if missing:
        raise ConfigError(f"{owner}: rope type {rope_type!r} needs {', '.join(missing)} in "
                          f"rope_parameters (or rope_scaling); got {params}")
    if not isinstance(params["rope_theta"], (int, float)) or params["rope_theta"] <= 0:
        raise ConfigError(f"{owner}: rope_theta must be a positive number, got {params['rope_theta']!r}")
    return params


def rope_frequencies(
    params: dict, head_dim: int, max_position_embeddings: int, seq_len: int | None = None
) -> tuple[torch.Tensor, float]:
    """Inverse frequencies (float32, CPU) and the cos/sin scale for a standardized RoPE dict.

    ``seq_len`` only matters for "dynamic" (NTK) scaling, which stretches the base once the
    sequence is longer than ``max_position_embeddings``.
    """
    with torch.device("cpu"):  # a model built on the meta device still gets real frequencies
        return _rope_frequencies(params, head_dim, max_position_embeddings, seq_len)


def _rope_frequencies(params, head_dim, max_pos, seq_len):
    base = float(params["rope_theta"])
    dim = int(head_dim * params.get("partial_rotary_factor", 1.0))
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    kind = params["rope_type"]
    if kind in ("default", "linear"):
        inv_freq = 1.0 / (base ** exponents)
        if kind == "linear":  # positions / factor == frequencies / factor
            inv_freq /= params["factor"]
        return inv_freq, 1.0
    if kind == "dynamic":
        factor = params["factor"]
        # float32 tensor arithmetic, as the reference does when it rescales during a forward
        n = torch.tensor(max(seq_len or max_pos, max_pos), dtype=torch.int64)
        scaled = base * ((factor * n / max_pos) - (factor - 1)) ** (dim / (dim - 2))
        return 1.0 / (scaled ** exponents), 1.0
    if kind == "llama3":
        inv_freq = 1.0 / (base ** exponents)
        factor, low, high = params["factor"], params["low_freq_factor"], params["high_freq_factor"]
        old_len = params["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv_freq
        # long wavelengths are divided by factor, short ones kept, the band between interpolated
        scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < old_len / high) * ~(wavelen > old_len / low)
        return torch.where(medium, smoothed, scaled), 1.0
    return _yarn_frequencies(params, base, dim, max_pos)


def _yarn_frequencies(params, base, dim, max_pos):
    factor = params["factor"]
    old_len = params["original_max_position_embeddings"]

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention_factor = params.get("attention_factor")
    if attention_factor is None:
        m, m_all = params.get("mscale"), params.get("mscale_all_dim")
        attention_factor = (float(mscale(factor, m) / mscale(factor, m_all)) if m and m_all
                            else mscale(factor))
    beta_fast = params.get("beta_fast") or 32
    beta_slow = params.get("beta_slow") or 1

    def correction_dim(rotations: float) -> float:  # the dimension that turns `rotations` times
        return (dim * math.log(old_len / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if params.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    pos_freqs = base ** (torch.arange(0, dim, 2).float() / dim)
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    extrapolation = 1 - ramp
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation) + (1.0 / pos_freqs) * extrapolation
    return inv_freq, attention_factor


class RotaryEmbedding(nn.Module):
    """cos/sin tables for given positions; holds no state_dict entries.

    The frequencies are plain attributes computed on the CPU at construction (so building the
    model on the meta device is harmless) and copied to the positions' device on first use.
    "dynamic" scaling updates them as the reference does: it grows them when a sequence
    exceeds the longest seen so far beyond ``max_position_embeddings``, and resets them when a
    short sequence follows.
    """

    def __init__(self, params: dict, head_dim: int, max_position_embeddings: int) -> None:
        super().__init__()
        self.params = params
        self.head_dim = head_dim
        self.max_position_embeddings = max_position_embeddings
        self.inv_freq, self.attention_scaling = rope_frequencies(params, head_dim, max_position_embeddings)
        self._original = self.inv_freq
        self._longest = max_position_embeddings
        self.rotary_dim = 2 * self.inv_freq.numel()

    def _dynamic_update(self, position_ids: torch.Tensor) -> None:
        seq_len = int(position_ids.max()) + 1
        limit = self.max_position_embeddings
        if seq_len > self._longest:
            self.inv_freq, _ = rope_frequencies(self.params, self.head_dim, limit, seq_len)
            self._longest = seq_len
        if seq_len < limit < self._longest:
            self.inv_freq, self._longest = self._original, limit

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """position_ids (B, T) -> the tables :func:`apply_rotary` takes, (B, 1, T, rotary_dim)
        in ``dtype``: cos, and sin with its first half negated."""
        if self.params["rope_type"] == "dynamic":
            self._dynamic_update(position_ids)
        if self.inv_freq.device != position_ids.device:
            self.inv_freq = self.inv_freq.to(position_ids.device)
        freqs = position_ids[:, None, :, None].float() * self.inv_freq  # (B, 1, T, rotary_dim / 2)
        cos, sin = freqs.cos(), freqs.sin()
        if self.attention_scaling != 1.0:
            cos, sin = cos * self.attention_scaling, sin * self.attention_scaling
        return torch.cat((cos, cos), -1).to(dtype), torch.cat((-sin, sin), -1).to(dtype)

    def extra_repr(self) -> str:
        return f"type={self.params['rope_type']}, rotary_dim={self.rotary_dim}"


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, heads, T, head_dim) by the tables of :class:`RotaryEmbedding` (B, 1, T,
    rotary_dim); dimensions past rotary_dim (partial rotary, GPT-NeoX) pass through.

    Pairs (i, i + half) turn by their angle: x * cos + (x2, x1) * (-sin, sin), which is the
    reference's x * cos + (-x2, x1) * sin exactly, in fewer operations.
    """
    rot = cos.shape[-1]
    if rot == x.shape[-1]:
        return x * cos + x.roll(rot // 2, -1) * sin
    x_rot = x[..., :rot]
    return torch.cat((x_rot * cos + x_rot.roll(rot // 2, -1) * sin, x[..., rot:]), dim=-1)


def causal_mask(
    attention_mask: torch.Tensor | None,
    *,
    q_len: int,
    past_len: int | torch.Tensor,
    kv_len: int,
    sliding_window: int | None = None,
    segments: torch.Tensor | None = None,
    device: torch.device | None = None,
) -> torch.Tensor | None:
    """Boolean mask (B or 1, 1, q_len, kv_len), True where a query may attend, for a decoder
    whose queries sit at positions past_len .. past_len + q_len - 1 of the key/value cache.

    ``attention_mask`` (B, >= past_len + q_len; 1 = real token) may be shorter than
    ``kv_len`` (a static cache): the rest counts as masked. ``sliding_window`` w keeps the w
    most recent keys (itself included). ``segments`` (B, T) from :func:`packed_segments` keeps
    packed sequences apart. Returns None when SDPA needs no mask: a full prefill
    (its ``is_causal`` path) or a one-token step that may see every key. A tensor
    ``past_len`` (a static cache's position) always gives a mask and reads no values, so a
    compiled step does not depend on them.
    """
    static = isinstance(past_len, torch.Tensor)
    padded = attention_mask is not None and (static or not bool(attention_mask.all()))
    windowed = sliding_window is not None and kv_len > sliding_window
    if not (static or padded or windowed or segments is not None):
        if (q_len == 1 and kv_len == past_len + 1) or (past_len == 0 and kv_len == q_len):
            return None
    if attention_mask is not None:
        device = attention_mask.device
    elif static:
        device = past_len.device
    q_pos = (torch.arange(q_len, device=device) + past_len).view(-1, 1)
    k_pos = torch.arange(kv_len, device=device).view(1, -1)
    keep = k_pos <= q_pos
    if windowed:
        keep = keep & (k_pos > q_pos - sliding_window)
    keep = keep[None, None]  # (1, 1, q, k)
    if padded:
        m = attention_mask.bool()
        if m.shape[1] < kv_len:
            m = F.pad(m, (0, kv_len - m.shape[1]))
        keep = keep & m[:, None, None, :]
    if segments is not None:
        keep = keep & (segments[:, None, :, None] == segments[:, None, None, :])
    return keep


def packed_segments(position_ids: torch.Tensor, batch_size: int) -> torch.Tensor | None:
    """Several sequences packed in one row (positions restart: 0 1 2 0 1 ...) -> the index of
    the sequence each token belongs to, (B, T); None when every row is one sequence. As the
    reference, decoders apply this only without attention_mask and cache."""
    pos = position_ids.expand(batch_size, -1)
    starts = torch.diff(pos, prepend=pos[:, :1] - 1, dim=-1) != 1
    segments = starts.cumsum(-1)
    return None if not bool(segments[:, -1].any()) else segments


def grouped_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    *,
    scale: float | None = None,
    dropout: float = 0.0,
) -> torch.Tensor:
    """Causal attention, q (B, H, T, D) over k/v (B, H_kv, S, D) with H_kv dividing H;
    returns (B, T, H * D), heads merged.

    ``mask`` None means plain causal (T == S) or, for one query, every key. For one query
    the H / H_kv query heads of each group are laid out as that group's queries, so keys and
    values are never repeated (the fastest decode step on CPU); otherwise SDPA's
    ``enable_gqa``.
    """
    b, h, t, d = q.shape
    h_kv = k.shape[1]
    if t == 1 and h != h_kv and dropout == 0.0:
        y = F.scaled_dot_product_attention(q.reshape(b, h_kv, h // h_kv, d), k, v,
                                           attn_mask=mask, scale=scale)
        return y.reshape(b, 1, h * d)  # one query: (B, H, 1, D) and (B, 1, H, D) agree
    y = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=mask is None and t > 1,
        scale=scale, enable_gqa=h != h_kv,
    )
    return y.transpose(1, 2).reshape(b, t, h * d)


# --- decoder forward helpers (gpt2, llama family, gpt_neox) --------------------------------
def prepare_decoder_inputs(model: nn.Module, input_ids, inputs_embeds, attention_mask,
                           position_ids, past_key_values, use_cache):
    """Checks and defaults every decoder forward needs: the cache to use (a new DynamicCache
    when ``use_cache``, which defaults to ``config.use_cache`` outside training), the past
    length, default position ids (past .. past + T - 1) and the attention mask's shape.
    Returns (cache, past, batch, new tokens, input_ids, position_ids); ``past`` is a 0-d
    tensor for a StaticCache (see :func:`causal_mask`). Under ``torch.compile`` the checks
    that read tensor values are skipped.
    """
    from .generation.cache import Cache, DynamicCache

    eager = not torch.compiler.is_compiling()
    if (input_ids is None) == (inputs_embeds is None):
        raise InvalidInputError("pass exactly one of input_ids and inputs_embeds")
    if input_ids is not None:
        if eager:
            input_ids = model.check_input_ids(input_ids)
        b, t = input_ids.shape
        device = input_ids.device
    else:
        b, t = inputs_embeds.shape[:2]
        device = inputs_embeds.device
    if use_cache is None:
        use_cache = model.config.use_cache and not model.training
    if past_key_values is not None and not isinstance(past_key_values, Cache):
        raise InvalidInputError(
            f"past_key_values must be a pretrained.generation.cache Cache (DynamicCache or "
            f"StaticCache), got {type(past_key_values).__name__}"
        )
    cache = past_key_values if past_key_values is not None else (DynamicCache() if use_cache else None)
    past = cache.position() if cache is not None else 0
    if attention_mask is not None and eager:
        lo = past + t if isinstance(past, int) else int(past) + t
        hi = cache.kv_length(t) if cache is not None else t
        if attention_mask.dim() != 2 or attention_mask.shape[0] != b or not (
                lo <= attention_mask.shape[1] <= hi):
            raise InvalidInputError(
                f"attention_mask has shape {tuple(attention_mask.shape)}; expected ({b}, {lo}) "
                f"= (batch, cached tokens {lo - t} + new tokens {t}), 1 for real tokens, 0 for "
                "padding"
            )
    if position_ids is None:
        position_ids = (torch.arange(t, device=device) + past).unsqueeze(0)
    elif position_ids.shape[-1] != t:
        raise InvalidInputError(f"position_ids has shape {tuple(position_ids.shape)} but the "
                                f"input has {t} tokens")
    return cache, past, b, t, input_ids, position_ids


def lm_logits(head: nn.Module, hidden: torch.Tensor, logits_to_keep: int) -> torch.Tensor:
    """Vocabulary projection of the last ``logits_to_keep`` positions (0: all)."""
    if logits_to_keep:
        hidden = hidden[:, -logits_to_keep:]
    return head(hidden)


def last_token_logits(config, logits: torch.Tensor,
                      input_ids: torch.Tensor | None) -> torch.Tensor:
    """Sequence-classification pooling: the rightmost non-padding token of each row."""
    b, t = logits.shape[:2]
    pad = config.pad_token_id
    if pad is None and b != 1:
        raise InvalidInputError(
            f"{type(config).__name__}.pad_token_id is needed to find the last token of each "
            "sequence in a batch; set it (e.g. to the eos token id)"
        )
    if pad is None or input_ids is None:
        last = torch.full((b,), t - 1, device=logits.device)
    else:
        last = ((input_ids != pad).int() * torch.arange(t, device=logits.device)).argmax(-1)
    return logits[torch.arange(b, device=logits.device), last]


__all__ = [
    "ACTIVATIONS",
    "activation",
    "attention",
    "attention_mask_4d",
    "check_attention_mask",
    "split_heads",
    "merge_heads",
    "Conv1D",
    "sequence_classification_loss",
    "token_loss",
    "causal_lm_loss",
    "span_loss",
    "init_normal_",
    "RMSNorm",
    "ROPE_TYPES",
    "standardize_rope_parameters",
    "rope_frequencies",
    "RotaryEmbedding",
    "apply_rotary",
    "causal_mask",
    "packed_segments",
    "grouped_attention",
    "prepare_decoder_inputs",
    "lm_logits",
    "last_token_logits",
]


# --- encoder blocks shared by DistilBERT, RoBERTa, XLM-R, ELECTRA, DeBERTa-v2 ---------------------
def check_max_length(length: int, limit: int) -> None:
    """Refuse inputs longer than the position table instead of failing deep in an embedding."""
    if length > limit:
        raise InvalidInputError(
            f"input has {length} tokens but this model takes at most {limit}; tokenize with "
            f"truncation=True, max_length={limit}"
        )


def run_layers(
    layers: nn.ModuleList,
    x: torch.Tensor,
    mask: torch.Tensor | None,
    output_hidden_states: bool,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
    """``x = layer(x, mask)`` for each layer; also the input and every layer's output when
    ``output_hidden_states`` (the reference's ``hidden_states``: embeddings first)."""
    states = [x] if output_hidden_states else None
    for layer in layers:
        x = layer(x, mask)
        if states is not None:
            states.append(x)
    return x, tuple(states) if states is not None else None


class ClassificationHead(nn.Module):
    """First token -> dropout -> dense -> activation -> dropout -> out_proj: the sentence head of
    RoBERTa/XLM-R (tanh) and ELECTRA (gelu). Names are the checkpoints' (``classifier.dense``,
    ``classifier.out_proj``)."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float, act: str) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, num_labels)
        self.act = activation(act)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = self.dropout(hidden[:, 0])
        x = self.dropout(self.act(self.dense(x)))
        return self.out_proj(x)


def check_token_type_ids(token_type_ids: torch.Tensor | None, type_vocab_size: int,
                         input_shape: tuple[int, int]) -> None:
    """Segment ids of the input's shape and within the model's ``type_vocab_size``."""
    if token_type_ids is None:
        return
    if tuple(token_type_ids.shape) != tuple(input_shape):
        raise InvalidInputError(
            f"token_type_ids has shape {tuple(token_type_ids.shape)} but the input has shape "
            f"{tuple(input_shape)}; pass the token_type_ids the tokenizer returned with these ids"
        )
    lo, hi = int(token_type_ids.min()), int(token_type_ids.max())
    if lo < 0 or hi >= type_vocab_size:
        raise InvalidInputError(
            f"token_type_ids holds segment id {lo if lo < 0 else hi}, but this model has "
            f"{type_vocab_size} segment type(s) (type_vocab_size); pass token_type_ids=None"
        )


__all__ += ["check_max_length", "check_token_type_ids", "run_layers", "ClassificationHead"]


# --- CPU inference: linear weights pre-packed for oneDNN -----------------------------------------
# A plain CPU linear re-lays its weight out for the matmul kernel on every call; at small batches
# that costs as much as the multiply. With packing on (set_weight_packing, which pipelines do), a
# layer keeps a copy of its weight in oneDNN's blocked layout and multiplies with it while autograd
# is off. Cost: one extra copy of the packed weights. Where the plain path is as fast it is kept:
# weights under PACKED_MIN_WEIGHT elements (the call costs more than the layout saves), and in
# float32 a single row (MKL's matrix-vector kernel) or more than PACKED_FP32_MAX_ROWS rows.
PACKED_FP32_MAX_ROWS = 512
PACKED_MIN_WEIGHT = 1 << 17
_PACKABLE = (torch.float32, torch.bfloat16)
_packing_ok: bool | None = None


def _packing_available() -> bool:
    global _packing_ok
    if _packing_ok is None:
        try:
            w = torch.ops.mkldnn._reorder_linear_weight(torch.ones(2, 2), 1)
            y = torch.ops.mkldnn._linear_pointwise(torch.ones(1, 2), w, None, "none", [], "")
            _packing_ok = bool(torch.backends.mkldnn.is_available()) and float(y.sum()) == 4.0
        except (AttributeError, RuntimeError, NotImplementedError):
            _packing_ok = False
    return _packing_ok


class PackedWeights:
    """One packed weight (several weights stacked along the output axis, e.g. fused q/k/v)
    and its bias. Rebuilt when a source tensor is written in place (its version counter moves),
    replaced, moved or cast; writes through ``.data`` bypass the version counter and are not seen
    (turn packing off and on again after such writes). Never pickled."""

    __slots__ = ("key", "refs", "weight", "bias")

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.refs: list = []
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None

    def get(self, weights: tuple[torch.Tensor, ...],
            biases: tuple[torch.Tensor | None, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
        sources = [t for t in (*weights, *biases) if t is not None]
        key = tuple((t.data_ptr(), t._version, t.dtype) for t in sources)
        if key != self.key or any(r.expired() for r in self.refs):
            from torch.multiprocessing.reductions import StorageWeakRef

            with torch.no_grad():
                w = weights[0] if len(weights) == 1 else torch.cat(weights)
                self.weight = torch.ops.mkldnn._reorder_linear_weight(w.detach().contiguous(), None)
                if all(b is None for b in biases):
                    self.bias = None
                else:  # a missing bias among several adds zeros
                    parts = [torch.zeros(len(wt), dtype=wt.dtype, device=wt.device) if b is None
                             else b for wt, b in zip(weights, biases)]
                    self.bias = torch.cat(parts).detach().contiguous()
            # weak references keep a freed storage's address from being reused under our key
            self.refs = [StorageWeakRef(t.untyped_storage()) for t in sources]
            self.key = key
        return self.weight, self.bias

    def __reduce__(self) -> tuple:  # copies and pickles start empty
        return PackedWeights, ()


def packed_linear_ok(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a linear of ``x`` by ``weight`` may use packed weights right now: autograd off,
    CPU, a weight of at least PACKED_MIN_WEIGHT elements, bfloat16 or float32 (2 to
    PACKED_FP32_MAX_ROWS rows), not being compiled."""
    if torch.is_grad_enabled() or x.device.type != "cpu" or x.dtype != weight.dtype \
            or x.dtype not in _PACKABLE or weight.numel() < PACKED_MIN_WEIGHT \
            or torch.compiler.is_compiling():
        return False
    if x.dtype == torch.float32 and not x.shape[-1] < x.numel() <= PACKED_FP32_MAX_ROWS * x.shape[-1]:
        return False
    return _packing_available()


def packed_linear(x: torch.Tensor, cache: PackedWeights, weights: tuple[torch.Tensor, ...],
                  biases: tuple[torch.Tensor | None, ...], gelu: bool = False) -> torch.Tensor:
    """``x @ cat(weights).T + cat(biases)`` with the cached packed weight; ``gelu``: followed by
    the exact (erf) GELU inside the same kernel (bit-identical to ``F.gelu`` after it in float32;
    in bfloat16 it rounds once instead of twice, within an ulp of the unfused result)."""
    w, b = cache.get(weights, biases)
    if gelu:
        return _mkldnn_ops()[0](x, w, b, "gelu", [], "none")
    return _mkldnn_ops()[0](x, w, b, "none", [], "")


_OPS: tuple | None = None


def _mkldnn_ops() -> tuple:
    """The packed-linear kernels as resolved overloads (a decode step calls them hundreds of
    times; resolving ``torch.ops.mkldnn._linear_pointwise`` each time costs microseconds)."""
    global _OPS
    if _OPS is None:
        op = torch.ops.mkldnn._linear_pointwise
        _OPS = (op.default, op.binary)
    return _OPS


class PackedLinear(nn.Linear):
    """``nn.Linear`` (same parameters, same state_dict keys) that uses a packed copy of its weight
    when :func:`set_weight_packing` turned packing on and :func:`packed_linear_ok` allows."""

    packing: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packing and packed_linear_ok(x, self.weight):
            return packed_linear(x, self.packed_cache(), (self.weight,), (self.bias,))
        return F.linear(x, self.weight, self.bias)

    def forward_gelu(self, x: torch.Tensor) -> torch.Tensor:
        """``F.gelu(self(x))`` (exact GELU). Without autograd: fused into the packed matmul when
        packing applies, else in float32 applied in place (no second large buffer to fault in;
        bit-identical)."""
        if self.packing and packed_linear_ok(x, self.weight):
            return packed_linear(x, self.packed_cache(), (self.weight,), (self.bias,), gelu=True)
        if x.dtype == torch.float32 and not torch.is_grad_enabled():
            return torch.ops.aten.gelu_(F.linear(x, self.weight, self.bias))
        return F.gelu(self(x))

    def packed_cache(self) -> PackedWeights:
        cache = self.__dict__.get("_packed")
        if cache is None:
            cache = self.__dict__["_packed"] = PackedWeights()
        return cache


def _packed_cache(module: nn.Module, key: str = "_packed") -> PackedWeights:
    cache = module.__dict__.get(key)
    if cache is None:
        cache = module.__dict__[key] = PackedWeights()
    return cache


def _packed_weight(linear: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The (out, in) weight of a PackedLinear or Conv1D that may run packed on ``x`` now; None
    for any other module (LoRA, quantized layers) or when packing does not apply."""
    kind = type(linear)
    if kind is not PackedLinear and kind is not Conv1D or not linear.packing:
        return None
    w = linear.weight if kind is PackedLinear else linear.weight.t()
    return w if packed_linear_ok(x, w) else None


_POST_OPS = {"silu": ("swish", ""), "gelu": ("gelu", "none"), "gelu_tanh": ("gelu", "tanh")}


def linear_then(linear: nn.Module, x: torch.Tensor, op: str,
                other: torch.Tensor | None = None) -> torch.Tensor:
    """``linear(x)`` then ``op``: "silu", "gelu" (exact), "gelu_tanh", "add" (``+ other``) or
    "mul" (``* other``, ``other`` of the output's shape and dtype): activations, SwiGLU and
    residual sums of decoders. For a :class:`PackedLinear` or :class:`Conv1D` with packing on,
    the op runs inside the matmul kernel (float32: the same numbers up to an ulp; bfloat16: one
    rounding instead of two); without autograd the plain path applies it in place."""
    w = _packed_weight(linear, x)
    if w is not None:
        pw, pb = _packed_cache(linear).get((w,), (linear.bias,))
        if op in _POST_OPS:
            attr, algorithm = _POST_OPS[op]
            return _mkldnn_ops()[0](x, pw, pb, attr, [], algorithm)
        return _mkldnn_ops()[1](x, other.contiguous(), pw, pb, op)
    y = linear(x)
    inplace = not torch.is_grad_enabled()
    if op == "silu":
        return F.silu(y, inplace=inplace)
    if op in ("gelu", "gelu_tanh"):
        return F.gelu(y, approximate="tanh" if op == "gelu_tanh" else "none")
    if op == "add":
        return y.add_(other) if inplace else y + other
    return y.mul_(other) if inplace else y * other


def fused_packed_linear(owner: nn.Module, key: str, linears: tuple[nn.Module, ...],
                        x: torch.Tensor) -> torch.Tensor | None:
    """``x`` through several :class:`PackedLinear` of one input at once (outputs concatenated
    along the last axis; e.g. q/k/v), with one packed concatenation of their weights cached on
    ``owner`` (which needs a ``packing`` attribute so :func:`set_weight_packing` frees it).
    None when packing does not apply or a layer was replaced (LoRA, quantization): then call
    the layers one by one."""
    if not owner.packing or any(type(m) is not PackedLinear for m in linears) \
            or _packed_weight(linears[0], x) is None:
        return None
    return packed_linear(x, _packed_cache(owner, key), tuple(m.weight for m in linears),
                         tuple(m.bias for m in linears))


def set_weight_packing(model: nn.Module, enabled: bool = True) -> int:
    """Turn packed-weight inference on or off for every module of ``model`` that supports it
    (those with a ``packing`` attribute); turning it off frees the packed copies. Returns how
    many modules it set.

    Example::

        >>> m = nn.Sequential(PackedLinear(4, 2))
        >>> set_weight_packing(m)
        1
    """
    n = 0
    for module in model.modules():
        if hasattr(type(module), "packing"):
            module.packing = bool(enabled)
            if not enabled:
                for key in [k for k, v in module.__dict__.items() if isinstance(v, PackedWeights)]:
                    del module.__dict__[key]
            n += 1
    return n


__all__ += ["PACKED_FP32_MAX_ROWS", "PACKED_MIN_WEIGHT", "PackedWeights", "PackedLinear",
            "packed_linear", "packed_linear_ok", "set_weight_packing", "fused_packed_linear",
            "linear_then"]
