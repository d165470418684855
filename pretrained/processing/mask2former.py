"""Mask2Former's image processor: pictures (and optionally segmentation maps) -> ``pixel_values``
+ ``pixel_mask`` (+ ``mask_labels`` / ``class_labels`` for training), and the model's outputs ->
semantic maps, instances or panoptic segments, step for step as the reference's
``Mask2FormerImageProcessorPil``.

Preprocessing: resize through Pillow (bilinear) so the shorter side is ``shortest_edge`` unless the
longer would pass ``longest_edge`` (then the longer side is that), or to ``height`` x ``width``, or
within ``max_height`` x ``max_width``; then both sides rounded *up* to a multiple of
``size_divisor`` (the picture is stretched to it, as the reference does); rescale, normalise; pad
every picture at the bottom and right to the batch's largest (or ``pad_size``) with zeros;
``pixel_mask`` is 1 over the picture, 0 over the padding. A segmentation map is resized the same
way with nearest-neighbour sampling and becomes one binary mask per label present (``ignore_index``
left out; ``do_reduce_labels``: 0 becomes ``ignore_index``, the rest minus 1;
``instance_id_to_semantic_id`` maps instance ids to classes), padded with ``ignore_index``.

Post-processing (all three resize the mask logits to 384 x 384 first, as the reference does):

- :meth:`~Mask2FormerImageProcessor.post_process_semantic_segmentation`: per pixel, the class
  maximising sum over queries of p(class) * sigmoid(mask);
- :meth:`~Mask2FormerImageProcessor.post_process_instance_segmentation`: the top ``num_queries``
  (query, class) pairs; each mask is logit > 0, scored p(class) * its mean mask probability; those
  scoring >= ``threshold`` are painted in order (ids from 0, background -1);
- :meth:`~Mask2FormerImageProcessor.post_process_panoptic_segmentation`: queries whose best class
  is not "no object" and scores > ``threshold``; each pixel goes to the query with the highest
  score-weighted probability; a segment is kept when it holds more than
  ``overlap_mask_area_threshold`` of its query's own mask (probability >= ``mask_threshold``);
  classes in ``label_ids_to_fuse`` become one segment each (ids from 1, background -1 when
  nothing is found).

Example::

    >>> import numpy as np
    >>> proc = Mask2FormerImageProcessor(size={"shortest_edge": 32, "longest_edge": 64})
    >>> batch = proc([np.zeros((40, 30, 3), np.uint8), np.zeros((20, 50, 3), np.uint8)], return_tensors="pt")
    >>> batch["pixel_values"].shape, batch["pixel_mask"][1].sum().item()
    (torch.Size([2, 3, 64, 64]), 2048)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from .base import BatchFeature
from ..errors import InvalidInputError, UnsupportedOptionError
from ..vision.io import _is_pil, _is_torch
from .image import (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, BaseImageProcessor, _flatten, pad_batch,
                         padded_size, resize, size_with_aspect_ratio)

__all__ = ["Mask2FormerImageProcessor", "size_with_aspect_ratio", "SemanticSegmentationOutput"]

_POST_SIZE = (384, 384)   # the reference resizes mask logits to this before any post-processing


def _max_within(hw: tuple[int, int], max_height: int, max_width: int) -> tuple[int, int]:
    """The largest (height, width) with the picture's aspect ratio within the bounds."""
    height, width = hw
    scale = min(max_height / height, max_width / width)
    return max(int(height * scale), 1), max(int(width * scale), 1)


def _segmentation_map(value: Any, index: int) -> np.ndarray:
    """One segmentation map -> (H, W) integer labels."""
    if _is_pil(value):
        value = np.array(value)
    elif _is_torch(value):
        value = value.detach().cpu().numpy()
    value = np.asarray(value)
    if value.ndim == 3 and value.shape[0] == 1:
        value = value[0]
    if value.ndim != 2 or value.dtype.kind not in "uib" or 0 in value.shape:
        raise InvalidInputError(
            f"segmentation map {index} has shape {value.shape} and dtype {value.dtype}: a segmentation map is "
            "(height, width) of integer labels (a PIL 'L'/'P' image, or an integer array)")
    if value.size and (value.min() < 0 or value.max() > 255):
        raise InvalidInputError(f"segmentation map {index} has labels in [{value.min()}, {value.max()}]; "
                                "the reference resizes maps as 8-bit images, so labels must be in [0, 255]")
    return value.astype(np.uint8)


