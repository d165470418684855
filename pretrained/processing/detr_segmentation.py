"""DETR's segmentation post-processing: the outputs of
:class:`~pretrained.models.detr.DetrForSegmentation` (``logits`` (B, queries, num_labels + 1),
``pred_masks`` (B, queries, h, w) mask logits) -> semantic maps, instances or panoptic segments,
as the reference's ``DetrImageProcessor`` computes them (methods of
:class:`~pretrained.processing.DetrImageProcessor`; YOLOS's processor has none, as the reference's):

- :meth:`~DetrSegmentationPostProcessing.post_process_semantic_segmentation`: per pixel, the class
  maximising sum over queries of p(class) * sigmoid(mask) (the "no object" class left out), resized
  bilinearly to ``target_sizes`` (else at the masks' own size);
- :meth:`~DetrSegmentationPostProcessing.post_process_panoptic_segmentation`: queries whose best
  class is not "no object" and scores > ``threshold``; their mask probabilities resized to
  ``target_sizes`` and weighted by the score; each pixel goes to the strongest query; a segment is
  kept when it holds more than ``overlap_mask_area_threshold`` of its query's own mask
  (probability >= ``mask_threshold``); classes in ``label_ids_to_fuse`` become one segment each
  (ids from 1; a map of -1 when nothing is found) -- Mask2Former's panoptic rule without its
  384 x 384 step (:func:`~pretrained.processing.mask2former._panoptic`, shared);
- :meth:`~DetrSegmentationPostProcessing.post_process_instance_segmentation`: the same with no
  class fused (unlike Mask2Former's top-k instances), ``return_coco_annotation`` gives run-length
  encodings per segment id.

Example::

    >>> import torch
    >>> from pretrained.processing import DetrImageProcessor
    >>> logits = torch.tensor([[[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]]])          # 2 queries, 2 classes
    >>> masks = torch.tensor([[[[5.0, -5.0]], [[-5.0, 5.0]]]])                 # (1, 2, 1, 2)
    >>> out = {"logits": logits, "pred_masks": masks}
    >>> DetrImageProcessor().post_process_semantic_segmentation(out)[0].tolist()
    [[0, 1]]
    >>> DetrImageProcessor().post_process_panoptic_segmentation(out)[0]["segmentation"].tolist()
    [[1, 2]]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidInputError
from .mask2former import SemanticSegmentationOutput, _panoptic, mask_to_rle

__all__ = ["DetrSegmentationPostProcessing"]


def _outputs(outputs: Any):
    get = outputs.get if isinstance(outputs, Mapping) else lambda k: getattr(outputs, k, None)
    logits, masks = get("logits"), get("pred_masks")
    if logits is None or masks is None:
        raise InvalidInputError("DETR's segmentation post-processing needs the outputs of DetrForSegmentation "
                                "(logits and pred_masks); a detector's outputs go to post_process_object_detection")
    return logits, masks


def _check_sizes(target_sizes: Any, batch: int) -> None:
    if target_sizes is not None and len(target_sizes) != batch:
        raise InvalidInputError(f"got {len(target_sizes)} target_sizes for a batch of {batch}: give one "
                                "(height, width) per image")


class DetrSegmentationPostProcessing:
    """The three post-processing methods (see the module doc), mixed into DETR's processor."""

    def post_process_semantic_segmentation(self, outputs: Any, target_sizes: list[tuple[int, int]] | None = None,
                                           return_segmentation_scores: bool = False) -> list:
        """(H, W) class ids per image; with ``return_segmentation_scores`` a
        :class:`~pretrained.processing.mask2former.SemanticSegmentationOutput` per image
        (``segmentation`` and the (num_labels, H, W) ``segmentation_scores``)."""
        import torch
        from torch.nn import functional as F

        logits, masks = _outputs(outputs)
        _check_sizes(target_sizes, logits.shape[0])
        scores = torch.einsum("bqc,bqhw->bchw", logits.softmax(dim=-1)[..., :-1], masks.sigmoid())
        results = []
        for i in range(logits.shape[0]):
            item = scores[i]
            if target_sizes is not None:
                item = F.interpolate(item[None], size=tuple(target_sizes[i]), mode="bilinear", align_corners=False)[0]
            results.append(SemanticSegmentationOutput(item.argmax(dim=0), item))
        return results if return_segmentation_scores else [r["segmentation"] for r in results]

    def _segments(self, outputs: Any, threshold: float, mask_threshold: float, overlap: float, fuse: set[int],
                  target_sizes: Any) -> tuple[list[dict], list[bool]]:
        """Per image the segments, and whether any query passed ``threshold``."""
        from torch.nn import functional as F

        logits, masks = _outputs(outputs)
        _check_sizes(target_sizes, logits.shape[0])
        num_labels = logits.shape[-1] - 1
        probs = masks.sigmoid()
        scores, labels = F.softmax(logits, dim=-1).max(-1)
        results, kept = [], []
        for i in range(logits.shape[0]):
            keep = labels[i].ne(num_labels) & (scores[i] > threshold)
            kept.append(bool(keep.any()))
            size = tuple(target_sizes[i]) if target_sizes is not None else None
            results.append(_panoptic(probs[i][keep], scores[i][keep], labels[i][keep], mask_threshold, overlap,
                                     fuse, size))
        return results, kept

    def post_process_instance_segmentation(self, outputs: Any, threshold: float = 0.5, mask_threshold: float = 0.5,
                                           overlap_mask_area_threshold: float = 0.8,
                                           target_sizes: list[tuple[int, int]] | None = None,
                                           return_coco_annotation: bool = False) -> list[dict]:
        """Per image ``{"segmentation", "segments_info"}``: an int32 (H, W) map of segment ids (from
        1, 0 where no segment; a float map of -1 when no query passes ``threshold``;
        ``return_coco_annotation``: one run-length encoding per id present, 0 included), and per segment ``id``, ``label_id``,
        ``was_fused`` (False), ``score`` (6 decimals)."""
        results, kept = self._segments(outputs, threshold, mask_threshold, overlap_mask_area_threshold, set(),
                                       target_sizes)
        if return_coco_annotation:
            import torch

            for r, any_query in zip(results, kept):
                # as the reference: the -1 map of a picture where no query passed stays; where queries
                # passed but made no segment, the map of zeros is encoded
                if any_query:
                    seg = r["segmentation"]
                    r["segmentation"] = [mask_to_rle(seg == v) for v in torch.unique(seg)]
        return results

    def post_process_panoptic_segmentation(self, outputs: Any, threshold: float = 0.5, mask_threshold: float = 0.5,
                                           overlap_mask_area_threshold: float = 0.8,
                                           label_ids_to_fuse: set[int] | None = None,
                                           target_sizes: list[tuple[int, int]] | None = None) -> list[dict]:
        """Per image ``{"segmentation", "segments_info"}``: an int32 (H, W) map of segment ids (from
        1; a float map of -1 when no segment is found), and per segment ``id``, ``label_id``,
        ``was_fused`` (its class is in ``label_ids_to_fuse``: all its instances are one segment),
        ``score`` (6 decimals)."""
        fuse = set() if label_ids_to_fuse is None else set(label_ids_to_fuse)
        return self._segments(outputs, threshold, mask_threshold, overlap_mask_area_threshold, fuse, target_sizes)[0]
