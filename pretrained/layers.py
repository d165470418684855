"""Shared building blocks: activations, attention masks, attention, GPT-2's Conv1D, head losses.

Model files import from here rather than re-implementing; a block lives here once two models
share it.
"""

from __future__ import annotations

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
    shapes load and save unchanged."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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
]
