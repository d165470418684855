"""Vision: reading pictures (:func:`load_image`: paths, bytes, PIL, arrays; EXIF orientation, RGB).

The image processors that turn pictures into ``pixel_values`` live in :mod:`pretrained.processing`;
their names are still given here (``from pretrained.vision import AutoImageProcessor`` keeps
working). Names load lazily: ``import pretrained.vision`` imports neither Pillow nor torch.
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
    "load_image": ".io",
    "convert_to_rgb": ".io",
    "BatchFeature": "..processing.image",
    "BaseImageProcessor": "..processing.image",
    "ViTImageProcessor": "..processing.image",
    "DeiTImageProcessor": "..processing.image",
    "ConvNextImageProcessor": "..processing.image",
    "SegformerImageProcessor": "..processing.segmentation",
    "DetrImageProcessor": "..processing.detection",
    "YolosImageProcessor": "..processing.detection",
    "Mask2FormerImageProcessor": "..processing.mask2former",
    "AutoImageProcessor": "..processing.auto_image",
    "IMAGE_PROCESSORS": "..processing.auto_image",
}

if TYPE_CHECKING:
    from ..processing.auto_image import IMAGE_PROCESSORS, AutoImageProcessor
    from ..processing.detection import DetrImageProcessor, YolosImageProcessor
    from ..processing.image import (BaseImageProcessor, BatchFeature, ConvNextImageProcessor, DeiTImageProcessor,
                                    ViTImageProcessor)
    from ..processing.mask2former import Mask2FormerImageProcessor
    from ..processing.segmentation import SegformerImageProcessor
    from .io import convert_to_rgb, load_image


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'pretrained.vision' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
