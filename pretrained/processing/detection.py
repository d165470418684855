"""The detectors' image processors (DETR, YOLOS): pictures (and COCO detection annotations) ->
``pixel_values``, ``pixel_mask`` and training ``labels``; and the model's raw output -> boxes in
pixels (:meth:`~DetrImageProcessor.post_process_object_detection`); DETR's also DetrForSegmentation's
masks -> semantic maps, instances, panoptic segments (:mod:`.detr_segmentation`).

Step for step as the reference's PIL/numpy processors (``DetrImageProcessorPil``,
``YolosImageProcessorPil``):

1. resize through Pillow (bilinear by default) so the shorter side is ``size["shortest_edge"]``
   unless that makes the longer side exceed ``size["longest_edge"]`` (then the longer side is
   capped and the shorter one follows: DETR's "max size" rule; YOLOS then rounds both sides down
   to a multiple of 16); ``{"height", "width"}`` warps, ``{"max_height", "max_width"}`` fits inside;
2. rescale (``x * 1/255``) and normalize (ImageNet mean / std), as every image processor here;
3. pad every picture at the bottom / right with zeros to the batch's largest height and width (or
   ``pad_size``), with ``pixel_mask`` 1 on the picture and 0 on the padding.

Annotations (COCO detection: ``{"image_id": ..., "annotations": [{"bbox": [x, y, w, h],
"category_id": c, "area": a, "iscrowd": 0}, ...]}`` per picture) follow every step: crowd and
empty boxes dropped, boxes clipped to the picture, scaled with it (areas too), turned into
(center_x, center_y, width, height) relative to the resized picture
(``do_convert_annotations``), then relative to the padded one. They come back as ``labels``: one
dict per picture (``size``, ``image_id``, ``class_labels``, ``boxes``, ``area``, ``iscrowd``,
``orig_size``), what DETR / YOLOS read as their training labels.

Not supported (each raises :class:`UnsupportedOptionError` saying so): COCO panoptic annotations,
segmentation masks (``return_segmentation_masks``, ``masks_path``) and keypoints.

Example::

    >>> import numpy as np
    >>> from pretrained.processing import DetrImageProcessor
    >>> proc = DetrImageProcessor(size={"shortest_edge": 32, "longest_edge": 48})
    >>> out = proc([np.zeros((40, 80, 3), np.uint8), np.zeros((60, 30, 3), np.uint8)], return_tensors="pt")
    >>> out["pixel_values"].shape, out["pixel_mask"].shape
    (torch.Size([2, 3, 48, 48]), torch.Size([2, 48, 48]))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from .base import BatchFeature
from ..errors import ConfigError, InvalidInputError, UnsupportedOptionError
from .detr_segmentation import DetrSegmentationPostProcessing
from .image import (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, BaseImageProcessor, _flatten, capped_short_side,
                         pad_batch, padded_size, resize, size_dict, size_with_aspect_ratio)

__all__ = ["DetrImageProcessor", "YolosImageProcessor", "post_process_object_detection",
           "detr_resize_size", "yolos_resize_size"]

_FORMATS = ("coco_detection", "coco_panoptic")

#: DETR's resize rule (shorter side, longer one capped), shared with Mask2Former in processors.py
detr_resize_size = size_with_aspect_ratio


# --- sizes --------------------------------------------------------------------------------------
def yolos_resize_size(hw: tuple[int, int], size: int, max_size: int | None = None,
                      multiple: int = 16) -> tuple[int, int]:
    """YOLOS's (height, width): DETR's rule (the portrait case decided first), then both sides
    rounded down to a multiple of ``multiple``."""
    height, width = int(hw[0]), int(hw[1])
    size, raw = capped_short_side(height, width, size, max_size)
    base = raw if raw is not None else size
    if width < height:
        new_h, new_w = int(base * height / width), size
    elif (height <= width and height == size) or (width <= height and width == size):
        new_h, new_w = height, width
    else:
        new_h, new_w = size, int(base * width / height)
    return new_h - new_h % multiple, new_w - new_w % multiple


# --- annotations --------------------------------------------------------------------------------
def _check_annotations(annotations: Any, count: int, fmt: str) -> list[Mapping]:
    if fmt == "coco_panoptic":
        raise UnsupportedOptionError("COCO panoptic annotations (format='coco_panoptic') are not supported; "
                                     "pass COCO detection annotations (format='coco_detection')")
    if isinstance(annotations, Mapping):
        annotations = [annotations]
    hint = ("annotations must be a dict per picture (COCO detection): {'image_id': id, 'annotations': "
            "[{'bbox': [x, y, width, height], 'category_id': c, 'area': a}, ...]}, or a list of those")
    if not isinstance(annotations, (list, tuple)):
        raise InvalidInputError(f"{hint}; got a {type(annotations).__name__}")
    if len(annotations) != count:
        raise InvalidInputError(f"got {len(annotations)} annotations for {count} pictures; one each")
    for i, target in enumerate(annotations):
        objects = target.get("annotations") if isinstance(target, Mapping) else None
        if not isinstance(target, Mapping) or "image_id" not in target or not isinstance(objects, (list, tuple)):
            raise InvalidInputError(f"annotations[{i}] is not a COCO detection target; {hint}")
        for j, obj in enumerate(objects):
            if not isinstance(obj, Mapping) or not {"bbox", "category_id", "area"} <= set(obj):
                raise InvalidInputError(f"annotations[{i}]['annotations'][{j}] needs 'bbox', 'category_id' and "
                                        f"'area'; {hint}")
            if "keypoints" in obj:
                raise UnsupportedOptionError("keypoints in annotations are not supported (drop them)")
            if np.asarray(obj["bbox"]).shape != (4,):
                raise InvalidInputError(f"annotations[{i}]['annotations'][{j}]['bbox'] must be [x, y, width, height]")
    return list(annotations)


def coco_target(target: Mapping, height: int, width: int) -> dict[str, Any]:
    """A COCO detection target -> DETR's: crowd objects dropped, boxes as clipped corners, empty
    boxes dropped, with ``image_id``, ``class_labels``, ``boxes``, ``area``, ``iscrowd``, ``orig_size``."""
    objects = [o for o in target["annotations"] if o.get("iscrowd", 0) == 0]
    classes = np.asarray([o["category_id"] for o in objects], dtype=np.int64)
    area = np.asarray([o["area"] for o in objects], dtype=np.float32)
    crowd = np.asarray([o.get("iscrowd", 0) for o in objects], dtype=np.int64)
    boxes = np.asarray([o["bbox"] for o in objects], dtype=np.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    boxes[:, 0::2] = boxes[:, 0::2].clip(min=0, max=width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(min=0, max=height)
    keep = (boxes[:, 3] > boxes[:, 1]) & (boxes[:, 2] > boxes[:, 0])
    return {"image_id": np.asarray([target["image_id"]], dtype=np.int64), "class_labels": classes[keep],
            "boxes": boxes[keep], "area": area[keep], "iscrowd": crowd[keep],
            "orig_size": np.asarray([int(height), int(width)], dtype=np.int64)}


def _resized_target(target: dict, old: tuple[int, int], new: tuple[int, int]) -> dict:
    rh, rw = float(new[0]) / float(old[0]), float(new[1]) / float(old[1])
    out: dict[str, Any] = {"size": tuple(new)}
    for key, value in target.items():
        if key == "boxes":
            value = value * np.asarray([rw, rh, rw, rh], dtype=np.float32)
        elif key == "area":
            value = value * (rw * rh)
        if key != "size":
            out[key] = value
    return out


def _relative_boxes(target: dict, hw: tuple[int, int]) -> dict:
    """Corner boxes in pixels -> (center_x, center_y, width, height) over the picture's size."""
    out = dict(target)
    b = target["boxes"]
    centers = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]],
                       axis=-1)
    out["boxes"] = centers / np.asarray([hw[1], hw[0], hw[1], hw[0]], dtype=np.float32)
    return out


