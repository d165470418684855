"""Image processing for semantic segmentation: SegFormer's processor (pictures -> ``pixel_values``,
segmentation maps -> ``labels`` for training, logits -> class maps after the forward), step for
step as the reference's PIL/numpy ``SegformerImageProcessor``.

Pictures go through :class:`~pretrained.processing.image.BaseImageProcessor`'s steps (resize to
``size`` -- 512 x 512, bilinear --, rescale 1/255, normalize with the ImageNet mean/std). A
segmentation map (one channel of class ids: a 2-D array, a mode L / P / I PIL image, or a batch
(N, H, W) array) goes through the same resize with *nearest* resampling (class ids are never
blended), is not rescaled or normalized, and comes back as int64 ``labels`` (B, H, W). With
``do_reduce_labels`` (datasets such as ADE20k whose 0 is an unlabelled background) 0 becomes 255
(the loss's ignore index) and every other id drops by one, before the resize.

:func:`semantic_segmentation_maps` is the post-processing shared by semantic segmenters: logits
(B, num_labels, h, w) upsampled bilinearly (align_corners False) to each picture's (height, width),
then the argmax per pixel.

Example::

    >>> import numpy as np
    >>> from pretrained.processing import SegformerImageProcessor
    >>> proc = SegformerImageProcessor(size={"height": 8, "width": 8})
    >>> batch = proc(np.zeros((20, 30, 3), np.uint8), segmentation_maps=np.ones((20, 30), np.uint8),
    ...              return_tensors="pt")
    >>> batch["pixel_values"].shape, batch["labels"].shape, batch["labels"].dtype
    (torch.Size([1, 3, 8, 8]), torch.Size([1, 8, 8]), torch.int64)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .base import BatchFeature
from ..errors import InvalidInputError, UnsupportedOptionError
from ..vision.io import _is_pil, _is_torch, load_image
from .image import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, BaseImageProcessor

__all__ = ["SegformerImageProcessor", "reduce_labels", "semantic_segmentation_maps"]

NEAREST = 0   # PIL.Image.Resampling.NEAREST: what segmentation maps are resized with


def reduce_labels(label_map: np.ndarray) -> np.ndarray:
    """The reference's label reduction: 0 (background) -> 255, every other id - 1, 255 kept
    (a new array; the input is not changed)."""
    out = np.array(label_map, copy=True)
    out[out == 0] = 255
    out = out - 1
    out[out == 254] = 255
    return out


def _map_list(segmentation_maps: Any) -> list[Any]:
    """One map, a list of maps, or an (N, H, W) batch -> a list of maps."""
    if isinstance(segmentation_maps, (list, tuple)):
        if not segmentation_maps:
            raise InvalidInputError("got an empty list of segmentation maps")
        out: list[Any] = []
        for item in segmentation_maps:
            out.extend(_map_list(item) if isinstance(item, (list, tuple)) or getattr(item, "ndim", 0) == 3
                       else [item])
        return out
    if (isinstance(segmentation_maps, np.ndarray) or _is_torch(segmentation_maps)) and segmentation_maps.ndim == 3:
        return list(segmentation_maps)
    return [segmentation_maps]


def _map_array(item: Any, index: int) -> np.ndarray:
    """One segmentation map -> a 2-D numpy array of class ids."""
    if isinstance(item, (str, os.PathLike, bytes, bytearray)):
        item = _read_map(item)
    if _is_torch(item):
        item = item.detach().cpu().numpy()
    if _is_pil(item):
        item = np.array(item)
    if not isinstance(item, np.ndarray):
        raise InvalidInputError(f"segmentation map {index} is a {type(item).__name__}: pass 2-D numpy arrays, torch "
                                "tensors, PIL images (mode L, P or I) or file paths")
    if item.ndim != 2:
        raise InvalidInputError(
            f"segmentation map {index} has shape {tuple(item.shape)}: a segmentation map is one (height, width) "
            "channel of class ids (an RGB picture is not one; a PIL map is mode L, P or I)")
    if item.dtype.kind not in "uib":
        if item.dtype.kind != "f" or not np.array_equal(item, np.round(item)):
            raise InvalidInputError(f"segmentation map {index} holds {item.dtype} values that are not whole class ids")
    if item.shape[0] == 0 or item.shape[1] == 0:
        raise InvalidInputError(f"segmentation map {index} has no pixels (shape {tuple(item.shape)})")
    return item


def _read_map(source: Any) -> Any:
    """A map file, decoded without the RGB conversion pictures get (a P map keeps its indices)."""
    from ..vision.io import _open

    if isinstance(source, (str, os.PathLike)):
        if not os.path.exists(source):
            load_image(source)   # the named "no such file" error
        return _open(os.fspath(source), f"segmentation map file {os.fspath(source)!r}")
    import io

    return _open(io.BytesIO(bytes(source)), "the segmentation map bytes")


def _size_of(target: Any, index: int) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in target)
    except (TypeError, ValueError):
        raise InvalidInputError(f"target_sizes[{index}] = {target!r}: give (height, width) per image") from None
    if height <= 0 or width <= 0:
        raise InvalidInputError(f"target_sizes[{index}] = {(height, width)}: sizes must be positive")
    return height, width


def semantic_segmentation_maps(logits: Any, target_sizes: Any = None, return_segmentation_scores: bool = False) -> list:
    """Per image, the (height, width) map of the best class per pixel (int64), the logits
    resized bilinearly to ``target_sizes[i]`` first when given; with
    ``return_segmentation_scores`` a dict per image: ``segmentation`` and ``segmentation_scores``
    (num_labels, height, width), as the reference's output object."""
    import torch
    from torch.nn import functional as F

    if not isinstance(logits, torch.Tensor) or logits.dim() != 4:
        raise InvalidInputError(f"expected logits (batch, num_labels, height, width), got "
                                f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}")
    out = []
    if target_sizes is not None:
        if isinstance(target_sizes, torch.Tensor):
            target_sizes = target_sizes.tolist()
        if len(target_sizes) != len(logits):
            raise InvalidInputError(f"target_sizes has {len(target_sizes)} entries for a batch of {len(logits)} "
                                    "logits: give one (height, width) per image")
        for i, target in enumerate(target_sizes):
            scores = F.interpolate(logits[i:i + 1], size=_size_of(target, i), mode="bilinear", align_corners=False)[0]
            out.append((scores.argmax(dim=0), scores))
    else:
        out = [(row.argmax(dim=0), row) for row in logits]
    if return_segmentation_scores:
        return [BatchFeature(segmentation=seg, segmentation_scores=scores) for seg, scores in out]
    return [seg for seg, _ in out]


