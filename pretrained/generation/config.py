"""GenerationConfig: the parameters of ``generate()``, read from ``generation_config.json``.

Fields left at ``None`` take the model's ``generation_config`` value, then the reference's
global default (:data:`DEFAULTS`) when ``generate()`` runs, so a call overrides only what it names.
Values are checked when they are used: a bad value in a model's ``generation_config.json`` loads
with a warning naming the field, and ``generate()`` raises only if the call would use it.

Example::

    >>> from pretrained.generation import GenerationConfig
    >>> cfg = GenerationConfig(max_new_tokens=20, do_sample=True, top_p=0.9)
    >>> cfg.top_p, cfg.temperature
    (0.9, None)
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError

logger = logging.getLogger("pretrained")

GENERATION_CONFIG_NAME = "generation_config.json"

# The reference's defaults for the fields a user leaves unset (applied inside generate()).
DEFAULTS: dict[str, Any] = {
    "max_length": 20, "max_new_tokens": None, "min_length": 0, "min_new_tokens": None,
    "early_stopping": False, "max_time": None, "stop_strings": None,
    "do_sample": False, "num_beams": 1, "use_cache": True, "cache_implementation": None,
    "temperature": 1.0, "top_k": 50, "top_p": 1.0, "min_p": None,
    "repetition_penalty": 1.0, "length_penalty": 1.0, "no_repeat_ngram_size": 0,
    "bad_words_ids": None, "num_return_sequences": 1,
    "output_scores": False, "output_logits": False, "return_dict_in_generate": False,
    "pad_token_id": None, "bos_token_id": None, "eos_token_id": None,
    # encoder-decoder models
    "decoder_start_token_id": None, "forced_bos_token_id": None, "forced_eos_token_id": None,
    "encoder_no_repeat_ngram_size": 0,
    # Whisper's, usable by any model: tokens never generated / never generated first
    "suppress_tokens": None, "begin_suppress_tokens": None,
}

# Reference fields this library does not implement: accepted while they hold a value that does
# nothing (so real generation_config.json files load), an error when generate() would need them.
UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "typical_p": (None, 1.0), "epsilon_cutoff": (None, 0.0), "eta_cutoff": (None, 0.0),
    "top_h": (None,), "encoder_repetition_penalty": (None, 1.0),
    "renormalize_logits": (None, False),
    "remove_invalid_values": (None, False), "exponential_decay_length_penalty": (None,),
    "sequence_bias": (None,),
    "guidance_scale": (None, 1.0), "watermarking_config": (None,), "token_healing": (None, False),
    "penalty_alpha": (None,), "dola_layers": (None,), "num_beam_groups": (None, 1),
    "diversity_penalty": (None, 0.0), "constraints": (None,), "force_words_ids": (None,),
    "output_attentions": (None, False), "output_hidden_states": (None, False),
    "prompt_lookup_num_tokens": (None,), "assistant_early_exit": (None,), "use_mtp": (None, False),
    "prefill_chunk_size": (None,), "low_memory": (None, False),
}
_BOOL = ("do_sample", "use_cache", "output_scores", "output_logits", "return_dict_in_generate")
_INT_MIN = {"max_length": 1, "max_new_tokens": 1, "min_length": 0, "min_new_tokens": 0,
            "num_beams": 1, "num_return_sequences": 1, "no_repeat_ngram_size": 0, "top_k": 0,
            "encoder_no_repeat_ngram_size": 0}
MAX_STOP_STRINGS = 64


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_value(name: str, value: Any) -> str | None:
    """Why ``value`` is not valid for field ``name`` (the allowed range and the fix), or None."""
    if value is None:
        return None
    if name in _BOOL:
        return None if isinstance(value, bool) else "must be True or False"
    if name in _INT_MIN:
        lo = _INT_MIN[name]
        if not _is_int(value) or value < lo:
            return f"must be an integer >= {lo}"
        return None
    if name == "temperature":
        ok = _is_num(value) and math.isfinite(value) and value > 0
        return None if ok else ("must be a finite number > 0; for greedy decoding pass do_sample=False "
                                "instead of temperature=0")
    if name == "top_p":
        ok = _is_num(value) and 0 < value <= 1
        return None if ok else "must be in (0, 1]; 1.0 turns top-p filtering off"
    if name == "min_p":
        ok = _is_num(value) and 0 <= value <= 1
        return None if ok else "must be in [0, 1]; leave it unset to turn min-p filtering off"
    if name == "repetition_penalty":
        ok = _is_num(value) and math.isfinite(value) and value > 0
        return None if ok else "must be a finite number > 0; 1.0 means no penalty"
    if name == "length_penalty":
        return None if _is_num(value) and math.isfinite(value) else "must be a finite number"
    if name == "max_time":
        return None if _is_num(value) and value > 0 else "must be a number of seconds > 0"
    if name == "early_stopping":
        return None if isinstance(value, bool) or value == "never" else "must be True, False or 'never'"
    if name in ("eos_token_id", "pad_token_id", "bos_token_id", "decoder_start_token_id",
                "forced_bos_token_id", "forced_eos_token_id"):
        many = name in ("eos_token_id", "forced_eos_token_id")
        ids = value if many and isinstance(value, list) else [value]
        if all(_is_int(i) and i >= 0 for i in ids):
            return None
        return "must be a token id (an int >= 0)" + (" or a list of them" if many else "")
    if name in ("suppress_tokens", "begin_suppress_tokens"):
        ok = isinstance(value, (list, tuple)) and all(_is_int(i) and i >= 0 for i in value)
        return None if ok else "must be a list of token ids (an empty list suppresses nothing)"
    if name == "bad_words_ids":
        ok = isinstance(value, list) and value and all(
            isinstance(w, list) and w and all(_is_int(i) and i >= 0 for i in w) for w in value)
        return None if ok else "must be a non-empty list of non-empty lists of token ids, e.g. [[12], [5, 7]]"
    if name == "stop_strings":
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(s, str) for s in items):
            return "must be a string or a non-empty list of strings"
        if any(s == "" for s in items):
            return "must not contain an empty string (it would match everywhere)"
        if len(items) > MAX_STOP_STRINGS:
            return f"must hold at most {MAX_STOP_STRINGS} strings"
        return None
    if name == "cache_implementation":
        return None if value in ("dynamic", "static") else "must be 'dynamic' or 'static'"
    if name in UNSUPPORTED:
        return None if value in UNSUPPORTED[name] else (
            "is not supported by pretrained's generate(); remove it (supported: temperature, top_k, "
            "top_p, min_p, repetition_penalty, no_repeat_ngram_size, bad_words_ids, min_new_tokens)")
    return None


class GenerationConfig:
    """The parameters of one ``generate()`` call. Unknown keys are kept and saved back."""

    def __init__(self, **kwargs: Any) -> None:
        for name in (*DEFAULTS, *UNSUPPORTED):
            object.__setattr__(self, name, None)
        self._extra: dict[str, Any] = {}
        for key, value in kwargs.items():
            setattr(self, key, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in DEFAULTS and name not in UNSUPPORTED and not name.startswith("_"):
            self._extra[name] = value
        object.__setattr__(self, name, value)

    # --- dict / json ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = {k: copy.deepcopy(getattr(self, k)) for k in (*DEFAULTS, *UNSUPPORTED)}
        out.update(copy.deepcopy(self._extra))
        return out

    def to_diff_dict(self) -> dict[str, Any]:
        """Only the fields that are set (not None)."""
        return {k: v for k, v in self.to_dict().items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> "GenerationConfig":
        return cls(**{**data, **overrides})

    def update(self, **kwargs: Any) -> dict[str, Any]:
        """Set the known fields among ``kwargs``; return the others."""
        unused = {}
        for key, value in kwargs.items():
            if key in DEFAULTS or key in UNSUPPORTED or key in self._extra:
                setattr(self, key, value)
            else:
                unused[key] = value
        return unused

    def invalid_fields(self) -> dict[str, str]:
        """Field -> why its value is invalid, for every invalid field."""
        out = {}
        for name in (*DEFAULTS, *UNSUPPORTED):
            why = check_value(name, getattr(self, name))
            if why:
                out[name] = why
        return out

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` for the first invalid field."""
        for name, why in self.invalid_fields().items():
            raise InvalidInputError(f"GenerationConfig.{name}={getattr(self, name)!r} {why}")

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``generation_config.json`` (set fields only) into ``save_directory``."""
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        target = path / GENERATION_CONFIG_NAME
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_diff_dict(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, target)
        return target

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **overrides: Any) -> "GenerationConfig":
        """Read ``generation_config.json`` from a model folder (or the file itself)."""
        path = Path(name_or_path)
        if path.is_dir():
            path = path / GENERATION_CONFIG_NAME
        data = _read_json(path)
        if data is None:
            raise InvalidInputError(f"{path}: no readable {GENERATION_CONFIG_NAME} (see the warning above)")
        return cls.from_dict(data, **overrides)

    @classmethod
    def from_model_config(cls, config: Any) -> "GenerationConfig":
        """The special tokens of a model's config, as the reference uses when a checkpoint has no
        ``generation_config.json``."""
        out = cls()
        # Older checkpoints (BART, Marian, T5) keep generation settings in config.json itself
        # (num_beams, max_length, no_repeat_ngram_size, forced_bos_token_id...): the reference
        # uses them when the folder has no generation_config.json, and so do we.
        data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        for key in (*DEFAULTS, *UNSUPPORTED):
            value = data.get(key)
            unset = value == DEFAULTS[key] if key in DEFAULTS else value in UNSUPPORTED[key]
            if value is not None and not unset:
                setattr(out, key, value)
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GenerationConfig) and self.to_diff_dict() == other.to_diff_dict()

    def __repr__(self) -> str:
        return f"GenerationConfig {json.dumps(self.to_diff_dict(), sort_keys=True, default=str)}"


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        logger.warning("%s is not readable JSON (%s); using the defaults from config.json instead",
                       path, e)
        return None
    if not isinstance(data, dict):
        logger.warning("%s holds a %s, not a JSON object; using the defaults from config.json instead",
                       path, type(data).__name__)
        return None
    return data


def load_generation_config(files: Any, model_config: Any) -> GenerationConfig:
    """The generation config of a checkpoint: its ``generation_config.json`` if it has a readable
    one, else the special tokens of ``config.json``. Never raises on bad values: each invalid
    field gets a warning here and an error only if ``generate()`` uses it."""
    path = None
    try:
        path = files.get(GENERATION_CONFIG_NAME)
    except Exception:  # an optional file: a hub error here must not stop the model loading
        path = None
    data = _read_json(Path(path)) if path is not None else None
    if data is None:
        return GenerationConfig.from_model_config(model_config)
    cfg = GenerationConfig.from_dict(data)
    for name, why in cfg.invalid_fields().items():
        logger.warning("%s: %s=%r %s; the model loads, but generate() will raise if it uses this "
                       "value (fix the file or pass %s=... to generate())",
                       GENERATION_CONFIG_NAME, name, getattr(cfg, name), why, name)
    return cfg


__all__ = ["GenerationConfig", "DEFAULTS", "UNSUPPORTED", "check_value", "load_generation_config",
           "GENERATION_CONFIG_NAME"]
