"""Image classification ("image-classification"): labels and scores for a picture.

As the reference: ``top_k`` labels (5 by default, at most the model's number), best first;
``function_to_apply`` "softmax" (several labels), "sigmoid" (multi-label, or one label) or "none"
(regression). A picture is a file path, the bytes of a file, a PIL image, or an array (HWC or
CHW); a list gives one answer per picture (``batch_size`` at a time). URLs are refused with the
fix (this library does not fetch pictures).

Example::

    >>> from pretrained import pipeline                                        # doctest: +SKIP
    >>> clf = pipeline("image-classification", model="path/to/vit-classifier") # doctest: +SKIP
    >>> clf("tests/fixtures/images/chelsea.png", top_k=3)                      # doctest: +SKIP
    [{'label': 'tabby', 'score': 0.91}, {'label': 'tiger cat', 'score': 0.05}, ...]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InvalidInputError
from .processor_base import ImagePipeline

__all__ = ["ImageClassificationPipeline"]

FUNCTIONS = ("softmax", "sigmoid", "none")


class ImageClassificationPipeline(ImagePipeline):
    """Scores the labels of an image-classification model (ViT, DeiT, ConvNeXt, ResNet, Swin)."""

    task = "image-classification"
    head = "image-classification"
    model_input_names = ("pixel_values",)

    def _sanitize_parameters(self, *, top_k: int | None = None, function_to_apply: str | None = None,
                             timeout: float | None = None) -> tuple[dict, dict, dict]:
        post: dict[str, Any] = {}
        if top_k is not None:
            if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
                raise InvalidInputError(f"top_k must be an integer >= 1, got {top_k!r}")
            post["top_k"] = top_k
        if function_to_apply is not None:
            if str(function_to_apply).lower() not in FUNCTIONS:
                raise InvalidInputError(f"function_to_apply must be one of {FUNCTIONS}, got {function_to_apply!r}")
            post["function_to_apply"] = str(function_to_apply).lower()
        # timeout: accepted for the familiar call (see ImagePipeline)
        return {}, {}, post

    def preprocess(self, item: Any) -> list[dict[str, torch.Tensor]]:
        from ..vision import load_image

        image = item if isinstance(item, (np.ndarray, torch.Tensor)) else load_image(item)
        pixels = self.image_processor(images=image, return_tensors="pt")["pixel_values"]
        return [{"pixel_values": torch.as_tensor(pixels)}]

    def _forward(self, batch: dict[str, torch.Tensor], **fwd: Any) -> dict[str, torch.Tensor]:
        dtype = next(self.model.parameters()).dtype
        return {"logits": self.model(pixel_values=batch["pixel_values"].to(dtype)).logits}

    def postprocess(self, output: dict, top_k: int = 5, function_to_apply: str | None = None) -> list[dict]:
        config = self.model.config
        if function_to_apply is None:
            problem = getattr(config, "problem_type", None)
            if problem == "regression":
                function_to_apply = "none"
            elif problem == "multi_label_classification" or config.num_labels == 1:
                function_to_apply = "sigmoid"
            else:
                function_to_apply = "softmax"
        logits = output["logits"][0].float()
        scores = logits.softmax(-1) if function_to_apply == "softmax" else \
            logits.sigmoid() if function_to_apply == "sigmoid" else logits
        # a stable sort of every label, as the reference (ties keep the label order)
        ranked = sorted(enumerate(scores.tolist()), key=lambda pair: pair[1], reverse=True)
        return [{"label": config.id2label[i], "score": s} for i, s in ranked[:min(top_k, config.num_labels)]]
