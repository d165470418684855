"""Blocks shared by the encoders (DistilBERT, RoBERTa, XLM-R, ELECTRA, DeBERTa-v2).

Input checks that fail early with a clear message (:func:`check_max_length`,
:func:`check_token_type_ids`) instead of deep inside an embedding, the layer loop that also
collects hidden states (:class:`LayerStack`), the first-token sentence head
(:class:`ClassificationHead`) whose parameter names match the checkpoints, the vision heads'
``classifier`` (:func:`classifier_linear`), and the tails of the
task-head forwards (loss + output dataclass: :func:`sequence_classification_output`,
:func:`token_classification_output`, :func:`masked_lm_output`, :func:`span_output`), so each
model's head keeps only its own modules and the backbone call.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError, InvalidInputError
from ..outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    QuestionAnsweringOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from .activations import activation
from .losses import sequence_classification_loss, span_loss, token_loss


def check_max_length(length: int, limit: int) -> None:
    """Refuse inputs longer than the position table instead of failing deep in an embedding."""
    if length > limit:
        raise InvalidInputError(
            f"input has {length} tokens but this model takes at most {limit}; tokenize with "
            f"truncation=True, max_length={limit}"
        )


class LayerStack(nn.Module):
    """The layers of an encoder, run in order: ``layer`` is the checkpoint's list
    (``encoder.layer.0...``). A backend may swap this module for one that runs the same layers
    faster (see :mod:`pretrained.backends`); the math is here."""

    def __init__(self, layers) -> None:
        super().__init__()
        self.layer = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, output_hidden_states: bool = False,
                first_only: bool = False) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """``x = layer(x, mask)`` for each layer; returns ``(x, hidden_states)``: the input and
        every layer's output when ``output_hidden_states`` (the reference's ``hidden_states``:
        embeddings first), else None. ``first_only``: the last layer computes the first position
        only, ``(B, 1, H)`` (all a pooler reads; its attention still reads every position);
        the layers must then take ``first_only`` as a third argument."""
        states = [x] if output_hidden_states else None
        last = len(self.layer) - 1
        for i, layer in enumerate(self.layer):
            x = layer(x, mask, True) if first_only and i == last else layer(x, mask)
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


def classifier_dropout(config) -> float:
    """The heads' dropout: ``config.classifier_dropout``, or ``hidden_dropout_prob`` when unset."""
    p = config.classifier_dropout
    return config.hidden_dropout_prob if p is None else p


def classifier_linear(in_features: int, num_labels: int) -> nn.Module:
    """The vision heads' ``classifier``: ``nn.Linear(in_features, num_labels)``, or
    ``nn.Identity`` when the config has no labels (``num_labels=0``: the pooled features come
    back as the logits, as the reference's)."""
    return nn.Linear(in_features, num_labels) if num_labels > 0 else nn.Identity()


def check_span_labels(config, name: str) -> None:
    """A question-answering head has exactly two outputs (start, end); refuse a config whose
    ``num_labels`` says otherwise instead of loading a mis-shaped ``qa_outputs``."""
    if config.num_labels != 2:
        raise ConfigError(f"{name} needs num_labels=2 (start, end), got "
                          f"{config.num_labels}; remove num_labels/id2label from the config")


def sequence_classification_output(config, logits: torch.Tensor, labels: torch.Tensor | None,
                                   out: BaseModelOutput,
                                   loss_fn=sequence_classification_loss) -> SequenceClassifierOutput:
    """``logits`` (B, num_labels) with ``loss_fn(config, logits, labels)`` when labels are given
    (moved to the logits' device first, as the reference's heads do) and the backbone's
    ``hidden_states``."""
    loss = None if labels is None else loss_fn(config, logits, labels.to(logits.device))
    return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


def token_classification_output(logits: torch.Tensor, labels: torch.Tensor | None,
                                out: BaseModelOutput) -> TokenClassifierOutput:
    """Per-token ``logits`` (B, T, num_labels) with the per-token loss (-100 ignored)."""
    loss = None if labels is None else token_loss(logits, labels)
    return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


def masked_lm_output(logits: torch.Tensor, labels: torch.Tensor | None,
                     out: BaseModelOutput) -> MaskedLMOutput:
    """Vocabulary ``logits`` (B, T, V) with the per-token loss (-100 ignored)."""
    loss = None if labels is None else token_loss(logits, labels)
    return MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


def span_output(logits: torch.Tensor, start_positions: torch.Tensor | None,
                end_positions: torch.Tensor | None, out: BaseModelOutput) -> QuestionAnsweringOutput:
    """``qa_outputs`` logits (B, T, 2) split into contiguous start/end logits (B, T); the span
    loss only when both positions are given."""
    start, end = logits.split(1, dim=-1)
    start, end = start.squeeze(-1).contiguous(), end.squeeze(-1).contiguous()
    loss = None
    if start_positions is not None and end_positions is not None:
        loss = span_loss(start, end, start_positions, end_positions)
    return QuestionAnsweringOutput(loss=loss, start_logits=start, end_logits=end,
                                   hidden_states=out.hidden_states)