def _padded_target(target: dict, old: tuple[int, int], new: tuple[int, int], rescale_boxes: bool) -> dict:
    out: dict[str, Any] = {"size": tuple(new)}
    for key, value in target.items():
        if key == "boxes" and rescale_boxes:   # relative boxes: now relative to the padded picture
            scale = np.asarray([old[1] / new[1], old[0] / new[0], old[1] / new[1], old[0] / new[0]])
            value = (value.astype(np.float64) * scale).astype(np.float32)
        if key != "size":
            out[key] = value
    return out


# --- the processors -----------------------------------------------------------------------------
class _DetectionImageProcessor(BaseImageProcessor):
    """What DETR's and YOLOS's processors share: resize (shortest edge 800, longest 1333,
    bilinear), rescale, normalize (ImageNet), pad with a pixel mask; COCO detection annotations ->
    ``labels`` (see the module doc); boxes post-processed."""

    model_input_names: ClassVar[list[str]] = ["pixel_values", "pixel_mask"]
    config_keys = (*BaseImageProcessor.config_keys, "do_pad", "pad_size", "do_convert_annotations", "format")
    call_keys = ("annotations", "return_segmentation_masks", "masks_path")
    do_resize = True
    size = {"shortest_edge": 800, "longest_edge": 1333}
    resample = 2
    do_rescale = True
    do_normalize = True
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    default_to_square = False
    do_pad: Any = True
    pad_size: Any = None
    do_convert_annotations: Any = None
    format: Any = "coco_detection"

    def __init__(self, **kwargs: Any) -> None:
        if "pad_and_return_pixel_mask" in kwargs:   # the older name of do_pad
            kwargs.setdefault("do_pad", kwargs.pop("pad_and_return_pixel_mask"))
        size = kwargs.get("size")
        max_size = kwargs.pop("max_size", None) if size is not None else None
        if isinstance(size, (int, np.integer)) and not isinstance(size, bool):   # older configs: size + max_size
            kwargs["size"] = {"shortest_edge": int(size), "longest_edge": 1333 if max_size is None else max_size}
        if kwargs.get("do_convert_annotations") is None:   # as the reference: follows do_normalize
            normalize = kwargs.get("do_normalize")
            kwargs["do_convert_annotations"] = type(self).do_normalize if normalize is None else bool(normalize)
        super().__init__(**kwargs)

    def _standardize(self, options: dict[str, Any]) -> dict[str, Any]:
        options = super()._standardize(options)
        pad = options.get("pad_size")
        if pad is not None:
            options["pad_size"] = size_dict(pad, name="pad_size")
            if set(options["pad_size"]) != {"height", "width"}:
                raise ConfigError(f"pad_size must be {{'height': h, 'width': w}}, got {pad!r}")
        fmt = getattr(options.get("format"), "value", options.get("format"))
        if fmt is not None and fmt not in _FORMATS:
            raise ConfigError(f"format must be one of {_FORMATS}, got {fmt!r}")
        options["format"] = fmt
        return options

    def resized_size(self, hw: tuple[int, int], size: dict[str, int]) -> tuple[int, int]:
        """The (height, width) ``size`` gives a picture of ``hw``."""
        if set(size) == {"shortest_edge", "longest_edge"}:
            return detr_resize_size(hw, size["shortest_edge"], size["longest_edge"])
        if set(size) == {"max_height", "max_width"}:
            scale = min(size["max_height"] / hw[0], size["max_width"] / hw[1])
            return int(hw[0] * scale), int(hw[1] * scale)
        if set(size) == {"height", "width"}:
            return size["height"], size["width"]
        raise InvalidInputError(f"{type(self).__name__}: size {size} needs keys shortest_edge and longest_edge, "
                                "height and width, or max_height and max_width")

    def preprocess(self, images: Any, annotations: Any = None, *, return_tensors: str | None = None,
                   **kwargs: Any) -> BatchFeature:
        """``images`` (see :meth:`BaseImageProcessor.preprocess`) and optional COCO detection
        ``annotations`` (one per picture) -> ``pixel_values``, ``pixel_mask`` (with ``do_pad``) and
        ``labels``. Keyword arguments override the config keys for this call."""
        unknown = sorted(set(kwargs) - set(self.config_keys) - set(self.call_keys))
        if unknown:
            raise InvalidInputError(f"{type(self).__name__}() got unexpected keyword arguments {unknown}; "
                                    f"accepted: {sorted(set(self.config_keys) | set(self.call_keys))}")
        if kwargs.get("return_segmentation_masks") or kwargs.get("masks_path") is not None:
            raise UnsupportedOptionError("segmentation masks (return_segmentation_masks, masks_path) are not "
                                         "supported: they need COCO polygons / panoptic PNGs; use boxes")
        merged = {k: kwargs[k] if kwargs.get(k) is not None else getattr(self, k) for k in self.config_keys}
        opts = self._standardize(merged)
        self._validate(opts)
        pictures = [self._to_chw(image, bool(opts["do_convert_rgb"]), i) for i, image in enumerate(_flatten(images))]
        targets = None
        if annotations is not None:
            found = _check_annotations(annotations, len(pictures), opts["format"])
            targets = [coco_target(t, *p.shape[-2:]) for t, p in zip(found, pictures)]
        done, finished_targets = [], []
        for i, picture in enumerate(pictures):
            target = targets[i] if targets is not None else None
            if opts["do_resize"]:
                new = self.resized_size(picture.shape[-2:], opts["size"])
                if min(new) < 1:
                    raise InvalidInputError(f"image {i} of {picture.shape[-2]}x{picture.shape[-1]} would be resized "
                                            f"to {new[0]}x{new[1]}; it is too thin for size {opts['size']}")
                resized = resize(picture, new[0], new[1], opts["resample"])
                if target is not None:
                    target = _resized_target(target, picture.shape[-2:], resized.shape[-2:])
                picture = resized
            if not opts["do_pad"]:
                picture = self._finish([picture], opts, "np")["pixel_values"][0]
            if target is not None and opts["do_convert_annotations"]:
                target = _relative_boxes(target, picture.shape[-2:])
            done.append(picture)
            finished_targets.append(target)
        masks = None
        if opts["do_pad"]:   # rescaled and normalized straight into the padded batch
            size = padded_size(done, opts["pad_size"])
            finished_targets = [t if t is None or p.shape[-2:] == size else
                                _padded_target(t, p.shape[-2:], size, bool(opts["do_convert_annotations"]))
                                for p, t in zip(done, finished_targets)]
            done, masks = pad_batch(done, opts, size)
        return self._batch(done, masks, finished_targets if targets is not None else None, return_tensors)

    @staticmethod
    def _batch(pictures: Any, masks: Any, targets: list | None, return_tensors: Any) -> BatchFeature:
        import torch

        kind = getattr(return_tensors, "value", return_tensors)
        if kind not in (None, "pt", "np"):
            raise UnsupportedOptionError(
                f"return_tensors={return_tensors!r}: only 'pt' (PyTorch), 'np' (NumPy) or None are supported")
        if kind is not None and len({p.shape for p in pictures}) > 1:
            raise InvalidInputError(
                f"the processed images have different shapes ({sorted({p.shape for p in pictures})}), so they cannot "
                "be one batch: pad them (do_pad=True) or pass return_tensors=None")
        out = BatchFeature()
        if masks is not None:   # padded: already one batch tensor
            out["pixel_mask"] = list(masks.numpy()) if kind is None else masks.numpy()
            out["pixel_values"] = list(pictures.numpy()) if kind is None else pictures.numpy()
        else:
            out["pixel_values"] = pictures if kind is None else np.stack(pictures)
        if targets is not None:
            out["labels"] = [BatchFeature({k: np.asarray(v, dtype=np.int64) if k == "size" and kind else v
                                           for k, v in t.items()}) for t in targets]
        if kind == "pt":
            for key in ("pixel_mask", "pixel_values"):
                if key in out:
                    out[key] = torch.from_numpy(np.ascontiguousarray(out[key]))
            for t in out.get("labels", []):
                for key in list(t):
                    t[key] = torch.from_numpy(np.ascontiguousarray(t[key]))
        return out

    # --- post-processing ------------------------------------------------------------------------
    def post_process_object_detection(self, outputs: Any, threshold: float = 0.5,
                                      target_sizes: Any = None) -> list[dict[str, Any]]:
        """See :func:`post_process_object_detection`."""
        return post_process_object_detection(outputs, threshold, target_sizes)


