"""Token classification ("token-classification", alias "ner").

Each token gets the label with the highest probability; ``aggregation_strategy`` then groups them
exactly as the reference does:

* ``"none"``: one ``{"entity", "score", "index", "word", "start", "end"}`` per token;
* ``"simple"``: adjacent tokens with the same tag (``B-X`` starts a group, ``I-X`` continues it)
  become one ``{"entity_group", "score" (mean), "word", "start", "end"}``;
* ``"first"`` / ``"average"`` / ``"max"``: first the sub-word tokens of each word are merged so a
  word has one label (the first token's / the averaged scores' / the most confident token's),
  then words are grouped as in "simple".

Tokens whose label is in ``ignore_labels`` (default ``["O"]``) are dropped. ``start``/``end`` are
character offsets in the original text (from the tokenizer's offset mapping); a word is made of
sub-words by the tokenizer's continuing-subword prefix ("##") or, for tokenizers without one, by
the absence of a space before it.

Long inputs: with ``stride=N`` the text is split into windows of the model's length that overlap
by N tokens, and the entities of overlapping windows are merged (reference behaviour; not
allowed with "none"). Unlike the reference, a text longer than the model's length is never cut
off silently: without ``stride`` it is still split into windows (overlapping by a quarter of the
length for grouped strategies; without overlap for "none", where ``index`` is then the token's
position in the whole text's tokenization).

Example::

    >>> from pretrained import pipeline                                              # doctest: +SKIP
    >>> ner = pipeline("ner", model="path/to/ner-model", aggregation_strategy="simple")  # doctest: +SKIP
    >>> ner("My name is Wolfgang and I live in Berlin")                              # doctest: +SKIP
    [{'entity_group': 'PER', 'score': 0.99, 'word': 'wolfgang', 'start': 11, 'end': 19}, ...]
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from .base import Pipeline

__all__ = ["TokenClassificationPipeline", "AGGREGATION_STRATEGIES"]

logger = logging.getLogger("pretrained")

AGGREGATION_STRATEGIES = ("none", "simple", "first", "average", "max")
_WORD_STRATEGIES = ("first", "average", "max")


class TokenClassificationPipeline(Pipeline):
    """Labels each token (or word, or entity span) of a text with a token-classification model."""

    task = "token-classification"
    head = "token-classification"
    token_outputs = ("logits",)
    chunked = True

    def _sanitize_parameters(
        self,
        *,
        aggregation_strategy: str | None = None,
        ignore_labels: list[str] | None = None,
        stride: int | None = None,
        is_split_into_words: bool = False,
        delimiter: str | None = None,
    ) -> tuple[dict, dict, dict]:
        pre: dict[str, Any] = {"is_split_into_words": bool(is_split_into_words)}
        if is_split_into_words:
            pre["delimiter"] = " " if delimiter is None else delimiter
        post: dict[str, Any] = {}
        if aggregation_strategy is not None:
            name = str(getattr(aggregation_strategy, "value", aggregation_strategy)).lower()
            if name not in AGGREGATION_STRATEGIES:
                raise InvalidInputError(f"aggregation_strategy={aggregation_strategy!r} is not known; "
                                        f"use one of {AGGREGATION_STRATEGIES}")
            post["aggregation_strategy"] = pre["aggregation_strategy"] = name
        if ignore_labels is not None:
            if isinstance(ignore_labels, str):
                raise InvalidInputError(f"ignore_labels must be a list of labels, got the string {ignore_labels!r}")
            post["ignore_labels"] = list(ignore_labels)
        if stride is not None:
            if isinstance(stride, bool) or not isinstance(stride, int) or stride < 0:
                raise InvalidInputError(f"stride must be an integer >= 0, got {stride!r}")
            limit = self.max_length
            if limit is not None and stride >= limit:
                raise InvalidInputError(f"stride={stride} must be less than the model's length ({limit}), "
                                        "and less still once the special tokens are counted")
            if post.get("aggregation_strategy") == "none":  # passed together, as the reference checks
                raise InvalidInputError(
                    "stride splits the text into overlapping windows, which needs an "
                    "aggregation_strategy other than 'none' (e.g. 'simple' or 'first') to merge them"
                )
            pre["stride"] = stride
        return pre, {}, post

    def __call__(self, inputs: Any, **params: Any) -> Any:
        """Label a text, a list of texts, or an iterable of texts (a generator back). With
        ``is_split_into_words=True`` an input is a list of words (a list of such lists for a batch)."""
        split = params.get("is_split_into_words", self._init_params.get("is_split_into_words", False))
        if split and isinstance(inputs, (list, tuple)) and \
                not all(isinstance(x, (list, tuple)) for x in inputs):
            return self._run([inputs], params)  # one pre-split text; the reference returns a list
        return self._run(inputs, params)

    def _is_single(self, inputs: Any) -> bool:
        return isinstance(inputs, str)

    def preprocess(self, item: Any, *, is_split_into_words: bool = False, delimiter: str = " ",
                   stride: int | None = None, aggregation_strategy: str = "none") -> list[dict[str, Any]]:
        word_chars = None
        if is_split_into_words:
            if not isinstance(item, (list, tuple)) or not all(isinstance(w, str) for w in item):
                raise InvalidInputError("with is_split_into_words=True each input must be a list of words")
            sentence = delimiter.join(item)
            word_chars, at = [], 0  # word -> its character span in the joined sentence
            for w in item:
                word_chars.append((at, at + len(w)))
                at += len(w) + len(delimiter)
            text: Any = list(item)
        else:
            if not isinstance(item, str):
                raise InvalidInputError(f"a token-classification input must be a string, got {type(item).__name__}")
            sentence = text = item
        limit = self.max_length
        kw: dict[str, Any] = {}
        if limit is not None:
            kw.update(truncation=True, max_length=limit)
            if stride is not None:
                kw["stride"] = stride
            elif aggregation_strategy != "none":
                kw["stride"] = limit // 4  # overlapping windows rather than cutting the text off
        enc = self.tokenizer(text, is_split_into_words=is_split_into_words, return_special_tokens_mask=True,
                             return_offsets_mapping=True, return_overflowing_tokens=True, **kw)
        names = [n for n in self.tokenizer.model_input_names if n in enc]
        # Without stride, "none" windows do not overlap: number tokens across the whole text.
        renumber = stride is None and aggregation_strategy == "none"
        features, seen = [], 0
        for i, ids in enumerate(enc["input_ids"]):
            special = enc["special_tokens_mask"][i]
            feat = {n: enc[n][i] for n in names}
            feat.update(special_tokens_mask=special, offsets=enc["offset_mapping"][i], sentence=sentence,
                        index_offset=seen if renumber else 0, overlap=not renumber,
                        word_ids=enc.encodings[i].word_ids if word_chars is not None else None,
                        word_chars=word_chars)
            features.append(feat)
            seen += len(ids) - sum(special)
        if stride is None and len(features) > 1:
            logger.info("token-classification: the text is longer than the model's %s tokens; it is "
                        "processed in %d windows", limit, len(features))
        return features

    # --- postprocessing (the reference's algorithm) ---------------------------------------------
    def postprocess(self, outputs: list[dict[str, Any]], aggregation_strategy: str = "none",
                    ignore_labels: list[str] | None = None) -> list[dict[str, Any]]:
        ignore = ["O"] if ignore_labels is None else ignore_labels
        entities: list[dict[str, Any]] = []
        for out in outputs:
            logits = out["logits"].numpy()
            shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
            scores = shifted / shifted.sum(axis=-1, keepdims=True)
            pre = self._pre_entities(out, scores, aggregation_strategy)
            if out["index_offset"]:
                for p in pre:  # a later window: the token's position in the whole text
                    p["index"] += out["index_offset"]
            for e in self._aggregate(pre, aggregation_strategy):
                if e.get("entity") not in ignore and e.get("entity_group") not in ignore:
                    entities.append(e)
        if len(outputs) > 1 and outputs[0]["overlap"]:
            entities = _merge_overlapping(entities)
        return entities

    def _pre_entities(self, out: dict[str, Any], scores: np.ndarray, strategy: str) -> list[dict]:
        sentence, ids, offsets = out["sentence"], out["input_ids"], out["offsets"]
        word_ids, word_chars = out["word_ids"], out["word_chars"]
        prefix = getattr(self.tokenizer.backend_tokenizer.model, "continuing_subword_prefix", None)
        unk = self.tokenizer.unk_token_id
        warned = False
        pre = []
        for idx, special in enumerate(out["special_tokens_mask"]):
            if special:
                continue
            token_id = int(ids[idx])
            word = self.tokenizer.convert_ids_to_tokens(token_id)
            start, end = offsets[idx]
            if word_ids is not None and word_ids[idx] is not None:
                shift = word_chars[word_ids[idx]][0]  # pre-split words: offsets are per word
                start, end = start + shift, end + shift
            ref = sentence[start:end]
            if prefix:  # a word-aware tokenizer: a sub-word is longer than its text ("##ing")
                is_subword = len(word) != len(ref)
            else:  # fallback: a token not preceded by a space continues the word
                if strategy in _WORD_STRATEGIES and not warned:
                    warnings.warn("Tokenizer does not support real words, using fallback heuristic",
                                  UserWarning, stacklevel=4)
                    warned = True
                is_subword = start > 0 and " " not in sentence[start - 1:start + 1]
            if token_id == unk:
                word, is_subword = ref, False
            pre.append({"word": word, "scores": scores[idx], "start": start, "end": end,
                        "index": idx, "is_subword": is_subword})
        return pre

    def _label(self, i: Any) -> str:
        return self.model.config.id2label[int(i)]

    def _aggregate(self, pre: list[dict], strategy: str) -> list[dict]:
        if strategy in ("none", "simple"):
            entities = []
            for p in pre:
                best = p["scores"].argmax()
                entities.append({"entity": self._label(best), "score": float(p["scores"][best]),
                                 "index": p["index"], "word": p["word"], "start": p["start"], "end": p["end"]})
            if strategy == "none":
                return entities
        else:
            entities, group = [], []
            for p in pre:
                if group and not p["is_subword"]:
                    entities.append(self._merge_word(group, strategy))
                    group = []
                group.append(p)
            if group:
                entities.append(self._merge_word(group, strategy))
        return self._group_entities(entities)

    def _merge_word(self, tokens: list[dict], strategy: str) -> dict:
        if strategy == "first":
            scores = tokens[0]["scores"]
        elif strategy == "max":
            scores = max(tokens, key=lambda t: t["scores"].max())["scores"]
        else:  # average
            scores = np.nanmean(np.stack([t["scores"] for t in tokens]), axis=0)
        best = scores.argmax()
        return {"entity": self._label(best), "score": scores[best],
                "word": self.tokenizer.convert_tokens_to_string([t["word"] for t in tokens]),
                "start": tokens[0]["start"], "end": tokens[-1]["end"]}

    def _group_entities(self, entities: list[dict]) -> list[dict]:
        groups: list[dict] = []
        current: list[dict] = []
        for e in entities:
            if current:
                bi, tag = _tag(e["entity"])
                _, last_tag = _tag(current[-1]["entity"])
                if tag == last_tag and bi != "B":
                    current.append(e)
                    continue
                groups.append(self._group(current))
            current = [e]
        if current:
            groups.append(self._group(current))
        return groups

    def _group(self, entities: list[dict]) -> dict:
        return {
            "entity_group": entities[0]["entity"].split("-", 1)[-1],
            "score": float(np.nanmean([e["score"] for e in entities])),
            "word": self.tokenizer.convert_tokens_to_string([e["word"] for e in entities]),
            "start": entities[0]["start"],
            "end": entities[-1]["end"],
        }


def _tag(label: str) -> tuple[str, str]:
    """("B" or "I", tag); a label without a B-/I- prefix continues ("I")."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _merge_overlapping(entities: list[dict]) -> list[dict]:
    """Entities of overlapping windows: of two that overlap keep the longer (then the surer)."""
    if not entities:
        return entities
    entities = sorted(entities, key=lambda e: e["start"])
    merged, prev = [], entities[0]
    for e in entities:
        if prev["start"] <= e["start"] < prev["end"]:
            longer = (e["end"] - e["start"]) - (prev["end"] - prev["start"])
            if longer > 0 or (longer == 0 and e["score"] > prev["score"]):
                prev = e
        else:
            merged.append(prev)
            prev = e
    merged.append(prev)
    return merged
