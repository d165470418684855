"""Data collators: turn a list of examples (dicts) into a batch of tensors.

* :func:`default_data_collator` stacks equal-length fields (``label``/``label_ids`` -> ``labels``).
* :class:`DataCollatorWithPadding` pads token fields to the longest example with the tokenizer's
  pad id and padding side.
* :class:`DataCollatorForLanguageModeling` pads, then makes ``labels``: BERT-style masking
  (``mlm_probability``; 80% [MASK], 10% random token, 10% unchanged; other positions -100) or,
  with ``mlm=False``, causal labels (the ids, padding -100; the model shifts them).
* :class:`DataCollatorForTokenClassification` pads, and pads ``labels`` with -100.
* :class:`DataCollatorForSeq2Seq` pads the inputs, pads ``labels`` (the target ids, a length of
  their own) with -100, and adds ``decoder_input_ids`` when the model can make them.

Example::

    >>> from pretrained.training.collators import DataCollatorWithPadding
    >>> class Tok: pad_token_id, padding_side = 0, "right"
    >>> batch = DataCollatorWithPadding(Tok())([{"input_ids": [5, 6, 7], "label": 1},
    ...                                         {"input_ids": [8], "label": 0}])
    >>> batch["input_ids"].tolist(), batch["attention_mask"].tolist(), batch["labels"].tolist()
    ([[5, 6, 7], [8, 0, 0]], [[1, 1, 1], [1, 0, 0]], [1, 0])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..errors import InvalidInputError

# Fields padded with something other than the pad token id.
_PAD_VALUES = {"attention_mask": 0, "token_type_ids": 0, "special_tokens_mask": 1, "labels": -100,
               "position_ids": 0}


def _as_dicts(features: list[Any]) -> list[Mapping[str, Any]]:
    out = []
    for i, f in enumerate(features):
        if not isinstance(f, Mapping):
            if hasattr(f, "keys") and hasattr(f, "__getitem__"):
                f = {k: f[k] for k in f.keys()}
            else:
                raise InvalidInputError(
                    f"example {i} of the batch is a {type(f).__name__}, not a dict of fields; "
                    "datasets must yield dicts such as {'input_ids': [...], 'label': 0}")
        out.append(f)
    return out


def _rename_labels(f: Mapping[str, Any]) -> dict[str, Any]:
    d = dict(f)
    for old in ("label", "label_ids"):
        if old in d and "labels" not in d:
            d["labels"] = d.pop(old)
    return d


def _tensor(key: str, values: list[Any]) -> torch.Tensor:
    first = values[0]
    try:
        if isinstance(first, torch.Tensor):
            return torch.stack([v if isinstance(v, torch.Tensor) else torch.tensor(v) for v in values])
        t = torch.tensor(values)
    except (ValueError, TypeError, RuntimeError) as e:
        raise InvalidInputError(
            f"field {key!r} cannot be batched ({e}); examples have different lengths: use "
            "DataCollatorWithPadding (or pass processing_class=tokenizer to Trainer)") from None
    if key == "labels" and t.dtype == torch.bool:
        t = t.long()
    return t


def default_data_collator(features: list[Any]) -> dict[str, torch.Tensor]:
    """Stack every field (equal lengths expected); ``label``/``label_ids`` become ``labels``.
    Fields holding strings or ``None`` are dropped."""
    feats = [_rename_labels(f) for f in _as_dicts(features)]
    batch = {}
    for key in feats[0]:
        values = [f.get(key) for f in feats]
        if any(v is None or isinstance(v, str) for v in values):
            continue
        batch[key] = _tensor(key, values)
    return batch


def _pad(key: str, rows: list[Any], value: int, side: str, multiple: int | None,
         length: int | None = None) -> torch.Tensor:
    rows = [r.tolist() if isinstance(r, torch.Tensor) else list(r) for r in rows]
    n = max(len(r) for r in rows) if length is None else length
    if multiple:
        n = -(-n // multiple) * multiple
    out = torch.full((len(rows), n), value, dtype=torch.long)
    for i, r in enumerate(rows):
        if len(r) > n:
            raise InvalidInputError(f"field {key!r} of example {i} has {len(r)} items, more than "
                                    f"the batch length {n}")
        if r:
            if side == "left":
                out[i, n - len(r):] = torch.tensor(r)
            else:
                out[i, : len(r)] = torch.tensor(r)
    return out


class DataCollatorWithPadding:
    """Pad every list-valued field to the longest example (or a multiple of
    ``pad_to_multiple_of``); other fields are stacked. Adds ``attention_mask`` when missing."""

    def __init__(self, tokenizer: Any, padding: bool | str = True, pad_to_multiple_of: int | None = None,
                 return_tensors: str = "pt") -> None:
        if return_tensors != "pt":
            raise InvalidInputError(f"return_tensors={return_tensors!r}: only 'pt' is supported")
        self.tokenizer = tokenizer
        self.padding = padding
        self.pad_to_multiple_of = pad_to_multiple_of

    @property
    def pad_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        if pad is None:
            raise InvalidInputError(
                "the tokenizer has no pad token, so examples of different lengths cannot be "
                "batched; set one, e.g. tokenizer.pad_token = tokenizer.eos_token")
        return int(pad)

    def _pad_features(self, features: list[Any], pad_labels: bool) -> dict[str, torch.Tensor]:
        feats = [_rename_labels(f) for f in _as_dicts(features)]
        side = getattr(self.tokenizer, "padding_side", "right") or "right"
        ids_key = "input_ids" if "input_ids" in feats[0] else None
        batch: dict[str, torch.Tensor] = {}
        for key in feats[0]:
            values = [f.get(key) for f in feats]
            if any(v is None or isinstance(v, str) for v in values):
                continue
            is_seq = isinstance(values[0], (list, tuple)) or (
                isinstance(values[0], torch.Tensor) and values[0].dim() == 1)
            if is_seq and (key != "labels" or pad_labels):
                pad = _PAD_VALUES.get(key, self.pad_id if key == "input_ids" else 0)
                batch[key] = _pad(key, values, pad, side, self.pad_to_multiple_of)
            else:
                batch[key] = _tensor(key, values)
        if ids_key and "attention_mask" not in batch:
            lengths = [len(f[ids_key]) for f in feats]
            batch["attention_mask"] = _pad("attention_mask", [[1] * n for n in lengths], 0, side,
                                           self.pad_to_multiple_of)
        return batch

    def __call__(self, features: list[Any]) -> dict[str, torch.Tensor]:
        return self._pad_features(features, pad_labels=False)


class DataCollatorForTokenClassification(DataCollatorWithPadding):
    """Pad like :class:`DataCollatorWithPadding` and pad ``labels`` with ``label_pad_token_id``
    (-100: ignored by the loss)."""

    def __init__(self, tokenizer: Any, padding: bool | str = True, pad_to_multiple_of: int | None = None,
                 label_pad_token_id: int = -100, return_tensors: str = "pt") -> None:
        super().__init__(tokenizer, padding, pad_to_multiple_of, return_tensors)
        self.label_pad_token_id = label_pad_token_id

    def __call__(self, features: list[Any]) -> dict[str, torch.Tensor]:
        feats = [_rename_labels(f) for f in _as_dicts(features)]
        labels = [f.pop("labels", None) for f in feats]
        batch = self._pad_features(feats, pad_labels=True)
        if any(lab is not None for lab in labels):
            if any(lab is None for lab in labels):
                raise InvalidInputError("some examples have labels and others do not")
            side = getattr(self.tokenizer, "padding_side", "right") or "right"
            batch["labels"] = _pad("labels", labels, self.label_pad_token_id, side, None,
                                   length=batch["input_ids"].shape[1])
        return batch


class DataCollatorForSeq2Seq(DataCollatorWithPadding):
    """Batches for encoder-decoder models: the inputs padded as :class:`DataCollatorWithPadding`
    does, ``labels`` padded to the longest label (their own length, not the inputs') with
    ``label_pad_token_id`` on the tokenizer's padding side, and, when ``model`` has
    ``prepare_decoder_input_ids_from_labels``, ``decoder_input_ids`` (the labels shifted right).
    Making them here rather than in the model's forward lets the loader do the work.

    ``padding``: True/"longest" (the longest example), "max_length" (``max_length``; labels too),
    False/"do_not_pad" (examples must then have equal lengths).

    Example::

        >>> from pretrained.training.collators import DataCollatorForSeq2Seq
        >>> class Tok: pad_token_id, padding_side = 0, "right"
        >>> batch = DataCollatorForSeq2Seq(Tok())([{"input_ids": [5, 6], "labels": [7, 1]},
        ...                                        {"input_ids": [8], "labels": [9, 9, 1]}])
        >>> batch["input_ids"].tolist(), batch["labels"].tolist()
        ([[5, 6], [8, 0]], [[7, 1, -100], [9, 9, 1]])
    """

    def __init__(self, tokenizer: Any, model: Any = None, padding: bool | str = True,
                 max_length: int | None = None, pad_to_multiple_of: int | None = None,
                 label_pad_token_id: int = -100, return_tensors: str = "pt") -> None:
        super().__init__(tokenizer, padding, pad_to_multiple_of, return_tensors)
        if padding not in (True, False, "longest", "max_length", "do_not_pad"):
            raise InvalidInputError(f"padding={padding!r}: expected True, False, 'longest', "
                                    "'max_length' or 'do_not_pad'")
        if padding == "max_length" and max_length is None:
            raise InvalidInputError("padding='max_length' needs max_length")
        self.model = model
        self.max_length = max_length
        self.label_pad_token_id = label_pad_token_id

    def _length(self, rows: list[Any]) -> int | None:
        """The padded width of ``rows``: None means no padding (stack as they are)."""
        if self.padding in (False, "do_not_pad"):
            return None
        n = self.max_length if self.padding == "max_length" else max(len(r) for r in rows)
        if self.pad_to_multiple_of:
            n = -(-n // self.pad_to_multiple_of) * self.pad_to_multiple_of
        return n

    def __call__(self, features: list[Any]) -> dict[str, torch.Tensor]:
        feats = [_rename_labels(f) for f in _as_dicts(features)]
        labels = [f.pop("labels", None) for f in feats]
        batch = self._pad_inputs(feats)
        if any(lab is not None for lab in labels):
            if any(lab is None for lab in labels):
                raise InvalidInputError("some examples have labels and others do not")
            n = self._length(labels)
            if n is None:
                batch["labels"] = _tensor("labels", [list(lab) if not isinstance(lab, torch.Tensor)
                                                     else lab for lab in labels]).long()
            else:
                side = getattr(self.tokenizer, "padding_side", "right") or "right"
                batch["labels"] = _pad("labels", labels, self.label_pad_token_id, side, None, length=n)
            prepare = getattr(self.model, "prepare_decoder_input_ids_from_labels", None)
            if prepare is not None:
                batch["decoder_input_ids"] = prepare(labels=batch["labels"])
        return batch

    def _pad_inputs(self, feats: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = [f["input_ids"] for f in feats if f.get("input_ids") is not None]
        if len(ids) != len(feats) or self.padding in (True, "longest"):
            return self._pad_features(feats, pad_labels=False)
        n = self._length(ids)
        if n is None:  # no padding: equal lengths are stacked, others are a clear error
            batch = default_data_collator(feats)
            if "attention_mask" not in batch:
                batch["attention_mask"] = torch.ones_like(batch["input_ids"])
            return batch
        # max_length: pad every sequence field to n (the parent pads to the longest)
        side = getattr(self.tokenizer, "padding_side", "right") or "right"
        batch = {}
        for key in feats[0]:
            values = [f.get(key) for f in feats]
            if any(v is None or isinstance(v, str) for v in values):
                continue
            if isinstance(values[0], (list, tuple)) or (isinstance(values[0], torch.Tensor)
                                                        and values[0].dim() == 1):
                pad = _PAD_VALUES.get(key, self.pad_id if key == "input_ids" else 0)
                batch[key] = _pad(key, values, pad, side, None, length=n)
            else:
                batch[key] = _tensor(key, values)
        if "attention_mask" not in batch:
            batch["attention_mask"] = _pad("attention_mask", [[1] * len(r) for r in ids], 0, side,
                                           None, length=n)
        return batch


class DataCollatorForLanguageModeling(DataCollatorWithPadding):
    """Labels for language modelling. ``mlm=True``: mask ``mlm_probability`` of the tokens
    (never special tokens or padding) BERT-style; ``mlm=False``: causal labels (padding -100).

    Masking draws from ``torch``'s global generator (seeded by the Trainer), so it is
    reproducible and restored on resume.
    """

    def __init__(self, tokenizer: Any, mlm: bool = True, mlm_probability: float = 0.15,
                 pad_to_multiple_of: int | None = None, return_tensors: str = "pt") -> None:
        super().__init__(tokenizer, True, pad_to_multiple_of, return_tensors)
        if mlm and getattr(tokenizer, "mask_token_id", None) is None:
            raise InvalidInputError("mlm=True needs a tokenizer with a mask token; for causal "
                                    "language modelling pass mlm=False")
        if not 0 < mlm_probability < 1:
            raise InvalidInputError(f"mlm_probability={mlm_probability!r}: expected a number in (0, 1)")
        self.mlm = mlm
        self.mlm_probability = mlm_probability

    def __call__(self, features: list[Any]) -> dict[str, torch.Tensor]:
        feats = [{k: v for k, v in _rename_labels(f).items() if k != "labels"} for f in _as_dicts(features)]
        batch = self._pad_features(feats, pad_labels=False)
        ids = batch["input_ids"]
        special = batch.pop("special_tokens_mask", None)
        if special is None:
            special_ids = torch.tensor(sorted(set(getattr(self.tokenizer, "all_special_ids", []) or [])),
                                       dtype=torch.long)
            special = torch.isin(ids, special_ids) if len(special_ids) else torch.zeros_like(ids)
        special = special.bool() | (batch["attention_mask"] == 0)
        if not self.mlm:
            labels = ids.clone()
            labels[batch["attention_mask"] == 0] = -100
            batch["labels"] = labels
            return batch
        batch["input_ids"], batch["labels"] = self.mask_tokens(ids, special)
        return batch

    def mask_tokens(self, ids: torch.Tensor, special: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ids, labels = ids.clone(), ids.clone()
        prob = torch.full(ids.shape, self.mlm_probability)
        prob.masked_fill_(special, 0.0)
        masked = torch.bernoulli(prob).bool()
        labels[~masked] = -100
        replace = torch.bernoulli(torch.full(ids.shape, 0.8)).bool() & masked
        ids[replace] = int(self.tokenizer.mask_token_id)
        rand = torch.bernoulli(torch.full(ids.shape, 0.5)).bool() & masked & ~replace
        vocab = len(self.tokenizer) if hasattr(self.tokenizer, "__len__") else self.tokenizer.vocab_size
        ids[rand] = torch.randint(vocab, ids.shape, dtype=torch.long)[rand]
        return ids, labels


__all__ = ["default_data_collator", "DataCollatorWithPadding", "DataCollatorForTokenClassification",
           "DataCollatorForSeq2Seq", "DataCollatorForLanguageModeling"]
