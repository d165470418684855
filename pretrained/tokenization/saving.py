"""``save_pretrained``: tokenizer.json, tokenizer_config.json and special_tokens_map.json, readable
by ``from_pretrained`` and by the reference library."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as _BackendTokenizer
from tokenizers import normalizers, pre_tokenizers

from ..errors import InvalidInputError
from .constants import CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE, TOKENIZER_FILE
from .special_tokens import _token_state


class SavingMixin:
    """``save_pretrained`` of :class:`~pretrained.tokenization.Tokenizer`."""

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> tuple[str, ...]:
        """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json`` to
        ``save_directory`` (created if needed), readable by :meth:`from_pretrained` and by the
        reference library. Returns the paths written.

        Example::

            >>> import tempfile
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     files = tok.save_pretrained(folder)
            ...     again = AutoTokenizer.from_pretrained(folder)
            >>> [Path(f).name for f in files]
            ['tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.json']
            >>> again("Hello!").input_ids == tok("Hello!").input_ids
            True
        """
        directory = Path(save_directory)
        if directory.is_file():
            raise InvalidInputError(f"{str(directory)!r} is a file; save_pretrained needs a directory")
        directory.mkdir(parents=True, exist_ok=True)

        config: dict[str, Any] = copy.deepcopy(self._extra_config)
        config.update(_derived_config(self._backend))
        for name, tok in self._special.items():
            config[name] = tok.content if tok is not None else None
        if self._extra:
            config["additional_special_tokens"] = self.extra_special_tokens
        config["added_tokens_decoder"] = {
            str(i): _token_state(t) for i, t in sorted(self._backend.get_added_tokens_decoder().items())
        }
        config["tokenizer_class"] = self.tokenizer_class or "PreTrainedTokenizerFast"
        config["model_max_length"] = self.model_max_length
        config["padding_side"] = self.padding_side
        config["truncation_side"] = self.truncation_side
        config["model_input_names"] = list(self.model_input_names)
        config["clean_up_tokenization_spaces"] = self.clean_up_tokenization_spaces
        if self.split_special_tokens:
            config["split_special_tokens"] = True
        if isinstance(self.chat_template, dict):
            config["chat_template"] = [{"name": k, "template": v} for k, v in self.chat_template.items()]
        elif self.chat_template is not None:
            config["chat_template"] = self.chat_template

        special_map: dict[str, Any] = {k: v for k, v in self.special_tokens_map.items()}
        if self._extra:
            special_map["additional_special_tokens"] = self.extra_special_tokens

        config_path = directory / CONFIG_FILE
        map_path = directory / SPECIAL_TOKENS_MAP_FILE
        tok_path = directory / TOKENIZER_FILE
        config_path.write_text(
            json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        map_path.write_text(
            json.dumps(special_map, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        with self._lock:
            self._backend.save(str(tok_path), pretty=True)
        return (str(config_path), str(map_path), str(tok_path))


def _derived_config(backend: _BackendTokenizer) -> dict[str, Any]:
    """Config keys that the reference's per-class constructors read, taken from the real pipeline."""
    out: dict[str, Any] = {}
    norm = backend.normalizer
    if isinstance(norm, normalizers.BertNormalizer):
        out["do_lower_case"] = bool(norm.lowercase)
        out["strip_accents"] = norm.strip_accents
        out["tokenize_chinese_chars"] = bool(norm.handle_chinese_chars)
    pre = backend.pre_tokenizer
    if isinstance(pre, pre_tokenizers.ByteLevel):
        out["add_prefix_space"] = bool(pre.add_prefix_space)
    return out
