"""Data collators for audio models: pad each batch of feature-extractor outputs (or extract them
from raw audio), with the attention mask and the labels.

* :class:`DataCollatorWithAudioPadding` takes examples holding one of

  - ``input_values``: 1-D samples (Wav2Vec2, HuBERT), e.g. what
    ``Wav2Vec2FeatureExtractor(wave, sampling_rate=16000)["input_values"][0]`` gives;
  - ``input_features``: 2-D features (Whisper's (mel bins, frames), AST's (frames, bins));
    equal shapes are stacked, unequal ones padded along the time axis (the axis that is not
    ``feature_size`` long);
  - ``audio``: raw audio in any form :func:`pretrained.audio.load_audio` reads (an array with
    its ``{"array": ..., "sampling_rate": ...}``, a path, bytes), resampled to the feature
    extractor's rate and run through it as one batch (so per-batch normalisation is the
    feature extractor's own). The Trainer drops columns its model does not take, ``audio``
    among them: pass ``TrainingArguments(remove_unused_columns=False)`` for this form.

  Rows are padded to the longest of the batch (``padding=True``), to ``max_length``
  (``"max_length"``) or not at all (``False``: equal lengths required), on the feature
  extractor's ``padding_side`` with its ``padding_value``; ``truncation`` cuts to ``max_length``
  and ``pad_to_multiple_of`` rounds up. ``attention_mask`` (1 on real samples or frames) comes
  back when ``return_attention_mask`` is true (default: the feature extractor's setting) or
  when the examples carry their own.

  ``label``/``label_ids``/``labels``: a class id per example (a ``long`` tensor (B,)), a float
  (regression), a list of floats (multi-label: stacked), or a list of token ids (CTC, seq2seq:
  padded with ``label_pad_token_id``, -100, which the losses ignore). String labels are mapped
  through ``label2id`` when given.
* :class:`DataCollatorForAudioClassification`: the same, with one class (or one multi-label
  vector, or one regression value) per example enforced.
* :class:`DataCollatorSpeechSeq2SeqWithPadding`: the same for Whisper-style training; token
  labels that all begin with ``decoder_start_token_id`` lose it (the model puts it back when it
  shifts the labels right), as the reference's fine-tuning recipe does.

Example::

    >>> import numpy as np
    >>> from pretrained.processing import Wav2Vec2FeatureExtractor
    >>> from pretrained.training import DataCollatorForAudioClassification
    >>> fe = Wav2Vec2FeatureExtractor(return_attention_mask=True)
    >>> collate = DataCollatorForAudioClassification(fe)
    >>> batch = collate([{"input_values": np.ones(3), "label": 1}, {"input_values": np.ones(5), "label": 0}])
    >>> batch["input_values"].shape, batch["attention_mask"].tolist(), batch["labels"].tolist()
    (torch.Size([2, 5]), [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], [1, 0])
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import InvalidInputError
from .collators import _as_dicts, _rename_labels

__all__ = ["DataCollatorWithAudioPadding", "DataCollatorForAudioClassification",
           "DataCollatorSpeechSeq2SeqWithPadding"]

INPUT_KEYS = ("input_values", "input_features", "audio")


def _array(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().float().numpy()
    try:
        arr = np.asarray(value)
    except ValueError as e:
        raise InvalidInputError(f"{what} is not an array of numbers ({e})") from None
    if arr.dtype.kind not in "fiu":
        raise InvalidInputError(f"{what} has dtype {arr.dtype}; audio inputs must be real numbers")
    return arr.astype(np.float32, copy=False)


class DataCollatorWithAudioPadding:
    """Batch audio examples: pad ``input_values`` / ``input_features`` (or extract them from
    ``audio``), add ``attention_mask``, batch the labels (see the module docstring)."""

    def __init__(self, feature_extractor: Any, padding: bool | str = True, max_length: int | None = None,
                 truncation: bool = False, pad_to_multiple_of: int | None = None,
                 return_attention_mask: bool | None = None, label_pad_token_id: int = -100,
                 label2id: Mapping[str, int] | None = None, return_tensors: str = "pt") -> None:
        if feature_extractor is None or not hasattr(feature_extractor, "pad_waveforms"):
            raise InvalidInputError(
                f"{type(self).__name__} needs the model's feature extractor (e.g. "
                f"AutoFeatureExtractor.from_pretrained(folder)), got {type(feature_extractor).__name__}")
        if return_tensors != "pt":
            raise InvalidInputError(f"return_tensors={return_tensors!r}: only 'pt' is supported")
        from ..processing.base import padding_strategy

        self.strategy = padding_strategy(padding, max_length)  # checks the spelling now, not per batch
        if truncation and max_length is None:
            raise InvalidInputError("truncation=True needs max_length (samples, or frames for input_features)")
        if pad_to_multiple_of is not None and (isinstance(pad_to_multiple_of, bool)
                                               or not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of <= 0):
            raise InvalidInputError(f"pad_to_multiple_of must be a positive integer, got {pad_to_multiple_of!r}")
        self.feature_extractor = feature_extractor
        self.padding, self.max_length, self.truncation = padding, max_length, truncation
        self.pad_to_multiple_of = pad_to_multiple_of
        self.return_attention_mask = return_attention_mask
        self.label_pad_token_id = label_pad_token_id
        self.label2id = dict(label2id) if label2id is not None else None

    # --- inputs -------------------------------------------------------------------------------
    @property
    def _wants_mask(self) -> bool:
        if self.return_attention_mask is not None:
            return bool(self.return_attention_mask)
        return bool(getattr(self.feature_extractor, "return_attention_mask", False))

    def _input_key(self, feats: list[dict[str, Any]]) -> str:
        keys = [next((k for k in INPUT_KEYS if f.get(k) is not None), None) for f in feats]
        if keys[0] is None:
            raise InvalidInputError(
                f"example 0 of the batch has fields {sorted(feats[0])} but none of {list(INPUT_KEYS)}; run "
                "the feature extractor first (input_values / input_features) or give the raw audio as 'audio' "
                "(with TrainingArguments(remove_unused_columns=False), or the Trainer drops that column)")
        for i, k in enumerate(keys):
            if k != keys[0]:
                raise InvalidInputError(f"example {i} holds {k!r} where example 0 holds {keys[0]!r}: a batch "
                                        "must give its audio in one form")
        return keys[0]

    def _pad_values(self, feats: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        waves = []
        for i, f in enumerate(feats):
            w = _array(f["input_values"], f"input_values of example {i}")
            if w.ndim == 2 and w.shape[0] == 1:  # a feature extractor's batch of one, kept as it came
                w = w[0]
            if w.ndim != 1:
                raise InvalidInputError(f"input_values of example {i} has shape {w.shape}; each example must "
                                        "hold 1-D samples (one waveform)")
            if w.shape[0] == 0:
                raise InvalidInputError(f"input_values of example {i} is empty (zero samples)")
            waves.append(w)
        given_masks = [f.get("attention_mask") for f in feats]
        with_mask = self._wants_mask or any(m is not None for m in given_masks)
        batch = self._pad_rows(waves, "input_values", with_mask)
        out = {"input_values": torch.from_numpy(np.ascontiguousarray(batch.values))}
        if with_mask:
            mask = batch.mask.astype(np.int64)
            for i, m in enumerate(given_masks):  # an example's own mask (e.g. silence marked) wins
                if m is not None:
                    m = np.asarray(m, dtype=np.int64).reshape(-1)[: batch.lengths[i]]
                    if m.shape[0] != batch.lengths[i]:
                        raise InvalidInputError(f"attention_mask of example {i} has {m.shape[0]} values for "
                                                f"{batch.lengths[i]} samples")
                    mask[i, batch.starts[i]:batch.starts[i] + batch.lengths[i]] = m
            out["attention_mask"] = torch.from_numpy(mask)
        return out

    def _pad_rows(self, waves: list[np.ndarray], key: str, with_mask: bool) -> Any:
        fe = self.feature_extractor
        batch = fe.pad_waveforms(waves, padding=self.padding, max_length=self.max_length, truncation=self.truncation,
                                 pad_to_multiple_of=self.pad_to_multiple_of, with_mask=with_mask)
        if not batch.is_rectangular:
            if self.strategy == "do_not_pad":
                raise InvalidInputError(
                    f"{key} rows have different lengths ({sorted(set(batch.lengths))}) and padding=False; use "
                    "padding=True (the default) or 'max_length'")
            raise InvalidInputError(
                f"{key}: a row has {max(batch.lengths)} steps, more than max_length={self.max_length}; pass "
                "truncation=True or a larger max_length")
        return batch

    def _time_axis(self, shapes: list[tuple[int, ...]]) -> int:
        size = int(getattr(self.feature_extractor, "feature_size", 0))
        if all(s[-1] == size for s in shapes) and not all(s[0] == size for s in shapes):
            return 0   # (frames, bins): AST, Speech2Text
        if all(s[0] == size for s in shapes) and not all(s[-1] == size for s in shapes):
            return 1   # (bins, frames): Whisper
        raise InvalidInputError(
            f"input_features of shapes {sorted(set(shapes))} cannot be padded: the feature extractor's "
            f"feature_size is {size}, and each example must be (frames, {size}) or ({size}, frames)")

    def _pad_features(self, feats: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = []
        for i, f in enumerate(feats):
            x = _array(f["input_features"], f"input_features of example {i}")
            if x.ndim == 3 and x.shape[0] == 1:
                x = x[0]
            if x.ndim != 2:
                raise InvalidInputError(f"input_features of example {i} has shape {x.shape}; each example must "
                                        "hold one 2-D feature matrix")
            rows.append(x)
        shapes = [r.shape for r in rows]
        given_masks = [f.get("attention_mask") for f in feats]
        with_mask = self._wants_mask or any(m is not None for m in given_masks)
        if len(set(shapes)) == 1 and self.strategy != "max_length" and not self.truncation:
            out = {"input_features": torch.from_numpy(np.stack(rows))}
            if with_mask:
                out["attention_mask"] = self._frame_masks(given_masks, [r.shape[self._time_axis_or(shapes)]
                                                                        for r in rows])
            return out
        axis = self._time_axis(shapes)
        # the time axis moved last, then padded as rows of samples would be, bin by bin
        series = [r if axis == 1 else r.T for r in rows]
        bins = series[0].shape[0]
        lengths = [s.shape[1] for s in series]
        flat = self._pad_rows([np.zeros(n, dtype=np.float32) for n in lengths], "input_features", True)
        width = flat.values.shape[1]
        values = np.full((len(rows), bins, width), self.feature_extractor.padding_value, dtype=np.float32)
        for i, (s, start, n) in enumerate(zip(series, flat.starts, flat.lengths)):
            values[i, :, start:start + n] = s[:, :n]
        if axis == 0:
            values = values.transpose(0, 2, 1)
        out = {"input_features": torch.from_numpy(np.ascontiguousarray(values))}
        if with_mask:
            mask = flat.mask.astype(np.int64)
            for i, m in enumerate(given_masks):
                if m is not None:
                    m = np.asarray(m, dtype=np.int64).reshape(-1)[: flat.lengths[i]]
                    mask[i, flat.starts[i]:flat.starts[i] + m.shape[0]] = m
            out["attention_mask"] = torch.from_numpy(mask)
        return out

    def _time_axis_or(self, shapes: list[tuple[int, ...]]) -> int:
        try:
            return self._time_axis(shapes)
        except InvalidInputError:
            return 1   # square or unknown layout: frames last, Whisper's

    @staticmethod
    def _frame_masks(given: list[Any], frames: list[int]) -> torch.Tensor:
        out = torch.ones(len(frames), frames[0], dtype=torch.long)
        for i, m in enumerate(given):
            if m is not None:
                m = torch.as_tensor(np.asarray(m), dtype=torch.long).reshape(-1)
                if m.shape[0] != frames[i]:
                    raise InvalidInputError(f"attention_mask of example {i} has {m.shape[0]} values for "
                                            f"{frames[i]} frames")
                out[i] = m
        return out

    def _extract(self, feats: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        from ..audio import load_audio

        fe = self.feature_extractor
        rate = int(fe.sampling_rate)
        waves = []
        for i, f in enumerate(feats):
            audio = f["audio"]
            if isinstance(audio, (np.ndarray, torch.Tensor, list)):
                raise InvalidInputError(
                    f"the audio of example {i} is a bare array, whose sampling rate is unknown; give "
                    f'{{"array": samples, "sampling_rate": rate}} (resampled to {rate} Hz), or a file path')
            waves.append(load_audio(audio, rate))
        kwargs: dict[str, Any] = {"sampling_rate": rate, "return_tensors": "pt"}
        if type(fe).__name__ == "WhisperFeatureExtractor":
            # Whisper pads to 30 s by itself unless told otherwise; padding=True means the batch's longest
            if self.strategy == "longest":
                kwargs["padding"] = "longest"
            elif self.strategy == "max_length":
                kwargs["padding"] = "max_length"
        else:
            kwargs["padding"] = self.padding
        if self.max_length is not None:
            kwargs["max_length"] = self.max_length
        if self.truncation:
            kwargs["truncation"] = True
        if self.pad_to_multiple_of is not None:
            kwargs["pad_to_multiple_of"] = self.pad_to_multiple_of
        if self.return_attention_mask is not None:
            kwargs["return_attention_mask"] = self.return_attention_mask
        out = fe(waves, **kwargs)
        batch = {k: torch.as_tensor(v) for k, v in dict(out).items() if v is not None}
        if "attention_mask" in batch:
            batch["attention_mask"] = batch["attention_mask"].long()
        return batch

    # --- labels -------------------------------------------------------------------------------
    def _label(self, value: Any, i: int) -> Any:
        if isinstance(value, torch.Tensor):
            value = value.tolist()
        elif isinstance(value, np.ndarray):
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
        if all(isinstance(v, bool) or isinstance(v, numbers.Integral) for v in values):
            return torch.tensor([int(v) for v in values], dtype=torch.long)
        if all(isinstance(v, numbers.Real) for v in values):
            return torch.tensor(values, dtype=torch.float32)
        if not all(isinstance(v, (list, tuple)) for v in values):
            kinds = sorted({type(v).__name__ for v in values})
            raise InvalidInputError(f"labels of one batch must all be class ids, numbers, or lists; got {kinds}")
        flat = [x for v in values for x in v]
        if flat and all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in flat):
            return self._pad_label_ids([list(map(int, v)) for v in values])
        if len({len(v) for v in values}) > 1:
            raise InvalidInputError(
                f"float label vectors (multi-label) of one batch must have one length, got {sorted({len(v) for v in values})}")
        return torch.tensor([[float(x) for x in v] for v in values], dtype=torch.float32)

    def _pad_label_ids(self, rows: list[list[int]]) -> torch.Tensor:
        n = max(len(r) for r in rows)
        out = torch.full((len(rows), n), self.label_pad_token_id, dtype=torch.long)
        for i, r in enumerate(rows):
            if r:
                out[i, : len(r)] = torch.tensor(r)
        return out

    # --- the call -----------------------------------------------------------------------------
    def __call__(self, features: list[Any]) -> dict[str, torch.Tensor]:
        if not isinstance(features, (list, tuple)) or not features:
            raise InvalidInputError(f"{type(self).__name__} takes a non-empty list of examples (dicts)")
        feats = [_rename_labels(f) for f in _as_dicts(list(features))]
        key = self._input_key(feats)
        batch = {"input_values": self._pad_values, "input_features": self._pad_features,
                 "audio": self._extract}[key](feats)
        has = [f.get("labels") is not None for f in feats]
        if any(has):
            if not all(has):
                raise InvalidInputError(f"example {has.index(False)} has no label while example {has.index(True)} "
                                        "has one: label every example, or none")
            batch["labels"] = self._labels([f["labels"] for f in feats])
        done = set(INPUT_KEYS) | {"attention_mask", "labels"}
        for name in feats[0]:  # anything else: numbers stacked, strings and None dropped
            if name in done:
                continue
            values = [f.get(name) for f in feats]
            if any(v is None or isinstance(v, str) for v in values):
                continue
            try:
                batch[name] = torch.as_tensor(np.asarray(values))
            except (ValueError, TypeError):
                raise InvalidInputError(f"field {name!r} cannot be batched (its values differ in shape); "
                                        "drop it from the examples") from None
        return batch


class DataCollatorForAudioClassification(DataCollatorWithAudioPadding):
    """:class:`DataCollatorWithAudioPadding` for classification heads: one label per example (a
    class id or its name with ``label2id``, a multi-label vector of floats, or a regression value)."""

    def _labels(self, values: list[Any]) -> torch.Tensor:
        values = [self._label(v, i) for i, v in enumerate(values)]
        for i, v in enumerate(values):
            if isinstance(v, (list, tuple)) and any(isinstance(x, numbers.Integral) and not isinstance(x, bool)
                                                    for x in v):
                raise InvalidInputError(
                    f"the label of example {i} is a list of integers {list(v)[:8]}; audio classification takes one "
                    "class id per example (a multi-label target is a list of floats, 0.0 or 1.0 per class)")
        return super()._labels(values)


class DataCollatorSpeechSeq2SeqWithPadding(DataCollatorWithAudioPadding):
    """:class:`DataCollatorWithAudioPadding` for encoder-decoder speech models (Whisper): token
    labels padded with -100; when every row begins with ``decoder_start_token_id`` it is dropped,
    since the model prepends it again when it shifts the labels into decoder inputs."""

    def __init__(self, feature_extractor: Any, decoder_start_token_id: int | None = None, **kwargs: Any) -> None:
        super().__init__(feature_extractor, **kwargs)
        self.decoder_start_token_id = decoder_start_token_id

    def _labels(self, values: list[Any]) -> torch.Tensor:
        labels = super()._labels(values)
        if labels.dim() != 2 or labels.dtype != torch.long:
            raise InvalidInputError("speech-to-text labels are token ids: a list of integers per example")
        start = self.decoder_start_token_id
        if start is not None and labels.shape[1] > 0 and bool((labels[:, 0] == start).all()):
            labels = labels[:, 1:]
        return labels