def binary_masks(segmentation: np.ndarray, instance_id_to_semantic_id: Mapping[int, int] | None,
                 ignore_index: int | None, do_reduce_labels: bool) -> tuple[np.ndarray, np.ndarray]:
    """One (H, W) label map -> ((n, H, W) float32 masks, (n,) int64 classes), one per label present
    in ascending order, ``ignore_index`` left out."""
    if do_reduce_labels:
        segmentation = np.where(segmentation == 0, ignore_index, segmentation.astype(np.int64) - 1)
    labels = np.unique(segmentation)
    if ignore_index is not None:
        labels = labels[labels != ignore_index]
    masks = np.stack([segmentation == i for i in labels]) if len(labels) else np.zeros((0, *segmentation.shape))
    if instance_id_to_semantic_id is not None:
        classes = np.zeros(len(labels), dtype=np.int64)
        for i, label in enumerate(labels):
            key = int(label) + 1 if do_reduce_labels else int(label)
            if key not in instance_id_to_semantic_id:
                raise InvalidInputError(f"instance id {key} is in the segmentation map but not in "
                                        "instance_id_to_semantic_id")
            semantic = instance_id_to_semantic_id[key]
            classes[i] = semantic - 1 if do_reduce_labels else semantic
    else:
        classes = labels.astype(np.int64)
    return masks.astype(np.float32), classes