class DetrImageProcessor(DetrSegmentationPostProcessing, _DetectionImageProcessor):
    """DETR's: the shared detection processing (boxes) and DetrForSegmentation's semantic, instance
    and panoptic post-processing."""


class YolosImageProcessor(_DetectionImageProcessor):
    """YOLOS's: DETR's processor with both resized sides rounded down to a multiple of 16."""

    def resized_size(self, hw: tuple[int, int], size: dict[str, int]) -> tuple[int, int]:
        if set(size) == {"shortest_edge", "longest_edge"}:
            return yolos_resize_size(hw, size["shortest_edge"], size["longest_edge"])
        return super().resized_size(hw, size)


def post_process_object_detection(outputs: Any, threshold: float = 0.5, target_sizes: Any = None) -> list[dict]:
    """A detector's output (``logits``, ``pred_boxes``) -> per image ``{"scores", "labels",
    "boxes"}`` of the queries whose best real class (softmax; "no object" left out) scores above
    ``threshold``; boxes as (x0, y0, x1, y1), in pixels of ``target_sizes`` ((B, 2) tensor or
    list of (height, width)), else relative."""
    import torch

    from ..layers.detection import center_to_corners

    logits = outputs["logits"] if isinstance(outputs, Mapping) else outputs.logits
    boxes = outputs["pred_boxes"] if isinstance(outputs, Mapping) else outputs.pred_boxes
    if target_sizes is not None and len(target_sizes) != len(logits):
        raise InvalidInputError(f"got {len(target_sizes)} target sizes for a batch of {len(logits)} images; one "
                                "(height, width) each")
    scores, labels = logits.softmax(-1)[..., :-1].max(-1)
    boxes = center_to_corners(boxes)
    if target_sizes is not None:
        if isinstance(target_sizes, (list, tuple)):
            heights = torch.tensor([float(s[0]) for s in target_sizes])
            widths = torch.tensor([float(s[1]) for s in target_sizes])
        else:
            heights, widths = torch.as_tensor(target_sizes).unbind(1)
        scale = torch.stack([widths, heights, widths, heights], dim=1).to(boxes.device)
        boxes = boxes * scale[:, None, :]
    results = []
    for s, lab, b in zip(scores, labels, boxes):
        keep = s > threshold
        results.append({"scores": s[keep], "labels": lab[keep], "boxes": b[keep]})
    return results
