"""Data collators for image models: batch pictures (or the processor's ``pixel_values``) with their
labels.

:class:`DataCollatorForImageClassification` takes an image processor (``ViTImageProcessor``,
``AutoImageProcessor.from_pretrained(...)``) and examples holding one of

* ``image``: a picture in any form the processor reads (a file path, a ``PIL.Image``, an HWC or
  CHW array or tensor); the batch's pictures go through the processor together
  (``return_tensors="pt"``), so they come out resized to its ``size``. The Trainer drops columns
  its model does not take, ``image`` among them: pass
  ``TrainingArguments(remove_unused_columns=False)`` for this form (or preprocess the dataset
  into ``pixel_values`` first).
* ``pixel_values``: one processed picture (C, H, W), e.g.
  ``processor(image)["pixel_values"][0]``, or (1, C, H, W); all of one batch must have one shape
  (they are stacked, never resized here).

and ``label`` / ``labels`` / ``label_ids``: a class id (a ``long`` tensor (B,) comes back), a
class name mapped through ``label2id``, or a multi-label vector of floats (stacked as float).

Example::

    >>> import numpy as np
    >>> from pretrained.vision import ViTImageProcessor
    >>> from pretrained.training import DataCollatorForImageClassification
    >>> collate = DataCollatorForImageClassification(ViTImageProcessor(size={"height": 8, "width": 8}))
    >>> batch = collate([{"image": np.zeros((10, 12, 3), np.uint8), "label": 1},
    ...                  {"image": np.full((5, 7, 3), 255, np.uint8), "label": 0}])
    >>> tuple(batch["pixel_values"].shape), batch["labels"].tolist()
    ((2, 3, 8, 8), [1, 0])
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import InvalidInputError
from .collators import _as_dicts, _rename_labels

__all__ = ["DataCollatorForImageClassification", "DefaultImageCollator"]

INPUT_KEYS = ("pixel_values", "image")


class DataCollatorForImageClassification:
    """Stack ``pixel_values`` (or process ``image``) and the labels of a batch of examples.

    ``image_processor``: what turns ``image`` into ``pixel_values`` (required for that form; a
    batch of ready ``pixel_values`` needs none). ``label2id``: maps string labels to class ids
    (e.g. ``model.config.label2id``)."""

    def __init__(self, image_processor: Any = None, label2id: Mapping[str, int] | None = None) -> None:
        if image_processor is not None and not callable(image_processor):
            raise InvalidInputError(f"image_processor must be an image processor (callable), got "
                                    f"{type(image_processor).__name__}")
        self.image_processor = image_processor
        self.label2id = dict(label2id) if label2id is not None else None

    # --- inputs --------------------------------------------------------------------------------
    @staticmethod
    def _input_key(feats: list[dict[str, Any]]) -> str:
        kinds = [[k for k in INPUT_KEYS if f.get(k) is not None] for f in feats]
        for i, ks in enumerate(kinds):
            if not ks:
                raise InvalidInputError(
                    f"example {i} has none of {list(INPUT_KEYS)} (its keys: {sorted(feats[i])}); give each "
                    "example an 'image' (path, PIL image or array) or its processed 'pixel_values'")
            if len(ks) > 1:
                raise InvalidInputError(f"example {i} has both 'pixel_values' and 'image': give one")
        if len({ks[0] for ks in kinds}) > 1:
            raise InvalidInputError("a batch mixes 'image' and 'pixel_values' examples: use one form for all")
        return kinds[0][0]

    def _stack(self, feats: list[dict[str, Any]]) -> torch.Tensor:
        rows = []
        for i, f in enumerate(feats):
            value = f["pixel_values"]
            try:
                x = value.detach().cpu() if isinstance(value, torch.Tensor) else torch.from_numpy(
                    np.asarray(value, dtype=np.float32))
            except (ValueError, TypeError):
                raise InvalidInputError(f"the pixel_values of example {i} are not an array of numbers") from None
            if x.dim() == 4 and x.shape[0] == 1:
                x = x[0]
            if x.dim() != 3:
                raise InvalidInputError(f"the pixel_values of example {i} have shape {tuple(x.shape)}; each example "
                                        "holds one processed picture (channels, height, width)")
            rows.append(x.to(torch.float32) if not x.is_floating_point() else x)
        shapes = sorted({tuple(r.shape) for r in rows})
        if len(shapes) > 1:
            raise InvalidInputError(f"the pixel_values of one batch have different sizes {shapes}: process them "
                                    "with one size (the image processor's do_resize) before batching")
        return torch.stack(rows)

    def _process(self, feats: list[dict[str, Any]]) -> torch.Tensor:
        if self.image_processor is None:
            raise InvalidInputError("examples hold an 'image': DataCollatorForImageClassification needs the "
                                    "image_processor that turns it into pixel_values")
        out = self.image_processor([f["image"] for f in feats], return_tensors="pt")
        return torch.as_tensor(out["pixel_values"])

    # --- labels --------------------------------------------------------------------------------
    def _label(self, value: Any, i: int) -> Any:
        if isinstance(value, (torch.Tensor, np.ndarray)):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, str):
            if self.label2id is None:
                raise InvalidInputError(
                    f"the label of example {i} is the string {value!r}; labels must be class ids: map them with "
                    "model.config.label2id, or pass label2id= to the collator")
            if value not in self.label2id:
                raise InvalidInputError(f"the label of example {i}, {value!r}, is not one of label2id's "
                                        f"{sorted(self.label2id)}")
            return int(self.label2id[value])
        return value

    def _labels(self, values: list[Any]) -> torch.Tensor:
        values = [self._label(v, i) for i, v in enumerate(values)]
        if all(isinstance(v, numbers.Integral) for v in values):
            return torch.tensor([int(v) for v in values], dtype=torch.long)
        if all(isinstance(v, (list, tuple)) for v in values):
            for i, v in enumerate(values):
                if any(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in v):
                    raise InvalidInputError(
                        f"the label of example {i} is a list of integers {list(v)[:8]}; image classification takes "
                        "one class id per example (a multi-label target is a list of floats, 0.0 or 1.0 per class)")
            if len({len(v) for v in values}) > 1:
                raise InvalidInputError(f"multi-label vectors of one batch must have one length, got "
                                        f"{sorted({len(v) for v in values})}")
            return torch.tensor([[float(x) for x in v] for v in values], dtype=torch.float32)
        if all(isinstance(v, numbers.Real) for v in values):
            return torch.tensor([float(v) for v in values], dtype=torch.float32)   # regression
        kinds = sorted({type(v).__name__ for v in values})
        raise InvalidInputError(f"labels of one batch must all be class ids, class names, numbers or float "
                                f"vectors; got {kinds}")

    # --- the call ------------------------------------------------------------------------------
    def __call__(self, features: list[Any]) -> dict[str, torch.Tensor]:
        if not isinstance(features, (list, tuple)) or not features:
            raise InvalidInputError(f"{type(self).__name__} takes a non-empty list of examples (dicts)")
        feats = [_rename_labels(f) for f in _as_dicts(list(features))]
        key = self._input_key(feats)
        batch = {"pixel_values": self._stack(feats) if key == "pixel_values" else self._process(feats)}
        has = [f.get("labels") is not None for f in feats]
        if any(has):
            if not all(has):
                raise InvalidInputError(f"example {has.index(False)} has no label while example {has.index(True)} "
                                        "has one: label every example, or none")
            batch["labels"] = self._labels([f["labels"] for f in feats])
        return batch


DefaultImageCollator = DataCollatorForImageClassification
