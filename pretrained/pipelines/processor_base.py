"""What the pipelines over non-text inputs share (audio, images): a processor next to the model
(a feature extractor, an image processor) loaded from the model's folder unless given, an
optional tokenizer, and batches of the processor's tensors.

A single item may expand to several features (a long audio cut in chunks); ``batch_size``
applies to those too. Rows of unequal length are padded at the end, as the reference's
pipelines pad them (the processor's padding value; masks with 0).

:class:`ImagePipeline` is what the image pipelines (classification, object detection,
segmentation) share: the model's image processor (``image_processor=``), no tokenizer, a picture
as a file path, the bytes of a file, a PIL image or an array; :func:`unit_interval` checks their
thresholds.
"""

from __future__ import annotations

import numbers
import os
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import InvalidInputError
from .base import Pipeline, _to_cpu

__all__ = ["ProcessorPipeline", "NoTokenizer", "ImagePipeline", "unit_interval"]


class NoTokenizer:
    """Stands in for the tokenizer of a task that reads no text (audio or image classification)."""

    model_input_names: list[str] = []
    model_max_length = None

    def __repr__(self) -> str:
        return "None"


class ProcessorPipeline(Pipeline):
    """Base of the audio and image pipelines. A subclass names its processor attribute
    (``processor_name``), how to load one (:meth:`load_processor`), the model inputs it makes
    (``model_input_names``) and whether it needs a tokenizer."""

    processor_name: ClassVar[str] = "processor"
    needs_tokenizer: ClassVar[bool] = True
    model_input_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model: torch.nn.Module, tokenizer: Any = None, *, processor: Any = None,
                 **kwargs: Any) -> None:
        setattr(self, self.processor_name, self._processor(model, processor))
        if tokenizer is None and not self.needs_tokenizer:
            tokenizer = NoTokenizer()
        super().__init__(model, tokenizer, **kwargs)

    @classmethod
    def load_processor(cls, source: str | os.PathLike) -> Any:
        raise NotImplementedError

    def _processor(self, model: torch.nn.Module, given: Any) -> Any:
        if given is not None and not isinstance(given, (str, os.PathLike)):
            return given
        source = given or getattr(getattr(model, "config", None), "name_or_path", None)
        if not source:
            raise InvalidInputError(f"the model given has no folder to load its {self.processor_name} from; "
                                    f"pass {self.processor_name}= (a folder or a loaded one)")
        return self.load_processor(source)

    def _run(self, inputs: Any, params: dict[str, Any], single: bool | None = None) -> Any:
        if single is None:
            single = self._is_single(inputs)
        if not single:
            return super()._run(inputs, params, single)
        # one item may make several features (chunks): batch_size applies to them
        batch_size, pre, fwd, post = self._call_parameters(params)
        return next(self._stream(iter([inputs]), batch_size, pre, fwd, post))

    def _forward_features(self, features: list[dict[str, Any]], batch_size: int,
                          fwd: dict) -> list[dict[str, Any]]:
        """Run the features ``batch_size`` at a time, in order, as the reference batches them;
        keys other than the model inputs ride along to postprocess."""
        names = self.model_input_names
        results: list[dict[str, Any]] = []
        for start in range(0, len(features), batch_size):
            group = features[start:start + batch_size]
            batch = {n: self._pad_rows([f[n] for f in group], n).to(self.device)
                     for n in names if n in group[0]}
            with torch.inference_mode():
                out = self._forward(batch, **fwd)
            out = {k: _to_cpu(v) for k, v in out.items()}
            for row, f in enumerate(group):
                rest = {k: v for k, v in f.items() if k not in names}
                results.append({**rest, **{k: v[row:row + 1] for k, v in out.items()}})
        return results

    def _pad_rows(self, rows: list[torch.Tensor], name: str) -> torch.Tensor:
        width = max(r.shape[-1] for r in rows)
        if all(r.shape == rows[0].shape for r in rows):
            return torch.cat(rows)
        if any(r.shape[:-1] != rows[0].shape[:-1] for r in rows):
            raise InvalidInputError(f"the {self.task} pipeline cannot batch {name} of shapes "
                                    f"{[tuple(r.shape) for r in rows]}; use batch_size=1")
        value = 0.0 if name == "attention_mask" else \
            float(getattr(getattr(self, self.processor_name), "padding_value", 0.0))
        return torch.cat([torch.nn.functional.pad(r, (0, width - r.shape[-1]), value=value) for r in rows])


def unit_interval(name: str, value: Any) -> float:
    """``value`` as a float in [0, 1] (a threshold, a probability), or a named error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise InvalidInputError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


class ImagePipeline(ProcessorPipeline):
    """A pipeline whose inputs are pictures: ``image_processor`` makes the model's inputs (loaded
    from the model's folder with AutoImageProcessor when not given); no tokenizer. ``timeout``,
    which the reference's image pipelines take, is accepted by each and not read: no picture is
    fetched (URLs are refused with the fix)."""

    processor_name = "image_processor"
    needs_tokenizer = False

    def __init__(self, model: torch.nn.Module, tokenizer: Any = None, *, image_processor: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(model, tokenizer, processor=image_processor, **kwargs)

    @classmethod
    def load_processor(cls, source: str | os.PathLike) -> Any:
        from ..processing import AutoImageProcessor

        return AutoImageProcessor.from_pretrained(source)

    def _is_single(self, inputs: Any) -> bool:
        if isinstance(inputs, (str, os.PathLike, bytes, bytearray, np.ndarray, torch.Tensor)):
            return True
        return type(inputs).__module__.startswith("PIL.")

    def _input_help(self) -> str:
        return "a file path, the bytes of a picture, a PIL image, an array, or a list of those"
