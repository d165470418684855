"""Padding and truncation: resolving the ``padding`` / ``truncation`` / ``max_length`` arguments,
and ``pad()`` for already-encoded inputs (what data collators call)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidInputError
from .batch_encoding import BatchEncoding, _check_return_tensors
from .constants import _LARGE_INTEGER, _PADDING_VALUES, _TRUNCATION_VALUES
from .inputs import _tensor_kind, _to_python_ids


class PaddingMixin:
    """Padding/truncation methods of :class:`~pretrained.tokenization.Tokenizer`."""

    def _strategies(self, padding, truncation, max_length, pad_to_multiple_of, stride, padding_side):
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0
        ):
            raise InvalidInputError(
                f"max_length must be a positive integer, got {max_length!r}; leave it None to use the model's "
                f"limit ({self.model_max_length})"
            )
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 0:
            raise InvalidInputError(f"stride must be an integer >= 0, got {stride!r}")
        if pad_to_multiple_of is not None and (
            isinstance(pad_to_multiple_of, bool)
            or not isinstance(pad_to_multiple_of, int)
            or pad_to_multiple_of <= 0
        ):
            raise InvalidInputError(
                f"pad_to_multiple_of must be a positive integer, got {pad_to_multiple_of!r}"
            )
        if padding_side is not None and padding_side not in ("left", "right"):
            raise InvalidInputError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        padding = getattr(padding, "value", padding)
        truncation = getattr(truncation, "value", truncation)

        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"  # the reference's backward-compatible behaviour

        if padding is None or padding is False or padding == "do_not_pad":
            pad = None
        elif padding is True or padding == "longest":
            if max_length is not None and truncation in (None, False, "do_not_truncate"):
                warnings.warn(
                    "`max_length` is ignored when `padding`=`True` and there is no truncation strategy. "
                    "To pad to max length, use `padding='max_length'`.",
                    stacklevel=3,
                )
            pad = "longest"
        elif padding == "max_length":
            pad = "max_length"
        else:
            raise InvalidInputError(f"padding={padding!r} is not valid; use one of {_PADDING_VALUES}")

        if truncation is None or truncation is False or truncation == "do_not_truncate":
            trunc = None
        elif truncation is True:
            trunc = "longest_first"
        elif truncation in ("longest_first", "only_first", "only_second"):
            trunc = truncation
        else:
            raise InvalidInputError(
                f"truncation={truncation!r} is not valid; use one of {_TRUNCATION_VALUES}"
            )

        if max_length is None:
            if pad == "max_length":
                if self.model_max_length > _LARGE_INTEGER:
                    raise InvalidInputError(
                        "padding='max_length' needs a length: pass max_length=..., since this tokenizer has no "
                        "model_max_length; or use padding=True to pad to the longest sequence"
                    )
                max_length = self.model_max_length
            if trunc is not None:
                if self.model_max_length > _LARGE_INTEGER:
                    trunc = None  # nothing to truncate to (the reference does the same)
                else:
                    max_length = self.model_max_length

        if pad is not None and (self.pad_token is None or self.pad_token_id is None):
            raise InvalidInputError(
                "asked to pad but this tokenizer has no pad token: set one, e.g. tok.pad_token = tok.eos_token, "
                "or tok.add_special_tokens({'pad_token': '[PAD]'})"
            )
        if (
            trunc is not None
            and pad is not None
            and pad_to_multiple_of is not None
            and max_length is not None
        ):
            if max_length % pad_to_multiple_of != 0:
                raise InvalidInputError(
                    f"truncation and padding are both on but max_length ({max_length}) is not a multiple of "
                    f"pad_to_multiple_of ({pad_to_multiple_of})"
                )
        return pad, trunc, max_length

    def pad(
        self,
        encoded_inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Pad already-encoded inputs (a dict of lists, or a list of dicts such as a dataset's rows),
        the way data collators do. Pads ``input_ids`` with the pad token, ``attention_mask`` with 0
        (creating it if missing), ``token_type_ids`` with 0 and ``special_tokens_mask`` with 1;
        other keys are left as they are.

        Example::

            >>> rows = [{"input_ids": [2, 248, 3]}, {"input_ids": [2, 3]}]
            >>> tok.pad(rows)
            {'input_ids': [[2, 248, 3], [2, 3, 0]], 'attention_mask': [[1, 1, 1], [1, 1, 0]]}
        """
        if (
            isinstance(encoded_inputs, (list, tuple))
            and encoded_inputs
            and isinstance(encoded_inputs[0], Mapping)
        ):
            keys = list(encoded_inputs[0].keys())
            try:
                encoded_inputs = {k: [row[k] for row in encoded_inputs] for k in keys}
            except KeyError as e:
                raise InvalidInputError(f"pad(): every row must have the same keys; one lacks {e}") from None
        if not isinstance(encoded_inputs, Mapping):
            raise InvalidInputError("pad() takes a dict of lists or a list of dicts (e.g. tokenizer outputs)")
        main = self.model_input_names[0]
        if main not in encoded_inputs:
            raise InvalidInputError(f"pad() needs {main!r} in the inputs; got keys {list(encoded_inputs)}")
        data = {k: _to_python_ids(v) for k, v in encoded_inputs.items()}
        if tensor_hint := _tensor_kind(encoded_inputs[main]):
            return_tensors = return_tensors or tensor_hint
        rows = data[main]
        if rows is None or len(rows) == 0:
            if return_attention_mask:
                data["attention_mask"] = []
            return BatchEncoding(data)
        pad, _, max_length = self._strategies(padding, None, max_length, pad_to_multiple_of, 0, padding_side)
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        side = padding_side or self.padding_side
        single = not isinstance(rows[0], (list, tuple))
        batch = {k: [v] for k, v in data.items()} if single else data
        n = len(batch[main])
        if any(len(v) != n for v in batch.values()):
            raise InvalidInputError("pad(): the inputs hold different numbers of rows")
        target = max((len(r) for r in batch[main]), default=0) if pad == "longest" else max_length
        if target is not None and pad_to_multiple_of and target % pad_to_multiple_of:
            target = (target // pad_to_multiple_of + 1) * pad_to_multiple_of
        fill = {main: self.pad_token_id, "attention_mask": 0, "token_type_ids": self.pad_token_type_id}
        fill["special_tokens_mask"] = 1
        out: dict[str, list] = {k: [] for k in batch}
        if return_attention_mask and "attention_mask" not in out:
            out["attention_mask"] = []
        for i in range(n):
            row = {k: list(v[i]) if isinstance(v[i], (list, tuple)) else v[i] for k, v in batch.items()}
            length = len(row[main])
            if return_attention_mask and "attention_mask" not in row:
                row["attention_mask"] = [1] * length
            missing = (target - length) if pad is not None and target is not None else 0
            if missing > 0:
                for key, value in fill.items():
                    if key not in row or (key == "attention_mask" and not return_attention_mask):
                        continue
                    extra = [value] * missing
                    row[key] = extra + row[key] if side == "left" else row[key] + extra
            for key, value in row.items():
                out[key].append(value)
        if single:
            out = {k: v[0] for k, v in out.items()}
        result = BatchEncoding(out)
        if return_tensors is not None:
            result.convert_to_tensors(_check_return_tensors(return_tensors))
        return result
