"""``AutoImageProcessor``: the right image processor for a checkpoint folder or hub id, from its
``preprocessor_config.json`` (``image_processor_type``; older files: ``feature_extractor_type``
with ``FeatureExtractor`` in place of ``ImageProcessor``), else ``config.json``'s ``model_type``.
"""

from __future__ import annotations

import os
from typing import Any

from .auto_audio import _hub_kwargs, _model_type
from .base import PREPROCESSOR_CONFIG, read_preprocessor_config
from ..errors import UnknownModelTypeError
from .mask2former import Mask2FormerImageProcessor
from .detection import DetrImageProcessor, YolosImageProcessor
from .image import BaseImageProcessor, ConvNextImageProcessor, DeiTImageProcessor, ViTImageProcessor
from .segmentation import SegformerImageProcessor

__all__ = ["AutoImageProcessor", "IMAGE_PROCESSORS"]

IMAGE_PROCESSORS: dict[str, type[BaseImageProcessor]] = {
    cls.__name__: cls for cls in (ViTImageProcessor, DeiTImageProcessor, ConvNextImageProcessor)}
_BY_MODEL_TYPE = {"vit": ViTImageProcessor, "deit": DeiTImageProcessor, "convnext": ConvNextImageProcessor,
                  "convnextv2": ConvNextImageProcessor,
                  "resnet": ConvNextImageProcessor,   # as the reference: microsoft/resnet-* crop by crop_pct
                  "swin": ViTImageProcessor}   # as the reference (microsoft/swin-*: ViTFeatureExtractor)
IMAGE_PROCESSORS.update({cls.__name__: cls for cls in (DetrImageProcessor, YolosImageProcessor)})
_BY_MODEL_TYPE.update({"detr": DetrImageProcessor, "yolos": YolosImageProcessor})

IMAGE_PROCESSORS[Mask2FormerImageProcessor.__name__] = Mask2FormerImageProcessor
_BY_MODEL_TYPE["mask2former"] = Mask2FormerImageProcessor
IMAGE_PROCESSORS[SegformerImageProcessor.__name__] = SegformerImageProcessor
_BY_MODEL_TYPE["segformer"] = SegformerImageProcessor


def _supported() -> str:
    return (f"image_processor_type {', '.join(sorted(IMAGE_PROCESSORS))}, or config.json model_type "
            f"{', '.join(sorted(_BY_MODEL_TYPE))}")


def _class_name(declared: str) -> str:
    name = declared[:-len("Pil")] if declared.endswith("ImageProcessorPil") else declared
    name = name[:-len("Fast")] if name.endswith("ImageProcessorFast") else name
    return name.replace("FeatureExtractor", "ImageProcessor")


def _pick_class(config: dict[str, Any], name_or_path: Any, hub: dict[str, Any]) -> type[BaseImageProcessor]:
    declared = config.get("image_processor_type") or config.get("feature_extractor_type")
    if declared is not None:
        cls = IMAGE_PROCESSORS.get(_class_name(declared))
        if cls is None:
            remote = " (its auto_map points to remote code, which is never run)" if "auto_map" in config else ""
            raise UnknownModelTypeError(f"{PREPROCESSOR_CONFIG} of {os.fspath(name_or_path)!r} names {declared!r}"
                                        f"{remote}; supported: {_supported()}")
        return cls
    model_type = _model_type(name_or_path, hub)
    if model_type in _BY_MODEL_TYPE:
        return _BY_MODEL_TYPE[model_type]
    raise UnknownModelTypeError(
        f"cannot tell which image processor {os.fspath(name_or_path)!r} needs: {PREPROCESSOR_CONFIG} names no "
        f"image_processor_type and config.json's model_type is {model_type!r}; supported: {_supported()}")


class AutoImageProcessor:
    """Picks and loads a checkpoint's image processor.

    Example::

        >>> import tempfile
        >>> from pretrained.processing import AutoImageProcessor, DeiTImageProcessor
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     _ = DeiTImageProcessor(crop_size=160).save_pretrained(folder)
        ...     proc = AutoImageProcessor.from_pretrained(folder)
        >>> type(proc).__name__, proc.crop_size
        ('DeiTImageProcessor', {'height': 160, 'width': 160})
    """

    def __init__(self) -> None:
        raise TypeError("AutoImageProcessor is not instantiated; use AutoImageProcessor.from_pretrained(path)")

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> BaseImageProcessor:
        """The image processor of a folder, a hub id (``revision=``, ``cache_dir=``,
        ``local_files_only=``, ``token=``) or a ``preprocessor_config.json`` path; other keyword
        arguments override config keys (``use_fast`` is accepted and ignored: there is one
        implementation). Raises :class:`UnknownModelTypeError` naming the supported types."""
        kwargs.pop("use_fast", None)
        hub = _hub_kwargs(kwargs)
        config = read_preprocessor_config(name_or_path, **hub)
        return _pick_class(config, name_or_path, hub).from_dict(config, **kwargs)
