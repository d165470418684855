"""What the audio pipelines share: a feature extractor next to the model, audio inputs in every
form :func:`pretrained.audio.load_audio` reads, and batches of equal-shaped features.

An item is a file path, the bytes of a file, ``{"raw": array, "sampling_rate": sr}`` (or
``"array"``), or a list of those. A bare array is refused with the fix (its rate is unknown:
guessing would change the pitch and the words).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import InvalidInputError
from .processor_base import ProcessorPipeline

__all__ = ["AudioPipeline"]


class AudioPipeline(ProcessorPipeline):
    """A pipeline whose inputs are audio: ``feature_extractor`` turns waveforms into the model's
    inputs (loaded from the model's folder when not given); ``tokenizer`` is optional."""

    processor_name = "feature_extractor"
    model_input_names = ("input_features", "input_values", "attention_mask")

    def __init__(self, model: torch.nn.Module, tokenizer: Any = None, *, feature_extractor: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(model, tokenizer, processor=feature_extractor, **kwargs)

    @classmethod
    def load_processor(cls, source: str | os.PathLike) -> Any:
        from ..processing import AutoFeatureExtractor

        return AutoFeatureExtractor.from_pretrained(source)

    @property
    def sampling_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)

    def load(self, item: Any) -> np.ndarray:
        """The item as a mono float32 waveform at the feature extractor's rate."""
        from ..audio import load_audio

        if isinstance(item, (np.ndarray, torch.Tensor)):
            raise InvalidInputError(
                f"the {self.task} pipeline got a bare array, whose sampling rate is unknown; pass "
                f'{{"raw": array, "sampling_rate": {self.sampling_rate}}} (any rate is resampled)')
        return load_audio(item, self.sampling_rate)

    def _is_single(self, inputs: Any) -> bool:
        return isinstance(inputs, (str, os.PathLike, bytes, bytearray, Mapping, np.ndarray, torch.Tensor))

    def _input_help(self) -> str:
        return ('a file path, the bytes of an audio file, {"raw": array, "sampling_rate": rate}, or a '
                "list of those")
