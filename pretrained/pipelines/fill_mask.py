"""Fill-mask ("fill-mask"): the most likely tokens for each mask token of a text.

For one mask: a list of ``{"score", "token", "token_str", "sequence"}`` (``top_k`` of them, best
first; ``sequence`` is the text with the token filled in, without special tokens). For several
masks in one text: one such list per mask (the probabilities of each position on its own, as the
reference; ``sequence`` then keeps the special tokens so the other masks stay visible).

``targets`` limits the candidates to the given words; a word that is not one token of the
vocabulary is replaced by its first token (with a warning), as the reference does.

Example::

    >>> from pretrained import pipeline                                           # doctest: +SKIP
    >>> fill = pipeline("fill-mask", model="path/to/bert")                        # doctest: +SKIP
    >>> fill("Paris is the [MASK] of France.", top_k=2, targets=["capital", "city"])  # doctest: +SKIP
    [{'score': 0.93, 'token': 3007, 'token_str': 'capital', 'sequence': 'paris is the capital of france.'}, ...]
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..errors import InvalidInputError
from .base import Pipeline

__all__ = ["FillMaskPipeline"]

logger = logging.getLogger("pretrained")


class FillMaskPipeline(Pipeline):
    """Predicts the token under each mask token with a masked-LM model."""

    task = "fill-mask"
    head = "masked-lm"
    token_outputs = ("logits",)

    def __init__(self, model: Any, tokenizer: Any, **kwargs: Any) -> None:
        if tokenizer is not None and tokenizer.mask_token_id is None:
            raise InvalidInputError("the fill-mask pipeline needs a tokenizer with a mask token; this one "
                                    "defines none (set tokenizer.mask_token)")
        super().__init__(model, tokenizer, **kwargs)

    def _sanitize_parameters(self, *, top_k: int | None = None, targets: str | list[str] | None = None,
                             tokenizer_kwargs: dict | None = None) -> tuple[dict, dict, dict]:
        pre = {"tokenizer_kwargs": dict(tokenizer_kwargs)} if tokenizer_kwargs else {}
        post: dict[str, Any] = {}
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
                raise InvalidInputError(f"top_k must be a positive integer, got {top_k!r}")
            post["top_k"] = top_k
        if targets is not None:
            post["target_ids"] = self._target_ids(targets)
        return pre, {}, post

    def _target_ids(self, targets: str | list[str]) -> list[int]:
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) for t in targets):
            raise InvalidInputError(f"targets must be a string or a list of strings, got {targets!r}")
        vocab = self.tokenizer.get_vocab()
        ids = []
        for target in targets:
            idx = vocab.get(target)
            if idx is None:
                pieces = self.tokenizer(target, add_special_tokens=False, return_attention_mask=False,
                                        return_token_type_ids=False)["input_ids"]
                if not pieces:
                    logger.warning("The target %r is not in the model's vocabulary and tokenizes to "
                                   "nothing: it is ignored", target)
                    continue
                idx = pieces[0]
                logger.warning("The target %r is not in the model's vocabulary; using its first token %r "
                               "instead", target, self.tokenizer.convert_ids_to_tokens(idx))
            ids.append(int(idx))
        ids = list(set(ids))  # de-duplicated in the reference's (set) order
        if not ids:
            raise InvalidInputError(f"targets={targets!r}: none of them gives a token; pass at least one "
                                    "target that is a word of the vocabulary")
        return ids

    def __call__(self, inputs: Any, **params: Any) -> Any:
        """Fill the masks of a text, a list of texts, or an iterable of texts (a generator back)."""
        out = self._run(inputs, params)
        if isinstance(inputs, list) and len(inputs) == 1:
            return out[0]  # the reference's shape for a list of one text
        return out

    def _is_single(self, inputs: Any) -> bool:
        return isinstance(inputs, str)

    def preprocess(self, item: Any, tokenizer_kwargs: dict | None = None) -> list[dict[str, Any]]:
        if not isinstance(item, str):
            raise InvalidInputError(f"a fill-mask input must be a string, got {type(item).__name__}")
        enc = self.tokenizer(item, **(tokenizer_kwargs or {}))
        if self.tokenizer.mask_token_id not in enc["input_ids"]:
            raise InvalidInputError(
                f"no mask token ({self.tokenizer.mask_token}) found in the input {item[:80]!r}; put "
                f"{self.tokenizer.mask_token} where the model should fill in a word"
            )
        self._check_length(len(enc["input_ids"]), "pass tokenizer_kwargs={'truncation': True} to cut it")
        return [dict(enc)]

    def _forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"logits": self.model(**batch).logits}

    def postprocess(self, output: dict[str, Any], top_k: int = 5, target_ids: list[int] | None = None) -> Any:
        ids = torch.as_tensor(output["input_ids"])
        masked = torch.nonzero(ids == self.tokenizer.mask_token_id).squeeze(-1)  # (M,)
        probs = output["logits"][masked].softmax(dim=-1)  # (M, V)
        if target_ids is not None:
            probs = probs[..., torch.tensor(target_ids)]
        values, predictions = probs.topk(min(top_k, probs.shape[-1]))
        single = values.shape[0] == 1
        pad = self.tokenizer.pad_token_id
        rows = []
        for i, (vals, preds) in enumerate(zip(values.tolist(), predictions.tolist())):
            row = []
            for v, p in zip(vals, preds):
                token = target_ids[p] if target_ids is not None else p
                filled = ids.clone()
                filled[masked[i]] = token
                filled = filled[filled != pad] if pad is not None else filled
                row.append({"score": v, "token": token, "token_str": self.tokenizer.decode([token]),
                            "sequence": self.tokenizer.decode(filled.tolist(), skip_special_tokens=single)})
            rows.append(row)
        return rows[0] if single else rows
