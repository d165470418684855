"""Processing: what turns pictures and waveforms into model inputs, and model outputs back into
answers: the image processors (ViT, DeiT, ConvNeXt, SegFormer, DETR, YOLOS, Mask2Former) and the
audio feature extractors (Whisper log-mel, Wav2Vec2 normalised samples, AST Kaldi fbank), with
:class:`AutoImageProcessor`, :class:`AutoFeatureExtractor` and :class:`AutoProcessor`.

Reading the inputs themselves is :func:`pretrained.vision.load_image` and
:func:`pretrained.audio.load_audio`. Names load lazily: ``import pretrained.processing`` imports
neither Pillow nor torch.

Example::

    >>> from pretrained.processing import AutoImageProcessor  # doctest: +SKIP
    >>> processor = AutoImageProcessor.from_pretrained("path/to/vit")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module of this package that defines it
_WHERE = {
    "BatchFeature": "base",
    "FeatureExtractor": "base",
    "BaseImageProcessor": "image",
    "ViTImageProcessor": "image",
    "DeiTImageProcessor": "image",
    "ConvNextImageProcessor": "image",
    "SegformerImageProcessor": "segmentation",
    "DetrImageProcessor": "detection",
    "YolosImageProcessor": "detection",
    "Mask2FormerImageProcessor": "mask2former",
    "AutoImageProcessor": "auto_image",
    "IMAGE_PROCESSORS": "auto_image",
    "WhisperFeatureExtractor": "whisper_features",
    "Wav2Vec2FeatureExtractor": "wav2vec2_features",
    "ASTFeatureExtractor": "ast_features",
    "AutoFeatureExtractor": "auto_audio",
    "AutoProcessor": "auto_audio",
    "AudioProcessor": "auto_audio",
    "WhisperProcessor": "auto_audio",
    "FEATURE_EXTRACTORS": "auto_audio",
}

__all__ = ["ASTFeatureExtractor", "AudioProcessor", "AutoFeatureExtractor", "AutoImageProcessor", "AutoProcessor",
           "BaseImageProcessor", "BatchFeature", "ConvNextImageProcessor", "DeiTImageProcessor", "DetrImageProcessor",
           "FEATURE_EXTRACTORS", "FeatureExtractor", "IMAGE_PROCESSORS", "Mask2FormerImageProcessor",
           "SegformerImageProcessor", "Wav2Vec2FeatureExtractor", "WhisperFeatureExtractor", "WhisperProcessor",
           "ViTImageProcessor", "YolosImageProcessor"]

if TYPE_CHECKING:
    from .ast_features import ASTFeatureExtractor
    from .auto_audio import FEATURE_EXTRACTORS, AudioProcessor, AutoFeatureExtractor, AutoProcessor, WhisperProcessor
    from .auto_image import IMAGE_PROCESSORS, AutoImageProcessor
    from .base import BatchFeature, FeatureExtractor
    from .detection import DetrImageProcessor, YolosImageProcessor
    from .image import BaseImageProcessor, ConvNextImageProcessor, DeiTImageProcessor, ViTImageProcessor
    from .mask2former import Mask2FormerImageProcessor
    from .segmentation import SegformerImageProcessor
    from .wav2vec2_features import Wav2Vec2FeatureExtractor
    from .whisper_features import WhisperFeatureExtractor


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'pretrained.processing' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