class SemanticSegmentationOutput(dict):
    """``segmentation`` (H, W) class ids and ``segmentation_scores`` (num_labels, H, W), by key or
    attribute."""

    def __init__(self, segmentation: Any, segmentation_scores: Any) -> None:
        super().__init__(segmentation=segmentation, segmentation_scores=segmentation_scores)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Mask2FormerImageProcessor(BaseImageProcessor):
    """See the module docstring. Defaults are the reference's (COCO / ADE20k checkpoints): shortest
    edge 800, longest 1333, bilinear, ImageNet mean/std, ``size_divisor`` 32.

    ``__call__(images, segmentation_maps=None, instance_id_to_semantic_id=None, return_tensors=None,
    **overrides)``."""

    model_input_names: ClassVar[list[str]] = ["pixel_values", "pixel_mask"]
    config_keys = (*BaseImageProcessor.config_keys, "size_divisor", "ignore_index", "do_reduce_labels",
                   "num_labels", "pad_size")
    do_resize = True
    size = {"shortest_edge": 800, "longest_edge": 1333}
    resample = 2
    do_rescale = True
    do_normalize = True
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    default_to_square = False
    size_divisor: Any = 32
    ignore_index: Any = None
    do_reduce_labels: Any = False
    num_labels: Any = None
    pad_size: Any = None

    def __init__(self, **kwargs: Any) -> None:
        max_size = kwargs.pop("max_size", None)   # the reference's old spelling of longest_edge
        if max_size is not None:
            size = kwargs.get("size")
            if size is None:
                kwargs["size"] = {**type(self).size, "longest_edge": max_size}
            elif isinstance(size, int) and not isinstance(size, bool):
                kwargs["size"] = {"shortest_edge": size, "longest_edge": max_size}
        super().__init__(**kwargs)

    def _standardize(self, options: dict[str, Any]) -> dict[str, Any]:
        options = super()._standardize(options)
        pad = options.get("pad_size")
        if pad is not None and (not isinstance(pad, Mapping) or set(pad) != {"height", "width"}):
            raise InvalidInputError(f"pad_size must be {{'height': h, 'width': w}}, got {pad!r}")
        divisor = options.get("size_divisor")
        if divisor is not None and (isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 0):
            raise InvalidInputError(f"size_divisor must be a non-negative int, got {divisor!r}")
        return options

    # --- preprocessing ----------------------------------------------------------------------------
    def target_size(self, hw: tuple[int, int], size: dict[str, int], size_divisor: int | None) -> tuple[int, int]:
        """The (height, width) a picture of ``hw`` is resized to."""
        if "shortest_edge" in size and "longest_edge" in size:
            new = size_with_aspect_ratio(hw, size["shortest_edge"], size["longest_edge"])
        elif "max_height" in size:
            new = _max_within(hw, size["max_height"], size["max_width"])
        elif "height" in size:
            new = (size["height"], size["width"])
        else:
            raise UnsupportedOptionError(
                f"Mask2FormerImageProcessor: size={size} is not one the reference takes: use shortest_edge with "
                "longest_edge, height with width, or max_height with max_width")
        if size_divisor:
            new = tuple(int(math.ceil(s / size_divisor) * size_divisor) for s in new)
        return new

    def __call__(self, images: Any, segmentation_maps: Any = None, instance_id_to_semantic_id: Any = None,
                 **kwargs: Any) -> BatchFeature:
        return self.preprocess(images, segmentation_maps, instance_id_to_semantic_id, **kwargs)

    def preprocess(self, images: Any, segmentation_maps: Any = None, instance_id_to_semantic_id: Any = None, *,
                   return_tensors: str | None = None, **kwargs: Any) -> BatchFeature:
        """Pictures (one or a list) -> ``pixel_values`` (B, 3, H, W) and ``pixel_mask`` (B, H, W);
        with ``segmentation_maps`` (one per picture) also ``mask_labels`` (a list of (n_i, H, W)
        float masks) and ``class_labels`` (a list of (n_i,) ints). ``return_tensors``: "pt", "np"
        or None (lists of arrays)."""
        unknown = sorted(set(kwargs) - set(self.config_keys))
        if unknown:
            raise InvalidInputError(f"Mask2FormerImageProcessor() got unexpected keyword arguments {unknown}; "
                                    f"accepted: {sorted(self.config_keys)}")
        kind = getattr(return_tensors, "value", return_tensors)
        if kind not in (None, "pt", "np"):
            raise UnsupportedOptionError(
                f"return_tensors={return_tensors!r}: only 'pt' (PyTorch), 'np' (NumPy) or None are supported")
        opts = self._standardize({k: kwargs[k] if kwargs.get(k) is not None else getattr(self, k)
                                  for k in self.config_keys})
        self._validate(opts)
        if opts["do_reduce_labels"] and opts["ignore_index"] is None:
            raise InvalidInputError("do_reduce_labels=True needs ignore_index= (the label background 0 becomes)")
        pictures = [self._to_chw(image, bool(opts["do_convert_rgb"]), i) for i, image in enumerate(_flatten(images))]
        maps = None
        if segmentation_maps is not None:
            raw = list(segmentation_maps) if isinstance(segmentation_maps, (list, tuple)) else [segmentation_maps]
            maps = [_segmentation_map(m, i) for i, m in enumerate(raw)]
            if len(maps) != len(pictures):
                raise InvalidInputError(f"got {len(pictures)} images but {len(maps)} segmentation maps: "
                                        "give one map per image")
        for i, p in enumerate(pictures):
            for key in ("image_mean", "image_std"):
                stats = opts[key]
                if opts["do_normalize"] and isinstance(stats, tuple) and len(stats) != p.shape[0]:
                    raise InvalidInputError(f"image {i} has {p.shape[0]} channel(s) but {key} has {len(stats)} "
                                            "values: convert it to RGB first (do_convert_rgb=True)")
        if opts["do_resize"]:
            sizes = [self.target_size(p.shape[-2:], opts["size"], opts["size_divisor"]) for p in pictures]
            pictures = [resize(p, h, w, opts["resample"]) for p, (h, w) in zip(pictures, sizes)]
            if maps is not None:
                maps = [resize(m[None], h, w, 0)[0] for m, (h, w) in zip(maps, sizes)]
        padded = padded_size(pictures, opts["pad_size"])
        return self._pad_and_pack(pictures, maps, instance_id_to_semantic_id, padded, opts, kind)

    def _pad_and_pack(self, pictures: list[np.ndarray], maps: list[np.ndarray] | None, id_map: Any,
                      padded: tuple[int, int], opts: dict[str, Any], kind: str | None) -> BatchFeature:
        import torch

        values, pixel_mask = pad_batch(pictures, opts, padded)
        out = BatchFeature()
        if kind == "pt":
            out["pixel_values"], out["pixel_mask"] = values, pixel_mask
        elif kind == "np":
            out["pixel_values"], out["pixel_mask"] = values.numpy(), pixel_mask.numpy()
        else:
            out["pixel_values"], out["pixel_mask"] = list(values.numpy()), list(pixel_mask.numpy())
        if maps is not None:
            fill = opts["ignore_index"] if opts["ignore_index"] is not None else 0
            mask_labels, class_labels = [], []
            for i, seg in enumerate(maps):
                ids = id_map[i] if isinstance(id_map, (list, tuple)) else id_map
                masks, classes = binary_masks(seg, ids, opts["ignore_index"], bool(opts["do_reduce_labels"]))
                full = np.full((masks.shape[0], *padded), fill, dtype=np.float32)
                full[:, :masks.shape[1], :masks.shape[2]] = masks
                mask_labels.append(torch.from_numpy(full) if kind == "pt" else full)
                class_labels.append(torch.from_numpy(classes) if kind == "pt" else classes)
            out["mask_labels"], out["class_labels"] = mask_labels, class_labels
        return out

    # --- post-processing --------------------------------------------------------------------------
    @staticmethod
    def _logits(outputs: Any):
        get = outputs.get if isinstance(outputs, Mapping) else lambda k: getattr(outputs, k, None)
        classes, masks = get("class_queries_logits"), get("masks_queries_logits")
        if classes is None or masks is None:
            raise InvalidInputError("post-processing needs the outputs of Mask2FormerForUniversalSegmentation "
                                    "(class_queries_logits and masks_queries_logits)")
        return classes, masks

    @staticmethod
    def _check_sizes(target_sizes: Any, batch: int) -> None:
        if target_sizes is not None and len(target_sizes) != batch:
            raise InvalidInputError(f"got {len(target_sizes)} target_sizes for a batch of {batch}: give one "
                                    "(height, width) per image")

    def post_process_semantic_segmentation(self, outputs: Any, target_sizes: list[tuple[int, int]] | None = None,
                                           return_segmentation_scores: bool = False) -> list:
        """(H, W) class ids per image (``target_sizes``: resized there, else 384 x 384); with
        ``return_segmentation_scores`` a :class:`SemanticSegmentationOutput` per image."""
        import torch
        from torch.nn import functional as F

        classes, masks = self._logits(outputs)
        self._check_sizes(target_sizes, classes.shape[0])
        masks = F.interpolate(masks, size=_POST_SIZE, mode="bilinear", align_corners=False)
        scores = torch.einsum("bqc,bqhw->bchw", classes.softmax(dim=-1)[..., :-1], masks.sigmoid())
        results = []
        for i in range(classes.shape[0]):
            item = scores[i]
            if target_sizes is not None:
                item = F.interpolate(item[None], size=tuple(target_sizes[i]), mode="bilinear", align_corners=False)[0]
            results.append(SemanticSegmentationOutput(item.argmax(dim=0), item))
        return results if return_segmentation_scores else [r["segmentation"] for r in results]

    def post_process_instance_segmentation(self, outputs: Any, threshold: float = 0.5, mask_threshold: float = 0.5,
                                           overlap_mask_area_threshold: float = 0.8,
                                           target_sizes: list[tuple[int, int]] | None = None,
                                           return_coco_annotation: bool = False,
                                           return_binary_maps: bool = False) -> list[dict]:
        """Per image ``{"segmentation", "segments_info"}``: a float (H, W) map of segment ids (-1
        background; ``return_coco_annotation``: run-length encodings per id; ``return_binary_maps``:
        the (n, H, W) masks), and per segment ``id``, ``label_id``, ``was_fused`` (False), ``score``
        (6 decimals). As in the reference, masks are binarised at logit 0: ``mask_threshold`` and
        ``overlap_mask_area_threshold`` are accepted (the pipeline passes them) and do not apply."""
        import torch
        from torch.nn import functional as F

        if return_coco_annotation and return_binary_maps:
            raise InvalidInputError("return_coco_annotation and return_binary_maps cannot both be True")
        classes, masks = self._logits(outputs)
        self._check_sizes(target_sizes, classes.shape[0])
        masks = F.interpolate(masks, size=_POST_SIZE, mode="bilinear", align_corners=False)
        num_queries, num_classes = classes.shape[-2], classes.shape[-1] - 1
        labels = torch.arange(num_classes, device=masks.device).repeat(num_queries)
        results = []
        for i in range(classes.shape[0]):
            probs = classes[i].softmax(dim=-1)[:, :-1]
            # sorted=False as the reference: its order (torch's) decides the segment ids
            top_scores, top = probs.flatten(0, 1).topk(num_queries, sorted=False)
            top_labels = labels[top]
            mask_logits = masks[i][torch.div(top, num_classes, rounding_mode="floor")]
            binary = (mask_logits > 0).float()
            mask_scores = (mask_logits.sigmoid().flatten(1) * binary.flatten(1)).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
            scores = top_scores * mask_scores
            size = tuple(target_sizes[i]) if target_sizes is not None else _POST_SIZE
            segmentation = torch.zeros(size) - 1
            if target_sizes is not None:
                binary = F.interpolate(binary[None], size=size, mode="nearest")[0]
            instances, segments = [], []
            for j in range(num_queries):
                score = scores[j].item()
                if score >= threshold and not torch.all(binary[j] == 0):
                    segmentation[binary[j] == 1] = len(segments)
                    segments.append({"id": len(segments), "label_id": top_labels[j].item(), "was_fused": False,
                                     "score": round(score, 6)})
                    instances.append(binary[j])
            if return_coco_annotation:
                segmentation = [mask_to_rle(segmentation == v) for v in torch.unique(segmentation)]
            if return_binary_maps and instances:
                segmentation = torch.stack(instances)
            results.append({"segmentation": segmentation, "segments_info": segments})
        return results

    def post_process_panoptic_segmentation(self, outputs: Any, threshold: float = 0.5, mask_threshold: float = 0.5,
                                           overlap_mask_area_threshold: float = 0.8,
                                           label_ids_to_fuse: set[int] | None = None,
                                           target_sizes: list[tuple[int, int]] | None = None) -> list[dict]:
        """Per image ``{"segmentation", "segments_info"}``: an int32 (H, W) map of segment ids (from
        1; a float map of -1 when no segment is found), and per segment ``id``, ``label_id``,
        ``was_fused`` (its class is in ``label_ids_to_fuse``: all its instances are one segment),
        ``score`` (6 decimals)."""
        from torch.nn import functional as F

        label_ids_to_fuse = set() if label_ids_to_fuse is None else set(label_ids_to_fuse)
        classes, masks = self._logits(outputs)
        self._check_sizes(target_sizes, classes.shape[0])
        masks = F.interpolate(masks, size=_POST_SIZE, mode="bilinear", align_corners=False)
        num_labels = classes.shape[-1] - 1
        probs = masks.sigmoid()
        scores, labels = F.softmax(classes, dim=-1).max(-1)
        results = []
        for i in range(classes.shape[0]):
            keep = labels[i].ne(num_labels) & (scores[i] > threshold)
            size = tuple(target_sizes[i]) if target_sizes is not None else None
            results.append(_panoptic(probs[i][keep], scores[i][keep], labels[i][keep], mask_threshold,
                                     overlap_mask_area_threshold, label_ids_to_fuse, size))
        return results


