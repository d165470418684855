"""Shared building blocks of the models, one concern per module.

Model files import from here rather than re-implementing; a block lives here once two models
share it. :mod:`.activations` (activation functions by config name), :mod:`.attention` (masks,
SDPA and grouped-query attention), :mod:`.rope` (rotary embeddings), :mod:`.norms` (RMSNorm),
:mod:`.losses` (head losses), :mod:`.init` (reference initialisation), :mod:`.encoder` and
:mod:`.decoder` (forward helpers of each family), :mod:`.seq2seq`, :mod:`.bart_blocks` and
:mod:`.seq2seq_heads` (encoder-decoders: the contract's helpers, the BART family's blocks and
task heads), :mod:`.speech_encoder` (Wav2Vec2 / HuBERT: convolutions over the waveform,
positional convolution, the transformer stack, CTC loss) and :mod:`.conv1d` (GPT-2's ``Conv1D``), :mod:`.detection` (DETR / YOLOS: boxes, Hungarian
matching, the set loss, the MLP heads), :mod:`.deformable_attention` (multi-scale deformable attention) and
:mod:`.mask2former_pixel_decoder` / :mod:`.mask2former_decoder` / :mod:`.mask2former_loss` (Mask2Former). Plain PyTorch math only: speed lives in :mod:`pretrained.backends`, which swaps modules after loading.
Every name is re-exported here, so callers import from ``pretrained.layers``.
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
    per_input_attention,
    split_heads,
)
from .decoder import last_token_logits, lm_logits, prepare_decoder_inputs
from .decoder_stack import DecoderLayers
from .seq2seq_stack import Seq2SeqDecoderLayers, T5Blocks
from .encoder import (
    ClassificationHead,
    check_max_length,
    check_span_labels,
    check_token_type_ids,
    classifier_dropout,
    classifier_linear,
    masked_lm_output,
    LayerStack,
    sequence_classification_output,
    span_output,
    token_classification_output,
)
from .init import init_normal_
from .losses import causal_lm_loss, sequence_classification_loss, span_loss, token_loss
from .norms import RMSNorm
from .conv1d import Conv1D
from .bart_blocks import (
    BartArch,
    BartAttention,
    BartDecoderLayer,
    BartEncoderLayer,
    LearnedPositions,
    Seq2SeqDecoder,
    Seq2SeqEncoder,
    Seq2SeqLM,
    Seq2SeqModel,
    Seq2SeqPreTrained,
    SinusoidalPositions,
    check_bart_config,
    shift_tokens_right_wrapped,
    sinusoidal_table,
)
from .seq2seq import (
    as_encoder_output,
    clamp_float16,
    cross_key_values,
    eos_representation,
    decoder_inputs,
    encoder_cache,
    encoder_padding_mask,
    seq2seq_lm_loss,
    shift_tokens_right,
)
from .seq2seq_heads import (
    DecoderWrapper,
    Seq2SeqCausalLM,
    Seq2SeqQuestionAnswering,
    Seq2SeqSequenceClassification,
)
from .rope import ROPE_TYPES, RotaryEmbedding, apply_rotary, rope_frequencies, standardize_rope_parameters
from .speech_encoder import (
    FeatureEncoder,
    FeatureProjection,
    PositionalConvEmbedding,
    SpeechEncoder,
    SpeechEncoderLayer,
    WeightNormConv1d,
    check_input_values,
    conv_output_lengths,
    ctc_loss,
    frame_mask,
    init_speech_module,
    masked_mean,
    min_samples,
    span_mask,
)

from .detection import (
    MLPPredictionHead,
    ObjectDetectionOutput,
    center_to_corners,
    check_detection_labels,
    corners_to_center,
    detection_loss,
    generalized_box_iou,
    hungarian_match,
    linear_sum_assignment,
)
from .drop_path import DropPath, drop_path_rates
from .pixels import check_image_pixels, pixels_hint
from .vit_blocks import (
    ImageEmbeddings,
    ImagePatchEmbeddings,
    ViTAttention,
    ViTLayer,
    ViTSelfAttention,
    check_pixel_values,
    check_vit_config,
    interpolate_patch_positions,
    pair,
    vit_encoder,
)
from .deformable_attention import (
    MultiscaleDeformableAttention,
    init_deformable_attention_,
    multi_scale_deformable_attention,
    reference_grid,
)
from .mask2former_pixel_decoder import Mask2FormerPixelDecoder, sine_position_embedding
from .mask2former_decoder import Mask2FormerTransformerModule
from .mask2former_loss import check_mask_labels, mask2former_losses, sample_point, weighted_loss

__all__ = [
    "MLPPredictionHead",
    "ObjectDetectionOutput",
    "center_to_corners",
    "check_detection_labels",
    "corners_to_center",
    "detection_loss",
    "generalized_box_iou",
    "hungarian_match",
    "linear_sum_assignment",
    "ImageEmbeddings",
    "ImagePatchEmbeddings",
    "ViTAttention",
    "ViTLayer",
    "ViTSelfAttention",
    "check_pixel_values",
    "check_vit_config",
    "interpolate_patch_positions",
    "pair",
    "vit_encoder",
    "DropPath",
    "drop_path_rates",
    "check_image_pixels",
    "pixels_hint",
    "MultiscaleDeformableAttention",
    "init_deformable_attention_",
    "multi_scale_deformable_attention",
    "reference_grid",
    "Mask2FormerPixelDecoder",
    "sine_position_embedding",
    "Mask2FormerTransformerModule",
    "check_mask_labels",
    "mask2former_losses",
    "sample_point",
    "weighted_loss",
    "FeatureEncoder",
    "FeatureProjection",
    "PositionalConvEmbedding",
    "SpeechEncoder",
    "SpeechEncoderLayer",
    "WeightNormConv1d",
    "check_input_values",
    "conv_output_lengths",
    "ctc_loss",
    "frame_mask",
    "init_speech_module",
    "masked_mean",
    "min_samples",
    "span_mask",
    "BartArch",
    "BartAttention",
    "BartDecoderLayer",
    "BartEncoderLayer",
    "LearnedPositions",
    "Seq2SeqDecoder",
    "Seq2SeqEncoder",
    "Seq2SeqLM",
    "Seq2SeqModel",
    "Seq2SeqPreTrained",
    "SinusoidalPositions",
    "check_bart_config",
    "shift_tokens_right_wrapped",
    "sinusoidal_table",
    "DecoderWrapper",
    "Seq2SeqCausalLM",
    "Seq2SeqQuestionAnswering",
    "Seq2SeqSequenceClassification",
    "as_encoder_output",
    "clamp_float16",
    "cross_key_values",
    "eos_representation",
    "decoder_inputs",
    "encoder_cache",
    "encoder_padding_mask",
    "seq2seq_lm_loss",
    "shift_tokens_right",
    "ACTIVATIONS",
    "activation",
    "attention",
    "attention_mask_4d",
    "check_attention_mask",
    "per_input_attention",
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
    "DecoderLayers",
    "Seq2SeqDecoderLayers",
    "T5Blocks",
    "lm_logits",
    "last_token_logits",
    "check_max_length",
    "check_token_type_ids",
    "ClassificationHead",
    "LayerStack",
    "classifier_dropout",
    "classifier_linear",
    "check_span_labels",
    "sequence_classification_output",
    "token_classification_output",
    "masked_lm_output",
    "span_output",
]
