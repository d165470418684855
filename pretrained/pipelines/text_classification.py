"""Text classification ("text-classification", alias "sentiment-analysis").

Output shapes follow the reference exactly:

* a string, ``top_k`` not passed to the call: ``[{"label", "score"}]`` (the best label, in a list);
* a list of strings: one ``{"label", "score"}`` per string;
* ``top_k=k`` (or ``None`` for every label) passed: a list of k dicts per input, best first
  (a list of such lists for a list input);
* a pair ``{"text": ..., "text_pair": ...}``: like a string but without the outer list.

``function_to_apply``: "softmax", "sigmoid" or "none"; by default chosen from the config like the
reference: regression -> none; multi-label or a single label -> sigmoid; else softmax.

Example::

    >>> from pretrained import pipeline                                         # doctest: +SKIP
    >>> clf = pipeline("sentiment-analysis", model="path/to/sst2-model")       # doctest: +SKIP
    >>> clf("I love it")                                                        # doctest: +SKIP
    [{'label': 'POSITIVE', 'score': 0.9998}]
    >>> clf(["I love it", "I hate it"], top_k=None)                             # doctest: +SKIP
    [[{'label': 'POSITIVE', ...}, {'label': 'NEGATIVE', ...}], [...]]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..errors import InvalidInputError
from .base import UNSET, Pipeline

__all__ = ["TextClassificationPipeline"]

FUNCTIONS = ("softmax", "sigmoid", "none")
_PAIR_HINT = ('to classify a text pair, pass a dict {"text": "My text", "text_pair": "My pair"} '
              "(or a list of such dicts)")


class TextClassificationPipeline(Pipeline):
    """Scores labels for a text or a text pair with a sequence-classification model."""

    task = "text-classification"
    head = "sequence-classification"

    def _sanitize_parameters(
        self,
        *,
        top_k: int | None = UNSET,
        function_to_apply: str | None = None,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        tokenizer_kwargs: dict | None = None,
    ) -> tuple[dict, dict, dict]:
        pre: dict[str, Any] = dict(tokenizer_kwargs or {})
        if truncation is not None:
            pre["truncation"] = truncation
        if max_length is not None:
            pre["max_length"] = max_length
        post: dict[str, Any] = {}
        if top_k is not UNSET:
            if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
                raise InvalidInputError(f"top_k must be an integer >= 0 or None (every label), got {top_k!r}")
            post["top_k"] = top_k
        if function_to_apply is not None:
            name = str(getattr(function_to_apply, "value", function_to_apply)).lower()
            if name not in (*FUNCTIONS, "default"):
                raise InvalidInputError(
                    f"function_to_apply={function_to_apply!r} is not known; use one of {FUNCTIONS} "
                    "(or 'default' to choose from the model's config)"
                )
            if name != "default":
                post["function_to_apply"] = name
        return pre, {}, post

    def __call__(self, inputs: Any, **params: Any) -> Any:
        """Classify a text, a pair dict, a list of them, or an iterable (a generator back)."""
        result = self._run(inputs, params)
        if isinstance(inputs, str) and "top_k" not in params:
            return [result]  # the reference's shape for a single string
        return result

    def _input_help(self) -> str:
        return 'a string, a {"text", "text_pair"} dict, a list of them, or an iterable of them'

    def preprocess(self, item: Any, **tokenizer_kwargs: Any) -> list[dict[str, Any]]:
        if isinstance(item, str):
            enc = self.tokenizer(item, **tokenizer_kwargs)
        elif isinstance(item, Mapping):
            extra = set(item) - {"text", "text_pair"}
            if "text" not in item or extra:
                raise InvalidInputError(
                    f"a text-classification input dict needs the key 'text' (and optionally "
                    f"'text_pair'), got keys {sorted(item)}"
                )
            enc = self.tokenizer(text=item["text"], text_pair=item.get("text_pair"), **tokenizer_kwargs)
        elif isinstance(item, (list, tuple)):
            raise InvalidInputError(f"got a {type(item).__name__} as one input; {_PAIR_HINT}")
        else:
            raise InvalidInputError(f"a text-classification input must be a string or a dict, got "
                                    f"{type(item).__name__}")
        self._check_length(len(enc["input_ids"]),
                           "pass truncation=True to cut it to the model's length")
        return [dict(enc)]

    def postprocess(self, output: dict[str, Any], top_k: int | None = UNSET,
                    function_to_apply: str | None = None) -> Any:
        config = self.model.config
        logits = output["logits"]
        fn = function_to_apply or _default_function(config)
        if fn == "softmax":
            scores = torch.softmax(logits, dim=-1)
        elif fn == "sigmoid":
            scores = torch.sigmoid(logits)
        else:
            scores = logits
        values = scores.tolist()
        id2label = getattr(config, "id2label", None) or {}
        labels = [id2label.get(i, f"LABEL_{i}") for i in range(len(values))]
        if top_k is UNSET:  # the reference's legacy default: the best label as a dict
            best = int(scores.argmax())
            return {"label": labels[best], "score": values[best]}
        ranked = sorted(({"label": labels[i], "score": v} for i, v in enumerate(values)),
                        key=lambda d: d["score"], reverse=True)
        return ranked if top_k is None else ranked[:top_k]


def _default_function(config: Any) -> str:
    problem = getattr(config, "problem_type", None)
    num_labels = getattr(config, "num_labels", 2)
    if problem == "regression":
        return "none"
    if problem == "multi_label_classification" or num_labels == 1:
        return "sigmoid"
    if problem == "single_label_classification" or num_labels > 1:
        return "softmax"
    fn = getattr(config, "function_to_apply", None)
    return fn if fn in FUNCTIONS else "none"
