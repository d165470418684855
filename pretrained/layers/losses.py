"""Losses of the task heads, computed as the reference computes them.

Sequence classification (regression, single- or multi-label, chosen by ``config.problem_type``),
per-token cross-entropy, next-token (causal LM) loss and question-answering span loss. Every head
of every model calls these, so labels of -100 and out-of-range span positions are handled the same
way everywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError


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
