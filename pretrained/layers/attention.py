"""Attention masks and scaled dot-product attention over (B, heads, T, head_dim) tensors.

Encoders use :func:`attention_mask_4d` and :func:`attention`; decoders use :func:`causal_mask`
(KV cache, static cache, sliding window, packed sequences via :func:`packed_segments`) and
:func:`grouped_attention` (grouped-query attention). Masks are boolean and returned as None
whenever SDPA can take its faster unmasked or ``is_causal`` path, which is why mask building and
the attention calls live together.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InvalidInputError


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


def per_input_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    *,
    dropout: float = 0.0,
    scale: float | None = None,
) -> torch.Tensor:
    """Attention of queries q (B * g, heads, T, head_dim) over keys/values (B, heads, S, head_dim)
    that each g consecutive query rows share: the beams of one input over its encoder output.

    The g rows' queries attend together, as one row of g * T queries, so the keys and values are
    projected, cached and read once per input instead of once per beam (the same numbers: each
    query's softmax is its own). ``mask`` (B or 1, 1, 1 or g * T, S) must not tell the g rows apart,
    so it suits a padding mask (no causal one). Returns (B * g, heads, T, head_dim).

    Example::

        >>> q, k = torch.randn(6, 2, 1, 4), torch.randn(2, 2, 5, 4)
        >>> per_input_attention(q, k, k, None).shape
        torch.Size([6, 2, 1, 4])
    """
    b, h, t, d = q.shape
    n = k.shape[0]
    g = b // n
    if g == 1:
        return attention(q, k, v, mask, causal=False, dropout=dropout, scale=scale)
    q = q.view(n, g, h, t, d).transpose(1, 2).reshape(n, h, g * t, d)
    y = attention(q, k, v, mask, causal=False, dropout=dropout, scale=scale)
    return y.view(n, h, g, t, d).transpose(1, 2).reshape(b, h, t, d)


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, T, n_heads * hd) -> (B, n_heads, T, hd)"""
    b, t, _ = x.shape
    return x.view(b, t, n_heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, n_heads, T, hd) -> (B, T, n_heads * hd)"""
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


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
