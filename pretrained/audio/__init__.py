"""Audio: reading and resampling (:func:`load_audio`: files, bytes, arrays and dicts with their rate).

The feature extractors that turn waveforms into model inputs (Whisper log-mel, Wav2Vec2 normalised
samples, AST Kaldi fbank) live in :mod:`pretrained.processing`; their names are still given here
(``from pretrained.audio import AutoFeatureExtractor`` keeps working). Names load lazily, so
``from pretrained.audio import load_audio`` imports numpy only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "load_audio",
    "BatchFeature",
    "WhisperFeatureExtractor",
    "Wav2Vec2FeatureExtractor",
    "ASTFeatureExtractor",
    "AutoFeatureExtractor",
    "AutoProcessor",
    "AudioProcessor",
    "WhisperProcessor",
]

_WHERE = {
    "load_audio": ".io",
    "BatchFeature": "..processing.base",
    "WhisperFeatureExtractor": "..processing.whisper_features",
    "Wav2Vec2FeatureExtractor": "..processing.wav2vec2_features",
    "ASTFeatureExtractor": "..processing.ast_features",
    "AutoFeatureExtractor": "..processing.auto_audio",
    "AutoProcessor": "..processing.auto_audio",
    "AudioProcessor": "..processing.auto_audio",
    "WhisperProcessor": "..processing.auto_audio",
}

if TYPE_CHECKING:
    from ..processing.ast_features import ASTFeatureExtractor
    from ..processing.auto_audio import AudioProcessor, AutoFeatureExtractor, AutoProcessor, WhisperProcessor
    from ..processing.base import BatchFeature
    from ..processing.wav2vec2_features import Wav2Vec2FeatureExtractor
    from ..processing.whisper_features import WhisperFeatureExtractor
    from .io import load_audio


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'pretrained.audio' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
