"""``AutoTokenizer``, the reference's entry point: every checkpoint loads as a :class:`Tokenizer`."""

from __future__ import annotations

import os
from typing import Any

from .tokenizer import Tokenizer


class AutoTokenizer:
    """Picks and loads the tokenizer of a checkpoint. Every checkpoint loads as a :class:`Tokenizer`.

    Example::

        >>> from pretrained.tokenization import AutoTokenizer
        >>> tok = AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/bert_wordpiece")
        >>> tok.model_input_names, tok.padding_side, tok.model_max_length
        (['input_ids', 'token_type_ids', 'attention_mask'], 'right', 64)
    """

    def __init__(self) -> None:
        raise TypeError("AutoTokenizer is not instantiated; use AutoTokenizer.from_pretrained(name_or_path)")

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        trust_remote_code: bool = False,
        padding_side: str | None = None,
        truncation_side: str | None = None,
        model_max_length: int | None = None,
        use_fast: bool = True,
        **special_token_overrides: Any,
    ) -> Tokenizer:
        """Same as :meth:`Tokenizer.from_pretrained`."""
        return Tokenizer.from_pretrained(
            name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            trust_remote_code=trust_remote_code,
            padding_side=padding_side,
            truncation_side=truncation_side,
            model_max_length=model_max_length,
            use_fast=use_fast,
            **special_token_overrides,
        )
