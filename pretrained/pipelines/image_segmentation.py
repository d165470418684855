"""Image segmentation ("image-segmentation"): labelled masks for a picture.

As the reference, the answer is one ``{"score", "label", "mask"}`` per segment, ``mask`` a
``PIL.Image`` (mode L, 255 inside the segment, 0 outside) at the picture's own size. Which
segmentation runs is the ``subtask``: "semantic" (one mask per class present, ``score`` None),
"instance" or "panoptic" (one mask per found object or region, with its score). The pipeline
dispatches on what the model's image processor offers, in the reference's order when no subtask
is given: ``post_process_panoptic_segmentation``, then ``post_process_instance_segmentation``,
then ``post_process_semantic_segmentation``. So a model family adds its subtasks by giving its
processor those methods, with the reference's signatures::

    post_process_panoptic_segmentation(outputs, threshold=, mask_threshold=,
                                       overlap_mask_area_threshold=, target_sizes=[(h, w)])
    post_process_instance_segmentation(... the same keywords ...)
        -> [{"segmentation": (h, w) segment ids, "segments_info": [{"id", "label_id", "score"}, ...]}]
    post_process_semantic_segmentation(outputs, target_sizes=[(h, w)]) -> [(h, w) class ids]

``outputs`` is a dict of the model's batch-first tensor outputs for one picture (``logits``;
``class_queries_logits`` / ``masks_queries_logits``...), readable by key and by attribute. A
subtask the processor lacks is refused with :class:`~pretrained.errors.UnsupportedOptionError`,
naming those it has. ``threshold`` (0.9), ``mask_threshold`` (0.5) and
``overlap_mask_area_threshold`` (0.5) go to the instance / panoptic post-processing, as the
reference passes them; the semantic one takes none of them (accepted, as the reference does).

Pictures: a file path, the bytes of a file, a PIL image, an array (HWC or CHW), or a list of those
(``batch_size`` at a time). URLs are refused with the fix (this library does not fetch pictures).

Example::

    >>> from pretrained import pipeline                                             # doctest: +SKIP
    >>> seg = pipeline("image-segmentation", model="path/to/segformer")             # doctest: +SKIP
    >>> [(s["label"], s["mask"].size) for s in seg("tests/fixtures/images/chelsea.png")]  # doctest: +SKIP
    [('background', (451, 300)), ('cat', (451, 300))]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..processing.base import BatchFeature
from ..errors import InvalidInputError, UnsupportedOptionError
from .processor_base import ImagePipeline, unit_interval

__all__ = ["ImageSegmentationPipeline", "SUBTASKS"]

#: subtask -> the image processor method that serves it, in the order tried when none is given
SUBTASKS = {
    "panoptic": "post_process_panoptic_segmentation",
    "instance": "post_process_instance_segmentation",
    "semantic": "post_process_semantic_segmentation",
}


class ImageSegmentationPipeline(ImagePipeline):
    """Masks and labels from a segmentation model (SegFormer; Mask2Former, DETR panoptic through
    their processors' post-processing)."""

    task = "image-segmentation"
    head = None   # several heads serve the task; __init__ checks the model has one
    model_input_names = ("pixel_values", "pixel_mask")

    def __init__(self, model: torch.nn.Module, tokenizer: Any = None, *, image_processor: Any = None,
                 **kwargs: Any) -> None:
        _check_segmentation_model(model)
        super().__init__(model, tokenizer, image_processor=image_processor, **kwargs)

    # --- parameters ---------------------------------------------------------------------------
    def available_subtasks(self) -> list[str]:
        """The subtasks this model's image processor can post-process, in the order tried."""
        return [name for name, method in SUBTASKS.items() if callable(getattr(self.image_processor, method, None))]

    def _subtask_method(self, subtask: str | None) -> tuple[str, Any]:
        for name, method in SUBTASKS.items():
            if subtask in (name, None) and name in self.available_subtasks():
                return name, getattr(self.image_processor, method)
        raise UnsupportedOptionError(
            f"subtask={subtask!r} is not available for {type(self.model).__name__}: its image processor "
            f"({type(self.image_processor).__name__}) post-processes {self.available_subtasks() or 'no subtask'}; "
            f"pass one of those (or no subtask)")

    def _sanitize_parameters(self, *, subtask: str | None = None, threshold: float | None = None,
                             mask_threshold: float | None = None, overlap_mask_area_threshold: float | None = None,
                             timeout: float | None = None) -> tuple[dict, dict, dict]:
        post: dict[str, Any] = {}
        if subtask is not None:
            if subtask not in SUBTASKS:
                raise InvalidInputError(f"subtask must be one of {sorted(SUBTASKS)} (or None), got {subtask!r}")
            self._subtask_method(subtask)   # refused now, before any picture is read
            post["subtask"] = subtask
        for name, value in (("threshold", threshold), ("mask_threshold", mask_threshold),
                            ("overlap_mask_area_threshold", overlap_mask_area_threshold)):
            if value is not None:
                post[name] = unit_interval(name, value)
        # timeout: accepted for the familiar call (see ImagePipeline)
        return {}, {}, post

    # --- running ------------------------------------------------------------------------------
    def preprocess(self, item: Any) -> list[dict[str, Any]]:
        from ..vision import load_image

        image = item if isinstance(item, (np.ndarray, torch.Tensor)) else load_image(item)
        features = self.image_processor(images=image, return_tensors="pt")
        out: dict[str, Any] = {k: torch.as_tensor(features[k]) for k in self.model_input_names if k in features}
        out["target_size"] = _picture_size(image)
        return [out]

    def _forward(self, batch: dict[str, torch.Tensor], **fwd: Any) -> dict[str, torch.Tensor]:
        batch = dict(batch)
        batch["pixel_values"] = batch["pixel_values"].to(self.dtype)
        out = self.model(**batch)
        rows = batch["pixel_values"].shape[0]
        # every batch-first tensor the model gives: what any processor's post-processing reads
        return {k: v for k, v in out.items() if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == rows}

    def postprocess(self, output: dict, subtask: str | None = None, threshold: float = 0.9,
                    mask_threshold: float = 0.5, overlap_mask_area_threshold: float = 0.5) -> list[dict]:
        from ..vision.io import pil

        target = [tuple(output["target_size"])]
        outputs = BatchFeature({k: v for k, v in output.items() if k != "target_size"})
        name, method = self._subtask_method(subtask)
        id2label = self.model.config.id2label
        Image = pil()
        answers = []
        if name == "semantic":
            segmentation = method(outputs, target_sizes=target)[0].numpy()
            for label in np.unique(segmentation):
                mask = ((segmentation == label) * 255).astype(np.uint8)
                answers.append({"score": None, "label": id2label[int(label)], "mask": Image.fromarray(mask)})
            return answers
        result = method(outputs, threshold=threshold, mask_threshold=mask_threshold,
                        overlap_mask_area_threshold=overlap_mask_area_threshold, target_sizes=target)[0]
        segmentation = torch.as_tensor(result["segmentation"])
        for segment in result["segments_info"]:
            mask = ((segmentation == segment["id"]) * 255).numpy().astype(np.uint8)
            answers.append({"score": segment["score"], "label": id2label[int(segment["label_id"])],
                            "mask": Image.fromarray(mask)})
        return answers


def _picture_size(image: Any) -> tuple[int, int]:
    """(height, width) of a PIL image or an HW / HWC / CHW array."""
    if not isinstance(image, (np.ndarray, torch.Tensor)):
        return image.height, image.width
    if image.ndim == 2:
        return int(image.shape[0]), int(image.shape[1])
    from ..vision.io import channel_axis

    array = image if isinstance(image, np.ndarray) else image.detach().cpu().numpy()
    shape = array.shape
    return (int(shape[1]), int(shape[2])) if channel_axis(array) == 0 else (int(shape[0]), int(shape[1]))


def _check_segmentation_model(model: Any) -> None:
    """The model must be one a segmentation head serves (when its type is one pretrained knows)."""
    from .. import auto

    heads = auto.AutoModelForImageSegmentation.heads
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    try:
        classes = auto.model_module(model_type).MODEL_CLASSES
    except Exception:  # a model type pretrained does not know: trust the object
        return
    wanted = [classes[h] for h in heads if h in classes]
    if not any(isinstance(model, c) for c in wanted):
        raise InvalidInputError(
            f"the image-segmentation pipeline needs a segmentation model "
            f"({', '.join(c.__name__ for c in wanted) or 'none exists for ' + repr(model_type)}), got a "
            f"{type(model).__name__}; load one with AutoModelForImageSegmentation.from_pretrained(...)")
