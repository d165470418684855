"""Object detection ("object-detection"): labelled boxes in a picture.

As the reference: each picture goes through the model's image processor (resized, normalised,
padded with its pixel mask), the detector (DETR, YOLOS) scores every query, and the queries whose
best real class scores above ``threshold`` (0.5 by default; softmax, "no object" left out) come
back as ``{"score", "label", "box": {"xmin", "ymin", "xmax", "ymax"}}``, the box in pixels of the
original picture, truncated to ints. A picture is a file path, the bytes of a file, a PIL image or
an array; a list gives one list per picture. With ``batch_size`` pictures that the processor
brings to the same size run together; others run on their own (a padded batch would move the
numbers: the convolutions see the padding), so the answers do not depend on the batch.

Example::

    >>> from pretrained import pipeline                                      # doctest: +SKIP
    >>> det = pipeline("object-detection", model="path/to/detr")             # doctest: +SKIP
    >>> det("tests/fixtures/images/chelsea.png", threshold=0.7)              # doctest: +SKIP
    [{'score': 0.98, 'label': 'cat', 'box': {'xmin': 12, 'ymin': 30, 'xmax': 390, 'ymax': 298}}]
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InvalidInputError
from .processor_base import ImagePipeline, unit_interval

__all__ = ["ObjectDetectionPipeline"]


class ObjectDetectionPipeline(ImagePipeline):
    """Boxes, labels and scores from an object-detection model (DETR, YOLOS)."""

    task = "object-detection"
    head = "object-detection"
    model_input_names = ("pixel_values", "pixel_mask")

    def __init__(self, model: torch.nn.Module, tokenizer: Any = None, *, image_processor: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(model, tokenizer, image_processor=image_processor, **kwargs)
        if not hasattr(self.image_processor, "post_process_object_detection"):
            raise InvalidInputError(f"the object-detection pipeline needs a detector's image processor (DETR, YOLOS); "
                                    f"got a {type(self.image_processor).__name__}")

    def _sanitize_parameters(self, *, threshold: float | None = None,
                             timeout: float | None = None) -> tuple[dict, dict, dict]:
        post: dict[str, Any] = {}
        if threshold is not None:
            post["threshold"] = unit_interval("threshold", threshold)
        # timeout: accepted for the familiar call (see ImagePipeline)
        return {}, {}, post

    def preprocess(self, item: Any) -> list[dict[str, torch.Tensor]]:
        from ..vision import load_image

        image = load_image(item)
        inputs = self.image_processor(images=[image], return_tensors="pt")
        feature = {"pixel_values": torch.as_tensor(inputs["pixel_values"]),
                   "target_size": torch.tensor([[image.height, image.width]], dtype=torch.int32)}
        if "pixel_mask" in inputs:
            feature["pixel_mask"] = torch.as_tensor(inputs["pixel_mask"])
        return [feature]

    def _forward_features(self, features: list[dict[str, Any]], batch_size: int,
                          fwd: dict) -> list[dict[str, Any]]:
        """Consecutive pictures of one processed size run ``batch_size`` at a time; a new size
        starts a new batch."""
        results: list[dict[str, Any]] = []
        run: list[dict[str, Any]] = []
        for feature in features:
            if run and feature["pixel_values"].shape != run[0]["pixel_values"].shape:
                results += super()._forward_features(run, batch_size, fwd)
                run = []
            run.append(feature)
        if run:
            results += super()._forward_features(run, batch_size, fwd)
        return results

    def _forward(self, batch: dict[str, torch.Tensor], **fwd: Any) -> dict[str, torch.Tensor]:
        dtype = next(self.model.parameters()).dtype
        kwargs = {"pixel_mask": batch["pixel_mask"]} if "pixel_mask" in batch else {}
        out = self.model(pixel_values=batch["pixel_values"].to(dtype), **kwargs)
        return {"logits": out.logits.float(), "pred_boxes": out.pred_boxes.float()}

    def postprocess(self, output: dict, threshold: float = 0.5) -> list[dict]:
        found = self.image_processor.post_process_object_detection(output, threshold, output["target_size"])[0]
        id2label = self.model.config.id2label
        answers = []
        for score, label, box in zip(found["scores"].tolist(), found["labels"].tolist(), found["boxes"]):
            xmin, ymin, xmax, ymax = box.int().tolist()
            answers.append({"score": score, "label": id2label[label],
                            "box": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}})
        return answers
