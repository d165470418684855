"""Summarization ("summarization") and translation ("translation_xx_to_yy", "translation") with
an encoder-decoder model (T5, BART, Marian, mBART, Pegasus), as the reference 4.57 runs them.

* one string -> ``[{"summary_text": ...}]`` (``"translation_text"`` for translation; one dict
  per returned sequence; ``return_tensors=True`` gives ``*_token_ids`` instead);
* a list of strings -> one such dict per string (a list of lists with ``num_return_sequences``).

Generation settings, weakest first: the model's generation config, the pipeline's defaults
(``max_new_tokens=256, num_beams=4``; a ``max_length`` in the model's generation config other
than 20 replaces the default ``max_new_tokens``), the checkpoint's ``task_specific_params`` for this task (t5-small's
``"summarize: "`` prefix, beams, lengths), then the call's keyword arguments (any
``generate()`` parameter). One deliberate difference from the reference: a ``max_length`` from
the task's parameters or from the call is obeyed; the reference lets its default
``max_new_tokens=256`` win over it (with a warning) unless the model's own generation config
set ``max_length``.

Inputs longer than the model takes are an error naming the length unless ``truncation=True``.
Multilingual tokenizers (mBART) take ``src_lang`` / ``tgt_lang`` (or the task's pair); the
target language code becomes the forced first token. A model of one pair at a time checks the
pair where it declares its pairs (T5's ``task_specific_params``, a one-target Marian tokenizer's
``source_lang`` / ``target_lang``): another is a named error, and on T5 ``src_lang`` /
``tgt_lang`` pick among its pairs (prefix and settings; the reference ignores them there).

Example::

    >>> from pretrained import pipeline                                                 # doctest: +SKIP
    >>> translate = pipeline("translation_en_to_fr", model="path/to/marian-en-fr")      # doctest: +SKIP
    >>> translate(["How old are you?", "Good morning"], batch_size=8)                   # doctest: +SKIP
    [{'translation_text': 'Quel âge as-tu ?'}, {'translation_text': 'Bonjour'}]
"""

from __future__ import annotations

import logging
import re
from typing import Any

import torch

from ..errors import InvalidInputError
from ..generation.config import DEFAULTS, UNSUPPORTED, GenerationConfig
from .base import Pipeline

__all__ = ["Text2TextGenerationPipeline", "SummarizationPipeline", "TranslationPipeline",
           "TRANSLATION_TASK"]

logger = logging.getLogger("pretrained")

#: "translation_en_to_fr": the task names that carry a language pair
TRANSLATION_TASK = re.compile(r"^translation_([A-Za-z0-9-]+)_to_([A-Za-z0-9-]+)$")
_GENERATE_ARGS = {"generation_config", "streamer", "logits_processor", "stopping_criteria",
                  "generator", "seed"}
_PIPELINE_DEFAULTS = {"max_new_tokens": 256, "num_beams": 4}
_GLOBAL_MAX_LENGTH = 20  # generate()'s default max_length: "not set" when deciding precedence


