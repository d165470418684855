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
from .base import Pipeline, _to_cpu

__all__ = ["AudioPipeline"]


class AudioPipeline(Pipeline):
    """A pipeline whose inputs are audio: ``feature_extractor`` turns waveforms into the model's
    inputs (loaded from the model's folder when not given); ``tokenizer`` is optional."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any = None, *, feature_extractor: Any = None,
                 **kwargs: Any) -> None:
        self.feature_extractor = self._load_feature_extractor(model, feature_extractor)
        if tokenizer is None and not self.needs_tokenizer:
            tokenizer = _NoTokenizer()
        super().__init__(model, tokenizer, **kwargs)

    needs_tokenizer = True

    @staticmethod
    def _load_feature_extractor(model: torch.nn.Module, given: Any) -> Any:
        if given is not None and not isinstance(given, (str, os.PathLike)):
            return given
        source = given or getattr(getattr(model, "config", None), "name_or_path", None)
        if not source:
            raise InvalidInputError("the model given has no folder to load its feature extractor from; "
                                    "pass feature_extractor= (a folder or a loaded feature extractor)")
        from ..audio import AutoFeatureExtractor

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

    def _run(self, inputs: Any, params: dict[str, Any], single: bool | None = None) -> Any:
        if single is None:
            single = self._is_single(inputs)
        if not single:
            return super()._run(inputs, params, single)
        # one long audio cut in chunks: batch_size applies to its chunks
        batch_size, pre, fwd, post = self._call_parameters(params)
        return next(self._stream(iter([inputs]), batch_size, pre, fwd, post))

    def _is_single(self, inputs: Any) -> bool:
        return isinstance(inputs, (str, os.PathLike, bytes, bytearray, Mapping, np.ndarray, torch.Tensor))

    def _input_help(self) -> str:
        return ('a file path, the bytes of an audio file, {"raw": array, "sampling_rate": rate}, or a '
                "list of those")

    def _forward_features(self, features: list[dict[str, Any]], batch_size: int,
                          fwd: dict) -> list[dict[str, Any]]:
        """Run the features ``batch_size`` at a time, in order, as the reference batches them:
        shorter inputs padded at the end (with the extractor's padding value, the mask with 0).
        Keys other than the model inputs ride along to postprocess."""
        names = self.model_input_names
        results: list[dict[str, Any]] = []
        for start in range(0, len(features), batch_size):
            group = features[start:start + batch_size]
            batch = {n: self._pad_rows([f[n] for f in group], n).to(self.device)
                     for n in names if n in group[0]}
            with torch.inference_mode():
                out = self._forward(batch, **fwd)
            out = {k: _to_cpu(v) for k, v in out.items()}
            for row, f in enumerate(group):
                rest = {k: v for k, v in f.items() if k not in names}
                results.append({**rest, **{k: v[row:row + 1] for k, v in out.items()}})
        return results

    def _pad_rows(self, rows: list[torch.Tensor], name: str) -> torch.Tensor:
        width = max(r.shape[-1] for r in rows)
        if all(r.shape[-1] == width for r in rows):
            return torch.cat(rows)
        value = 0.0 if name == "attention_mask" else float(getattr(self.feature_extractor, "padding_value", 0.0))
        return torch.cat([torch.nn.functional.pad(r, (0, width - r.shape[-1]), value=value) for r in rows])

    model_input_names: tuple[str, ...] = ("input_features", "input_values", "attention_mask")


class _NoTokenizer:
    """Stands in for the tokenizer of a task that needs none (audio classification)."""

    model_input_names: list[str] = []
    model_max_length = None

    def __repr__(self) -> str:
        return "None"
