"""Shared building blocks of the models, one concern per module.

Model files import from here rather than re-implementing; a block lives here once two models
share it. :mod:`.activations` (activation functions by config name), :mod:`.attention` (masks,
SDPA and grouped-query attention), :mod:`.rope` (rotary embeddings), :mod:`.norms` (RMSNorm),
:mod:`.losses` (head losses), :mod:`.init` (reference initialisation), :mod:`.encoder` and
:mod:`.decoder` (forward helpers of each family), :mod:`.packed` (oneDNN pre-packed linear
weights, ``PackedLinear`` and GPT-2's ``Conv1D``) and :mod:`.rows_kernel` (C kernels for linear
layers on up to 16 rows, built on first use). Every name is re-exported here, so callers
import from ``pretrained.layers``; tests that patch packing thresholds patch
``pretrained.layers.packed``, the module whose functions read them.
"""

from __future__ import annotations

from .activations import ACTIVATIONS, activation
from .attention import (
    attention,
    attention_mask_4d,
    causal_mask,
    check_attention_mask,
    grouped_attention,
    merge_heads,
    packed_segments,
    split_heads,
)
from .decoder import last_token_logits, lm_logits, prepare_decoder_inputs
from .encoder import (
    ClassificationHead,
    check_max_length,
    check_span_labels,
    check_token_type_ids,
    classifier_dropout,
    masked_lm_output,
    post_ln_stack,
    qkv_heads,
    run_layers,
    sequence_classification_output,
    span_output,
    token_classification_output,
)
from .init import init_normal_
from .losses import causal_lm_loss, sequence_classification_loss, span_loss, token_loss
from .norms import RMSNorm
from .packed import (
    PACKED_FP32_MAX_ROWS,
    PACKED_MIN_WEIGHT,
    Conv1D,
    PackedLinear,
    PackedWeights,
    _packing_available,  # tests skip the packed paths where oneDNN lacks them
    fused_packed_linear,
    linear_then,
    packed_linear,
    packed_linear_ok,
    rows_fused,
    set_weight_packing,
)
from .rope import ROPE_TYPES, RotaryEmbedding, apply_rotary, rope_frequencies, standardize_rope_parameters

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
    "check_max_length",
    "check_token_type_ids",
    "post_ln_stack",
    "qkv_heads",
    "run_layers",
    "ClassificationHead",
    "classifier_dropout",
    "check_span_labels",
    "sequence_classification_output",
    "token_classification_output",
    "masked_lm_output",
    "span_output",
    "PACKED_FP32_MAX_ROWS",
    "PACKED_MIN_WEIGHT",
    "PackedWeights",
    "PackedLinear",
    "packed_linear",
    "packed_linear_ok",
    "set_weight_packing",
    "fused_packed_linear",
    "rows_fused",
    "linear_then",
]
