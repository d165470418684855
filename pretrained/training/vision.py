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

:class:`DataCollatorForSemanticSegmentation` does the same for pictures and their segmentation
maps (``labels`` (B, H, W) class ids), through a segmentation model's processor.

Example::

    >>> import numpy as np
    >>> from pretrained.processing import ViTImageProcessor
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

__all__ = ["DataCollatorForImageClassification", "DefaultImageCollator", "DataCollatorForSemanticSegmentation"]

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


MAP_KEYS = ("segmentation_map", "annotation", "labels")   # "label" / "label_ids" are read as "labels"


def _takes_maps(processor: Any) -> bool:
    """Whether the processor's call names a ``segmentation_maps`` argument."""
    import inspect

    for method in (getattr(processor, "__call__", None), getattr(processor, "preprocess", None)):
        try:
            if method is not None and "segmentation_maps" in inspect.signature(method).parameters:
                return True
        except (TypeError, ValueError):
            continue
    return False


class DataCollatorForSemanticSegmentation(DataCollatorForImageClassification):
    """Batch pictures with their segmentation maps for a semantic segmentation model (SegFormer).

    Each example holds either

    * ``image`` (as :class:`DataCollatorForImageClassification` takes it) and its map under
      ``segmentation_map``, ``annotation`` or ``label`` / ``labels`` (a 2-D array of class ids, a
      mode L / P / I ``PIL.Image``, a file path): the batch goes through the processor together
      (``image_processor(images, segmentation_maps=maps, return_tensors="pt")``), which resizes
      both (the maps with nearest resampling, label reduction if its ``do_reduce_labels``); or
    * ready ``pixel_values`` (C, H, W) and ``labels`` (H, W) class ids (e.g. the processor's own
      output per example): stacked, ``labels`` as int64 (B, H, W).

    A batch without maps (prediction) gives ``pixel_values`` only. As for images, the Trainer keeps
    the ``image`` column only with ``TrainingArguments(remove_unused_columns=False)``.

    Example::

        >>> import numpy as np
        >>> from pretrained.processing import SegformerImageProcessor
        >>> from pretrained.training import DataCollatorForSemanticSegmentation
        >>> collate = DataCollatorForSemanticSegmentation(SegformerImageProcessor(size={"height": 8, "width": 8}))
        >>> batch = collate([{"image": np.zeros((10, 12, 3), np.uint8), "segmentation_map": np.ones((10, 12), np.uint8)},
        ...                  {"image": np.zeros((6, 6, 3), np.uint8), "segmentation_map": np.zeros((6, 6), np.uint8)}])
        >>> tuple(batch["pixel_values"].shape), tuple(batch["labels"].shape), batch["labels"].dtype
        ((2, 3, 8, 8), (2, 8, 8), torch.int64)
    """

    def __init__(self, image_processor: Any = None) -> None:
        super().__init__(image_processor)

    @staticmethod
    def _map_key(feats: list[dict[str, Any]]) -> str | None:
        keys = [[k for k in MAP_KEYS if f.get(k) is not None] for f in feats]
        for i, ks in enumerate(keys):
            if len(ks) > 1:
                raise InvalidInputError(f"example {i} has several segmentation maps ({ks}): give one")
        present = [bool(ks) for ks in keys]
        if any(present) and not all(present):
            raise InvalidInputError(f"example {present.index(False)} has no segmentation map while example "
                                    f"{present.index(True)} has one: give every example its map, or none")
        if not any(present):
            return None
        if len({ks[0] for ks in keys}) > 1:
            raise InvalidInputError(f"a batch names its maps differently ({sorted({ks[0] for ks in keys})}): use one key")
        return keys[0][0]

    def _stack_maps(self, values: list[Any]) -> torch.Tensor:
        rows = []
        for i, value in enumerate(values):
            x = value.detach().cpu() if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))
            if x.dim() == 3 and x.shape[0] == 1:
                x = x[0]
            if x.dim() != 2 or x.is_floating_point() and not torch.equal(x, x.round()):
                raise InvalidInputError(f"the labels of example {i} (shape {tuple(x.shape)}, {x.dtype}) are not one "
                                        "(height, width) map of class ids")
            rows.append(x.long())
        shapes = sorted({tuple(r.shape) for r in rows})
        if len(shapes) > 1:
            raise InvalidInputError(f"the label maps of one batch have different sizes {shapes}: process them with "
                                    "one size (the image processor's do_resize) before batching")
        return torch.stack(rows)

    def __call__(self, features: list[Any]) -> dict[str, torch.Tensor]:
        if not isinstance(features, (list, tuple)) or not features:
            raise InvalidInputError(f"{type(self).__name__} takes a non-empty list of examples (dicts)")
        feats = [_rename_labels(f) for f in _as_dicts(list(features))]
        key, map_key = self._input_key(feats), self._map_key(feats)
        maps = None if map_key is None else [f[map_key] for f in feats]
        if key == "pixel_values":
            batch = {"pixel_values": self._stack(feats)}
            if maps is not None:
                batch["labels"] = self._stack_maps(maps)
            return batch
        if self.image_processor is None:
            raise InvalidInputError("examples hold an 'image': DataCollatorForSemanticSegmentation needs the "
                                    "image_processor that turns it into pixel_values")
        if maps is None:
            return {"pixel_values": self._process(feats)}
        if not _takes_maps(self.image_processor):
            raise InvalidInputError(f"{type(self.image_processor).__name__} does not take segmentation maps; use a "
                                    "segmentation model's image processor (SegformerImageProcessor)")
        out = self.image_processor([f["image"] for f in feats], segmentation_maps=maps, return_tensors="pt")
        return {"pixel_values": torch.as_tensor(out["pixel_values"]), "labels": torch.as_tensor(out["labels"]).long()}