def _panoptic(mask_probs, scores, labels, mask_threshold: float, overlap: float, fuse: set[int],
              target_size: tuple[int, int] | None) -> dict:
    """One image's panoptic segments from its kept queries (see the module docstring)."""
    import torch
    from torch.nn import functional as F

    height, width = target_size if target_size is not None else mask_probs.shape[1:]
    if mask_probs.shape[0] == 0:
        return {"segmentation": torch.zeros((height, width)) - 1, "segments_info": []}
    segmentation = torch.zeros((height, width), dtype=torch.int32, device=mask_probs.device)
    if target_size is not None:
        mask_probs = F.interpolate(mask_probs[None], size=target_size, mode="bilinear", align_corners=False)[0]
    # weigh by the query's score; the own-mask areas below are of these weighted probabilities, as the reference
    mask_probs = mask_probs * scores.view(-1, 1, 1)
    owner = mask_probs.argmax(0)
    segments, fused_ids, current_id = [], {}, 0
    for k in range(labels.shape[0]):
        label = labels[k].item()
        mask_k = owner == k
        area, own_area = mask_k.sum(), (mask_probs[k] >= mask_threshold).sum()
        if not (area > 0 and own_area > 0 and (area / own_area).item() > overlap):
            continue
        # one counter, as the reference: after a fused class reappears, the next new segment counts on
        # from that class's id (so ids can repeat; kept for parity)
        current_id = fused_ids[label] if label in fused_ids else current_id + 1
        segmentation[mask_k] = current_id
        segments.append({"id": current_id, "label_id": label, "was_fused": label in fuse,
                         "score": round(scores[k].item(), 6)})
        if label in fuse:
            fused_ids[label] = current_id
    return {"segmentation": segmentation, "segments_info": segments}


def mask_to_rle(mask: Any) -> list[int]:
    """COCO run-length encoding of a binary (H, W) mask, row-major: start/length pairs (1-based
    starts) of its runs of ones."""
    pixels = np.concatenate([[0], np.asarray(mask.cpu() if _is_torch(mask) else mask).astype(np.int64).ravel(), [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return list(runs)
