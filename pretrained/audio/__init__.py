"""Audio: reading and resampling (:func:`load_audio`), and the feature extractors that turn
waveforms into model inputs (Whisper log-mel, Wav2Vec2 normalised samples, AST Kaldi fbank).

Names load lazily, so ``from pretrained.audio import load_audio`` imports numpy only; torch comes
with the first feature extraction.
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
    "load_audio": "io",
    "BatchFeature": "base",
    "WhisperFeatureExtractor": "whisper_features",
    "Wav2Vec2FeatureExtractor": "wav2vec2_features",
    "ASTFeatureExtractor": "ast_features",
    "AutoFeatureExtractor": "auto",
    "AutoProcessor": "auto",
    "AudioProcessor": "auto",
    "WhisperProcessor": "auto",
}

if TYPE_CHECKING:
    from .ast_features import ASTFeatureExtractor
    from .auto import AudioProcessor, AutoFeatureExtractor, AutoProcessor, WhisperProcessor
    from .base import BatchFeature
    from .io import load_audio
    from .wav2vec2_features import Wav2Vec2FeatureExtractor
    from .whisper_features import WhisperFeatureExtractor


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'pretrained.audio' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
