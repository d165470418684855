"""Rotary position embeddings: config parsing, inverse frequencies and the rotation itself.

:func:`standardize_rope_parameters` turns a config.json of any age into one RoPE dict;
:func:`rope_frequencies` computes the inverse frequencies for every supported scaling type
(:data:`ROPE_TYPES`: default, linear, dynamic NTK, llama3, yarn); :class:`RotaryEmbedding` turns
positions into cos/sin tables and :func:`apply_rotary` rotates queries and keys by them. Shared by
the Llama family and GPT-NeoX (partial rotary).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError


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