class SegformerImageProcessor(BaseImageProcessor):
    """SegFormer's: resize to 512 x 512 (bilinear), rescale 1/255, normalize with the ImageNet
    mean/std; ``segmentation_maps`` -> ``labels`` (see the module docstring). No center crop (the
    reference's SegFormer processor has none: asking for one is refused)."""

    config_keys = (*BaseImageProcessor.config_keys, "do_reduce_labels")
    do_resize = True
    size = {"height": 512, "width": 512}
    resample = 2
    do_rescale = True
    do_normalize = True
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    do_reduce_labels: Any = False

    def __call__(self, images: Any, segmentation_maps: Any = None, **kwargs: Any) -> BatchFeature:
        return self.preprocess(images, segmentation_maps, **kwargs)

    def preprocess(self, images: Any, segmentation_maps: Any = None, *, return_tensors: str | None = None,
                   **kwargs: Any) -> BatchFeature:
        """``images`` as :meth:`BaseImageProcessor.preprocess` takes them; ``segmentation_maps``
        (optional, one per image) -> ``labels``: int64 (B, H, W) with ``return_tensors="pt"`` /
        ``"np"``, else a list of (H, W) arrays. Keyword arguments override the config keys."""
        batch = super().preprocess(images, return_tensors=return_tensors, **kwargs)
        if segmentation_maps is None:
            return batch
        labels = self.preprocess_segmentation_maps(segmentation_maps, return_tensors=return_tensors, **kwargs)
        if len(labels) != len(batch["pixel_values"]):
            raise InvalidInputError(f"got {len(batch['pixel_values'])} images but {len(labels)} segmentation maps: "
                                    "give one map per image")
        batch["labels"] = labels
        return batch

    def preprocess_segmentation_maps(self, segmentation_maps: Any, *, return_tensors: str | None = None,
                                     **kwargs: Any) -> Any:
        """The ``labels`` of :meth:`preprocess` alone: label reduction (``do_reduce_labels``),
        then the resize with nearest resampling; int64."""
        unknown = sorted(set(kwargs) - set(self.config_keys))
        if unknown:
            raise InvalidInputError(f"{type(self).__name__}.preprocess_segmentation_maps() got unexpected keyword "
                                    f"arguments {unknown}; accepted: {sorted(self.config_keys)}")
        merged = {k: kwargs[k] if kwargs.get(k) is not None else getattr(self, k) for k in self.config_keys}
        opts = self._standardize(merged)
        maps = []
        for i, item in enumerate(_map_list(segmentation_maps)):
            label_map = _map_array(item, i)
            if opts["do_reduce_labels"]:
                label_map = reduce_labels(label_map)
            if opts["do_resize"]:
                label_map = self.resize(label_map[None], opts["size"], NEAREST, opts)[0]
            maps.append(label_map.astype(np.int64))
        kind = getattr(return_tensors, "value", return_tensors)
        if kind is None:
            return maps
        if len({m.shape for m in maps}) != 1:
            raise InvalidInputError(f"the processed segmentation maps have different shapes "
                                    f"({sorted({m.shape for m in maps})}): resize them (do_resize=True) or pass "
                                    "return_tensors=None")
        stacked = np.stack(maps)
        if kind == "np":
            return stacked
        import torch

        return torch.from_numpy(stacked)

    def _validate(self, opts: dict[str, Any]) -> None:
        super()._validate(opts)
        if opts["do_center_crop"]:
            raise UnsupportedOptionError("SegformerImageProcessor has no center crop (as the reference's): resize to "
                                         "the size you want with size={'height': h, 'width': w} instead")

    def post_process_semantic_segmentation(self, outputs: Any, target_sizes: Sequence | None = None,
                                           return_segmentation_scores: bool = False) -> list:
        """The model's ``logits`` -> one class map (height, width) per image (see
        :func:`semantic_segmentation_maps`); ``target_sizes``: each picture's (height, width)."""
        logits = outputs["logits"] if isinstance(outputs, Mapping) else getattr(outputs, "logits", None)
        if logits is None:
            raise InvalidInputError(f"post_process_semantic_segmentation needs the model's output (with .logits), "
                                    f"got {type(outputs).__name__}")
        return semantic_segmentation_maps(logits, target_sizes, return_segmentation_scores)
