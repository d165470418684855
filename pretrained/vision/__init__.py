"""Vision: reading pictures (:func:`load_image`) and the image processors that turn them into
``pixel_values`` (ViT, DeiT, ConvNeXt), with :class:`AutoImageProcessor`.

Names load lazily: ``import pretrained.vision`` imports neither Pillow nor torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "load_image",
    "convert_to_rgb",
    "BatchFeature",
    "BaseImageProcessor",
    "ViTImageProcessor",
    "DeiTImageProcessor",
    "ConvNextImageProcessor",
    "SegformerImageProcessor",
    "DetrImageProcessor",
    "YolosImageProcessor",
    "Mask2FormerImageProcessor",
    "AutoImageProcessor",
    "IMAGE_PROCESSORS",
]

_WHERE = {
    "load_image": "io",
    "convert_to_rgb": "io",
    "BatchFeature": "processors",
    "BaseImageProcessor": "processors",
    "ViTImageProcessor": "processors",
    "DeiTImageProcessor": "processors",
    "ConvNextImageProcessor": "processors",
    "SegformerImageProcessor": "segmentation_processing",
    "DetrImageProcessor": "detection_processing",
    "YolosImageProcessor": "detection_processing",
    "Mask2FormerImageProcessor": "mask2former_processing",
    "AutoImageProcessor": "auto",
    "IMAGE_PROCESSORS": "auto",
}

if TYPE_CHECKING:
    from .auto import IMAGE_PROCESSORS, AutoImageProcessor
    from .segmentation_processing import SegformerImageProcessor
    from .io import convert_to_rgb, load_image
    from .mask2former_processing import Mask2FormerImageProcessor
    from .processors import (BaseImageProcessor, BatchFeature, ConvNextImageProcessor, DeiTImageProcessor,
                             ViTImageProcessor)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'pretrained.vision' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
