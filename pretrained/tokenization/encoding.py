"""Encoding: calling a tokenizer (texts, pairs, batches, pre-split words -> ``BatchEncoding``),
``encode`` and ``tokenize``; errors of the `tokenizers` backend turned into clear ones."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import tokenizers

from ..errors import InvalidInputError, TokenizerError
from .batch_encoding import BatchEncoding, _check_return_tensors
from .inputs import _check_text, _check_words, _find_surrogate, _is_fatal

logger = logging.getLogger(__package__)  # "pretrained.tokenization": one logger for the package


class EncodingMixin:
    """Encoding methods of :class:`~pretrained.tokenization.Tokenizer`."""

    def __call__(
        self,
        text: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        text_pair: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        text_target: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        text_pair_target: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        *,
        max_target_length: int | None = None,
        **kwargs: Any,
    ) -> BatchEncoding:
        """Tokenize ``text`` (see :meth:`_encode_call` for every option) and/or ``text_target``.

        ``text_target`` (and ``text_pair_target``) are encoded as the decoder's side of a
        sequence-to-sequence model (Marian's target SentencePiece model, mBART's target-language
        code) with the same padding and truncation options (``max_target_length`` replaces
        ``max_length`` for them); their ids come back as ``labels``, padded with the pad id (data
        collators turn those into -100). With ``text_target`` alone, the target encoding itself.

        Example::

            >>> t5 = AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/t5")
            >>> batch = t5(["Hello world"], text_target=["Hallo"], padding=True)
            >>> batch["labels"], t5.decode(batch["labels"][0], skip_special_tokens=True)
            ([[3, 128, 19, 80, 18, 1]], 'Hallo')
        """
        if text is None and text_target is None:
            raise InvalidInputError(
                "no text given: pass text= (a string, a list of strings, pairs via text_pair=) and/or text_target="
            )
        if text_target is None:
            if text_pair_target is not None:
                raise InvalidInputError("text_pair_target needs text_target (the first sequence of the target pair)")
            return self._encode_call(text, text_pair, **kwargs)
        target_kwargs = dict(kwargs)
        if max_target_length is not None:
            if kwargs.get("max_length") is None and kwargs.get("truncation") is None:
                target_kwargs["truncation"] = False  # as the reference: strategies come from max_length
            target_kwargs["max_length"] = max_target_length
        target = self._encode_call(text_target, text_pair_target, target=True, **target_kwargs)
        if text is None:
            return target
        encoded = self._encode_call(text, text_pair, **kwargs)
        encoded["labels"] = target["input_ids"]
        return encoded

    def _encode_call(
        self,
        text: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        text_pair: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        *,
        target: bool = False,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        split_special_tokens: bool | None = None,
    ) -> BatchEncoding:
        """Tokenize one text, a batch of texts, or (batches of) text pairs.

        ``padding``: ``True``/``"longest"``, ``"max_length"``, ``False``/``"do_not_pad"``.
        ``truncation``: ``True``/``"longest_first"``, ``"only_first"``, ``"only_second"``,
        ``False``. ``stride`` with ``return_overflowing_tokens=True`` returns the overflowing windows
        as extra rows plus ``overflow_to_sample_mapping``. ``return_tensors``: ``"pt"``, ``"np"``
        (or ``"tf"`` if TensorFlow is installed). A single string without ``return_tensors`` gives
        flat lists, like the reference.

        Example::

            >>> tok("Hello world!")
            {'input_ids': [2, 248, 209, 5, 3], 'token_type_ids': [0, 0, 0, 0, 0], 'attention_mask': [1, 1, 1, 1, 1]}
            >>> tok(["a", "b c"], padding=True, return_tensors="pt").input_ids.shape
            torch.Size([2, 4])
        """
        tensor_type = _check_return_tensors(return_tensors)
        pad, trunc, max_length = self._strategies(
            padding, truncation, max_length, pad_to_multiple_of, stride, padding_side
        )
        if text is None:
            raise InvalidInputError(
                "no text given: pass a string, a list of strings, or pairs via text_pair="
            )

        # Batch or single?
        if is_split_into_words:
            if not isinstance(text, (list, tuple)):
                raise InvalidInputError(
                    "is_split_into_words=True needs a list of words (or a batch of lists)"
                )
            is_batched = bool(text) and isinstance(text[0], (list, tuple))
        else:
            is_batched = isinstance(text, (list, tuple))
        if is_batched:
            if isinstance(text_pair, str):
                raise InvalidInputError("for a batch of texts, text_pair must be a list of the same length")
            if text_pair is not None and len(text_pair) != len(text):
                raise InvalidInputError(
                    f"text has {len(text)} items but text_pair has {len(text_pair)}: they must match"
                )
            firsts = list(text)
            seconds = list(text_pair) if text_pair is not None else None
        else:
            firsts = [text]
            seconds = [text_pair] if text_pair else None  # an empty pair is no pair, like the reference

        check = _check_words if is_split_into_words else _check_text
        for i, t in enumerate(firsts):
            check(t, f"text[{i}]" if is_batched else "text")
        if seconds is not None:
            for i, t in enumerate(seconds):
                check(t, f"text_pair[{i}]" if is_batched else "text_pair")
        inputs = list(zip(firsts, seconds, strict=True)) if seconds is not None else firsts

        if split_special_tokens is None:
            split_special_tokens = self.split_special_tokens
        encodings = self._encode_batch(
            inputs,
            is_batched=is_batched,
            add_special_tokens=add_special_tokens,
            pad=pad,
            trunc=trunc,
            max_length=max_length,
            stride=stride,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side or self.padding_side,
            is_pretokenized=is_split_into_words,
            split_special_tokens=bool(split_special_tokens),
            target=target,
        )

        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names

        data: dict[str, list] = {"input_ids": []}
        if return_token_type_ids:
            data["token_type_ids"] = []
        if return_attention_mask:
            data["attention_mask"] = []
        if return_special_tokens_mask:
            data["special_tokens_mask"] = []
        if return_offsets_mapping:
            data["offset_mapping"] = []
        if return_length:
            data["length"] = []
        rows: list[tokenizers.Encoding] = []
        mapping: list[int] = []
        for sample, enc in enumerate(encodings):
            pieces = [enc, *enc.overflowing] if return_overflowing_tokens else [enc]
            for e in pieces:
                rows.append(e)
                mapping.append(sample)
                ids = e.ids
                data["input_ids"].append(ids)
                if return_token_type_ids:
                    data["token_type_ids"].append(e.type_ids)
                if return_attention_mask:
                    data["attention_mask"].append(e.attention_mask)
                if return_special_tokens_mask:
                    data["special_tokens_mask"].append(e.special_tokens_mask)
                if return_offsets_mapping:
                    data["offset_mapping"].append(e.offsets)
                if return_length:
                    data["length"].append(len(ids))
        if return_overflowing_tokens:
            data["overflow_to_sample_mapping"] = mapping

        if verbose and max_length is None and not self._warned_too_long and self.model_max_length != 0:
            longest = max((len(ids) for ids in data["input_ids"]), default=0)
            if longest > self.model_max_length:
                logger.warning(
                    "Token indices sequence length is longer than the specified maximum sequence length for this "
                    "model (%d > %d). Running this sequence through the model will result in indexing errors",
                    longest,
                    self.model_max_length,
                )
                self._warned_too_long = True

        if not is_batched and tensor_type is None and not return_overflowing_tokens:
            data = {k: (v[0] if v and isinstance(v[0], list) else v) for k, v in data.items()}
        out = BatchEncoding(data, rows)
        if tensor_type is not None:
            out.convert_to_tensors(tensor_type)
        return out

    def _encode_batch(
        self,
        inputs: list,
        *,
        is_batched: bool,
        add_special_tokens: bool,
        pad: str | None,
        trunc: str | None,
        max_length: int | None,
        stride: int,
        pad_to_multiple_of: int | None,
        padding_side: str,
        is_pretokenized: bool,
        split_special_tokens: bool,
        target: bool = False,
    ) -> list[tokenizers.Encoding]:
        if not inputs:
            return []
        encodings = self._backend_encode(
            inputs, add_special_tokens=add_special_tokens, pad=pad, trunc=trunc, max_length=max_length,
            stride=stride, pad_to_multiple_of=pad_to_multiple_of, padding_side=padding_side,
            is_pretokenized=is_pretokenized, split_special_tokens=split_special_tokens, target=target,
            is_batched=is_batched,
        )  # fmt: skip
        return self._fix_encodings(inputs, encodings, is_pretokenized, target)

    def _fix_encodings(self, inputs: list, encodings: list, is_pretokenized: bool, target: bool) -> list:
        """Hook for classes whose ids are not the backend's alone (Marian's unknown pieces)."""
        return encodings

    def _backend_encode(
        self, inputs, *, add_special_tokens, pad, trunc, max_length, stride, pad_to_multiple_of, padding_side,
        is_pretokenized, split_special_tokens, target, is_batched,
    ) -> list[tokenizers.Encoding]:  # fmt: skip
        with self._lock:
            backend, undo = self._target_mode() if target else (self._backend, None)
            try:
                if trunc is not None:
                    backend.enable_truncation(
                        max_length, stride=stride, strategy=trunc, direction=self.truncation_side
                    )
                if pad is not None:
                    backend.enable_padding(
                        direction=padding_side,
                        pad_id=self.pad_token_id,
                        pad_type_id=self.pad_token_type_id,
                        pad_token=self.pad_token,
                        length=max_length if pad == "max_length" else None,
                        pad_to_multiple_of=pad_to_multiple_of,
                    )
                if backend.encode_special_tokens != split_special_tokens:
                    backend.encode_special_tokens = split_special_tokens
                return backend.encode_batch(
                    inputs, is_pretokenized=is_pretokenized, add_special_tokens=add_special_tokens
                )
            except BaseException as e:  # tokenizers raises Exception, TypeError or a pyo3 PanicException
                if _is_fatal(e):
                    raise
                raise self._encode_error(e, inputs, is_batched, trunc, max_length, stride) from None
            finally:
                backend.no_truncation()
                backend.no_padding()
                if backend.encode_special_tokens:
                    backend.encode_special_tokens = False
                if undo is not None:
                    undo()

    #: Marian's target-side tokenizer (another SentencePiece model); None: the same as the source's.
    _target_backend: tokenizers.Tokenizer | None = None

    def _target_mode(self):
        """The backend that encodes ``text_target``, and what undoes the switch (or None); called
        under the lock. Classes with a target-side template (mBART's language code) override it."""
        return (self._target_backend or self._backend), None

    def _encode_error(self, e: BaseException, inputs, is_batched, trunc, max_length, stride) -> Exception:
        labelled = []
        for i, item in enumerate(inputs):
            prefix = f"text[{i}]" if is_batched else "text"
            if isinstance(item, tuple):
                labelled += [(prefix, item[0]), (prefix.replace("text", "text_pair"), item[1])]
            else:
                labelled.append((prefix, item))
        bad = _find_surrogate(labelled)
        if bad is not None:
            return InvalidInputError(bad)
        msg = str(e)
        if "Second sequence not provided" in msg:
            return InvalidInputError(
                "truncation='only_second' needs pairs of sequences (text_pair=...); use truncation=True "
                "or 'only_first' for single texts"
            )
        if "too short to respect the provided max_length" in msg or "Truncation error" in msg:
            return InvalidInputError(
                f"cannot truncate to max_length={max_length} with truncation={trunc!r}: the sequence that "
                "may be cut is too short to make the input fit (the other sequence and the special tokens "
                "alone are too long). Use truncation='longest_first' or a larger max_length"
            )
        if "stride" in msg:
            return InvalidInputError(f"stride={stride} is too large for max_length={max_length}: {msg}")
        return TokenizerError(f"tokenization failed: {type(e).__name__}: {msg}")

    def encode(
        self,
        text: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Token ids of ``text`` (``input_ids`` of :meth:`__call__`).

        Example::

            >>> tok.encode("hello", add_special_tokens=False)
            [248]
        """
        return self(
            text,
            text_pair,
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            stride=stride,
            padding_side=padding_side,
            return_tensors=return_tensors,
            **kwargs,
        )["input_ids"]

    def tokenize(
        self, text: str, pair: str | None = None, add_special_tokens: bool = False, **kwargs: Any
    ) -> list[str]:
        """Token strings of ``text`` (no special tokens unless asked).

        Example::

            >>> tok.tokenize("Unbelievable tokenizers")
            ['unbelievable', 'tokenizer', '##s']
        """
        return self(text, pair, add_special_tokens=add_special_tokens, **kwargs).encodings[0].tokens