class Text2TextGenerationPipeline(Pipeline):
    """Runs an encoder-decoder's generate() on each text; subclasses name the output key."""

    task = "text2text-generation"
    head = "seq2seq-lm"
    return_name = "generated"

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, task: str | None = None,
                 **kwargs: Any) -> None:
        if not getattr(getattr(model, "config", None), "is_encoder_decoder", False):
            raise InvalidInputError(f"the {task or self.task} pipeline needs an encoder-decoder model "
                                    f"(T5, BART, Marian...), got {type(model).__name__}; load one with "
                                    "AutoModelForSeq2SeqLM.from_pretrained(...)")
        if task is not None:
            self.task = task
        super().__init__(model, tokenizer, **kwargs)
        self.prefix, self.generation_config = self._generation_setup()

    def _generation_setup(self) -> tuple[str, GenerationConfig]:
        """The pipeline's generation config and text prefix (see the module doc for the order)."""
        model_cfg = getattr(self.model, "generation_config", None)
        if not isinstance(model_cfg, GenerationConfig):
            model_cfg = GenerationConfig.from_model_config(self.model.config)
        cfg = GenerationConfig(**model_cfg.to_diff_dict())
        # as the reference 4.57: the model's values fill what the pipeline's defaults leave
        # unset, so its num_beams=4 wins over a generation_config.json's num_beams
        cfg.update(**_PIPELINE_DEFAULTS)
        if cfg.max_new_tokens == _PIPELINE_DEFAULTS["max_new_tokens"] and \
                cfg.max_length not in (None, _GLOBAL_MAX_LENGTH):
            cfg.max_new_tokens = None  # the model's max_length wins over the pipeline default
        prefix = getattr(self.model.config, "prefix", None) or ""
        params = getattr(self.model.config, "task_specific_params", None) or {}
        mine = dict(params.get(self.task) or {})
        if "prefix" in mine:
            prefix = mine.pop("prefix")
        if "max_length" in mine and "max_new_tokens" not in mine:
            cfg.max_new_tokens = None
        cfg.update(**mine)
        if self.tokenizer.pad_token_id is not None and cfg.pad_token_id is None:
            cfg.pad_token_id = self.tokenizer.pad_token_id
        return prefix, cfg

    def _split_parameters(self, params: dict[str, Any]) -> tuple[dict, dict, dict]:
        # generate() checks its own parameters before any forward pass
        params = dict(params)
        gen = {k: params.pop(k) for k in list(params)
               if k in DEFAULTS or k in UNSUPPORTED or k in _GENERATE_ARGS}
        pre, fwd, post = super()._split_parameters(params)
        return pre, {**fwd, **gen}, post

    def _sanitize_parameters(self, *, return_tensors: bool | None = None,
                             return_text: bool | None = None,
                             clean_up_tokenization_spaces: bool | None = None,
                             truncation: bool | str | None = None,
                             src_lang: str | None = None, tgt_lang: str | None = None
                             ) -> tuple[dict, dict, dict]:
        pre: dict[str, Any] = {}
        if truncation is not None:
            pre["truncation"] = truncation
        if src_lang is not None:
            pre["src_lang"] = src_lang
        if tgt_lang is not None:
            pre["tgt_lang"] = tgt_lang
        post: dict[str, Any] = {}
        if return_tensors is not None and return_text is not None and return_tensors == return_text:
            raise InvalidInputError("return_text and return_tensors are mutually exclusive")
        if return_tensors:
            post["return_tensors"] = True
        if clean_up_tokenization_spaces is not None:
            post["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        return pre, {}, post

    def _input_help(self) -> str:
        return "a string, a list of strings, or an iterable of strings"

    def __call__(self, inputs: Any, **params: Any) -> Any:
        """``inputs``: a text or a list of texts; keyword arguments: the pipeline's parameters
        (``truncation``, ``return_tensors``, ``clean_up_tokenization_spaces``, ``src_lang``,
        ``tgt_lang``, ``batch_size``) and any ``generate()`` parameter (``num_beams``,
        ``max_length``, ``min_length``, ``no_repeat_ngram_size``...)."""
        result = self._run(inputs, params)
        if isinstance(inputs, (list, tuple)) and all(isinstance(r, list) and len(r) == 1 for r in result):
            return [r[0] for r in result]  # as the reference: one dict per text
        return result

    # --- preprocess -----------------------------------------------------------------------
    def preprocess(self, item: Any, truncation: bool | str | None = None,
                   src_lang: str | None = None, tgt_lang: str | None = None,
                   prefix: str | None = None) -> list[dict[str, Any]]:
        if not isinstance(item, str):
            raise InvalidInputError(f"a {self.task} input must be a string, got {type(item).__name__}")
        if not item.strip():
            raise InvalidInputError(f"an empty text was given to the {self.task} pipeline; pass "
                                    "some text (or drop the empty items)")
        prefix = self.prefix if prefix is None else prefix   # another language pair's (T5)
        enc = self._encode(prefix + item, bool(truncation), src_lang, tgt_lang)
        ids = list(enc["input_ids"])
        if truncation and len(ids) == getattr(self.tokenizer, "model_max_length", None):
            full = len(self._encode(prefix + item, False, src_lang, tgt_lang)["input_ids"])
            if full > len(ids):
                logger.warning("%s: an input of %d tokens was cut to its first %d (truncation=True)",
                               self.task, full, len(ids))
        limit = self._hard_limit()
        if not truncation and limit is not None and len(ids) > limit:
            raise InvalidInputError(f"this input is {len(ids)} tokens long but the model takes at most "
                                    f"{limit}; pass truncation=True to cut it to {limit} tokens, or "
                                    "split the text")
        return [{"input_ids": ids, "attention_mask": list(enc.get("attention_mask") or [1] * len(ids))}]

    def _encode(self, text: str, truncation: bool, src_lang: str | None, tgt_lang: str | None) -> Any:
        if src_lang is not None or tgt_lang is not None:
            raise InvalidInputError(f"src_lang / tgt_lang apply to translation only, not {self.task}")
        return self.tokenizer(text, truncation=truncation)

    def _hard_limit(self) -> int | None:
        """The longest input the model can read: its position table's size (T5 has none)."""
        cfg = self.model.config
        limit = getattr(cfg, "max_position_embeddings", None)
        return limit if isinstance(limit, int) and limit > 0 else None

    # --- forward --------------------------------------------------------------------------
    def _forward(self, batch: dict[str, torch.Tensor], **generate_kwargs: Any) -> dict[str, torch.Tensor]:
        kwargs = dict(generate_kwargs)
        if "max_length" in kwargs and "max_new_tokens" not in kwargs:
            kwargs["max_new_tokens"] = None  # the call's max_length is obeyed (see the module doc)
        kwargs.setdefault("generation_config", self.generation_config)
        cfg = kwargs["generation_config"]
        limit = self._hard_limit()
        if limit and "max_length" not in kwargs and "max_new_tokens" not in kwargs and \
                cfg.max_new_tokens == _PIPELINE_DEFAULTS["max_new_tokens"] and \
                cfg.max_new_tokens >= limit:
            # the pipeline's own default asks for more tokens than the decoder has positions
            # (the reference fails there); nobody chose it, so it stops at the last position
            kwargs["max_new_tokens"] = limit - 1
            if (kwargs.get("min_new_tokens", cfg.min_new_tokens) or 0) > limit - 1:
                # a minimum past the last position then ends there too (generate() refuses a
                # minimum above a maximum that was asked for; this one was not)
                kwargs["min_new_tokens"] = limit - 1
        if "max_length" not in kwargs and kwargs.get("max_new_tokens", cfg.max_new_tokens) is None \
                and cfg.max_length == _GLOBAL_MAX_LENGTH:
            # the reference reads a max_length equal to generate()'s default as "unset": 20 new
            # tokens after the start token (within the position table)
            kwargs["max_length"] = min(_GLOBAL_MAX_LENGTH + 1, limit) if limit else _GLOBAL_MAX_LENGTH + 1
        b, length = batch["input_ids"].shape
        max_length = kwargs.get("max_length", cfg.max_length)
        min_length = kwargs.get("min_length", cfg.min_length)
        if kwargs.get("max_new_tokens", cfg.max_new_tokens) is None and \
                max_length is not None and min_length is not None and max_length < min_length:
            raise InvalidInputError(f"max_length={max_length} is below min_length={min_length}: no "
                                    "output can satisfy both; raise max_length or lower min_length")
        self._warn_lengths(length, max_length)
        out = self.model.generate(**batch, **kwargs)
        seq = out if isinstance(out, torch.Tensor) else out.sequences
        return {"output_ids": seq.reshape(b, seq.shape[0] // b, seq.shape[1])}

    def _warn_lengths(self, input_length: int, max_length: int | None) -> None:
        """Length hints the reference logs (summaries shorter than inputs, and so on)."""

    # --- postprocess ----------------------------------------------------------------------
    def postprocess(self, output: dict[str, Any], return_tensors: bool = False,
                    clean_up_tokenization_spaces: bool = False) -> list[dict[str, Any]]:
        records = []
        for ids in output["output_ids"]:
            if return_tensors:
                records.append({f"{self.return_name}_token_ids": ids})
            else:
                text = self.tokenizer.decode(ids.tolist(), skip_special_tokens=True,
                                             clean_up_tokenization_spaces=clean_up_tokenization_spaces)
                records.append({f"{self.return_name}_text": text})
        return records


class SummarizationPipeline(Text2TextGenerationPipeline):
    """Summaries of texts: ``[{"summary_text": ...}]``."""

    task = "summarization"
    return_name = "summary"

    def _warn_lengths(self, input_length: int, max_length: int | None) -> None:
        if max_length is not None and input_length < max_length:
            logger.warning("summarization: max_length is %d but the input is only %d tokens; a "
                           "summary is usually shorter than its text: consider max_length=%d",
                           max_length, input_length, input_length // 2)


class TranslationPipeline(Text2TextGenerationPipeline):
    """Translations of texts: ``[{"translation_text": ...}]``. The task name gives the pair
    (``translation_en_to_fr``); ``src_lang`` / ``tgt_lang`` override it."""

    task = "translation"
    return_name = "translation"

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, task: str | None = None,
                 **kwargs: Any) -> None:
        params = getattr(getattr(model, "config", None), "task_specific_params", None) or {}
        if (task in (None, "translation")) and params:
            pair = next((k for k in params if TRANSLATION_TASK.match(k)), None)
            if pair is not None:
                logger.warning('"translation" task was used instead of "translation_XX_to_YY"; '
                               'using the model\'s "%s"', pair)
                task = pair
        super().__init__(model, tokenizer, task=task, **kwargs)

    def _split_parameters(self, params: dict[str, Any]) -> tuple[dict, dict, dict]:
        pre, fwd, post = super()._split_parameters(params)
        if not self._multilingual():
            pair = self._declared_pair(pre.get("src_lang"), pre.get("tgt_lang"))
            if pair is not None and pair[0] != self.task:
                # src_lang/tgt_lang picked another of the model's pairs: its prefix and settings
                settings = dict(pair[1])
                pre["prefix"] = settings.pop("prefix", "")
                for key, value in settings.items():
                    fwd.setdefault(key, value)
        if self._multilingual():
            # the target language's code is the first token generated (mBART), as the reference
            tgt = pre.get("tgt_lang") or self._task_pair()[1]
            if tgt is not None:
                code = self._code(tgt, "tgt_lang")
                fwd.setdefault("forced_bos_token_id", self.tokenizer.convert_tokens_to_ids(code))
        return pre, fwd, post

    def _declared_pairs(self) -> dict[tuple[str, str], tuple[str, dict]]:
        """The pairs a one-pair-at-a-time model says it translates, with the task name and
        settings of each: T5's ``task_specific_params`` "translation_<src>_to_<tgt>" entries, or
        a single-target Marian tokenizer's ``source_lang`` / ``target_lang``; empty when it says
        nothing (then any pair is taken on trust, as the reference takes it)."""
        pairs: dict[tuple[str, str], tuple[str, dict]] = {}
        for key, value in (getattr(self.model.config, "task_specific_params", None) or {}).items():
            match = TRANSLATION_TASK.match(key)
            if match:
                pairs[(match.group(1), match.group(2))] = (key, dict(value or {}))
        src, tgt = getattr(self.tokenizer, "source_lang", None), getattr(self.tokenizer, "target_lang", None)
        # a multi-target Marian (">>fr<<" tokens, target_lang "ROMANCE") picks its language by token
        if not pairs and isinstance(src, str) and isinstance(tgt, str) and \
                not getattr(self.tokenizer, "supported_language_codes", None):
            pairs[(src, tgt)] = (f"translation_{src}_to_{tgt}", {})
        return pairs

    def _declared_pair(self, src_lang: str | None, tgt_lang: str | None) -> tuple[str, dict] | None:
        """The model's pair that the call's (or else the task's) languages name, or a named
        error when the model declares its pairs and this is not one of them."""
        pairs = self._declared_pairs()
        task_src, task_tgt = self._task_pair()
        src, tgt = src_lang or task_src, tgt_lang or task_tgt
        if not pairs or (src is None and tgt is None):
            return None

        def same(a: str | None, b: str) -> bool:
            # "en" and "eng" name one language in two code systems: not a mismatch we can tell
            return a is None or a.lower() == b.lower() or len(a) != len(b)

        found = [pair for pair in pairs if same(src, pair[0]) and same(tgt, pair[1])]
        names = ", ".join(f"{a}->{b}" for a, b in pairs)
        if not found:
            raise InvalidInputError(f"this model translates {names}, not {src or '?'}->{tgt or '?'}: use "
                                    "one of its pairs (src_lang=/tgt_lang=, or the task "
                                    "translation_<src>_to_<tgt>), or a model trained for that pair")
        return pairs[found[0]]   # (a task always names both sides: one pair matches)

    def _multilingual(self) -> bool:
        return getattr(self.tokenizer, "lang_code_to_id", None) is not None

    def _task_pair(self) -> tuple[str | None, str | None]:
        match = TRANSLATION_TASK.match(self.task)
        return (match.group(1), match.group(2)) if match else (None, None)

    def _code(self, lang: str, what: str) -> str:
        """A language as the tokenizer names it: 'fr_XX' as given, 'fr' -> its one code."""
        codes = self.tokenizer.lang_code_to_id
        if lang in codes:
            return lang
        found = [c for c in codes if c.split("_")[0] == lang]
        if len(found) == 1:
            return found[0]
        raise InvalidInputError(f"{what}={lang!r} is not a language code of this tokenizer; use one "
                                f"of {sorted(codes)}")

    def _encode(self, text: str, truncation: bool, src_lang: str | None, tgt_lang: str | None) -> Any:
        if not self._multilingual():  # one language pair per model (Marian, T5 with a prefix)
            return self.tokenizer(text, truncation=truncation)
        task_src, task_tgt = self._task_pair()
        src_lang = src_lang or task_src
        if src_lang is None or (tgt_lang or task_tgt) is None:
            raise InvalidInputError("this model translates between many languages: say which, with "
                                    "src_lang= and tgt_lang= (e.g. 'en_XX', 'fr_XX') or a task named "
                                    "translation_<src>_to_<tgt>")
        self.tokenizer.src_lang = self._code(src_lang, "src_lang")  # as the reference: on the tokenizer
        return self.tokenizer(text, truncation=truncation)

    def _warn_lengths(self, input_length: int, max_length: int | None) -> None:
        if max_length is not None and input_length > 0.9 * max_length:
            logger.warning("translation: the input is %d tokens, more than 0.9 * max_length (%d); "
                           "the translation may be cut short: consider a larger max_length",
                           input_length, max_length)
