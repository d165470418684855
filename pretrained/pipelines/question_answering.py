"""Extractive question answering ("question-answering"), as transformers 4.57 did it.

The question and the context are tokenized as a pair; a context too long for ``max_seq_len``
tokens (default: the model's length, at most 384) is split into windows that overlap by
``doc_stride`` tokens (default: half of ``max_seq_len``, at most 128). Each window scores every
span of the context (start probability x end probability, spans of at most ``max_answer_len``
tokens); spans are widened to whole words (``align_to_words``), answers with the same text
(ignoring case) add up their scores, and the ``top_k`` best come back as
``{"score", "start", "end", "answer"}`` with ``start``/``end`` character offsets into the
original context (a list when more than one). ``handle_impossible_answer=True`` adds the empty
answer ``{"answer": "", "start": 0, "end": 0}`` with the model's no-answer score.

Example::

    >>> from pretrained import pipeline                                             # doctest: +SKIP
    >>> qa = pipeline("question-answering", model="path/to/squad-model")           # doctest: +SKIP
    >>> qa(question="Where do I live?", context="My name is Wolfgang and I live in Berlin")  # doctest: +SKIP
    {'score': 0.91, 'start': 34, 'end': 40, 'answer': 'Berlin'}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from ..errors import InvalidInputError
from .base import Pipeline

__all__ = ["QuestionAnsweringPipeline"]

_NULL = 1_000_000.0  # the no-answer score before any window is seen


class QuestionAnsweringPipeline(Pipeline):
    """Finds the answer to a question as a span of a context, with a question-answering model."""

    task = "question-answering"
    head = "question-answering"
    token_outputs = ("start_logits", "end_logits")
    chunked = True

    def _sanitize_parameters(
        self,
        *,
        top_k: int | None = None,
        doc_stride: int | None = None,
        max_answer_len: int | None = None,
        max_seq_len: int | None = None,
        max_question_len: int | None = None,
        handle_impossible_answer: bool | None = None,
        align_to_words: bool | None = None,
    ) -> tuple[dict, dict, dict]:
        pre: dict[str, Any] = {}
        for name, value in (("doc_stride", doc_stride), ("max_seq_len", max_seq_len),
                            ("max_question_len", max_question_len)):
            if value is not None:
                low = 0 if name == "doc_stride" else 1
                if isinstance(value, bool) or not isinstance(value, int) or value < low:
                    kind = "non-negative" if low == 0 else "positive"
                    raise InvalidInputError(f"{name} must be a {kind} integer, got {value!r}")
                pre[name] = value
        post: dict[str, Any] = {}
        for name, value in (("top_k", top_k), ("max_answer_len", max_answer_len)):
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise InvalidInputError(f"{name} must be >= 1, got {value!r}")
                post[name] = value
        if handle_impossible_answer is not None:
            post["handle_impossible_answer"] = bool(handle_impossible_answer)
        if align_to_words is not None:
            post["align_to_words"] = bool(align_to_words)
        return pre, {}, post

    def __call__(self, *args: Any, question: str | list[str] | None = None,
                 context: str | list[str] | None = None, **params: Any) -> Any:
        """Answer ``question=`` from ``context=`` (strings, or lists of them), or take
        ``{"question", "context"}`` dicts: one, a list, or an iterable (a generator back)."""
        if args and (question is not None or context is not None):
            raise InvalidInputError("pass the inputs either as question=/context= or positionally, not both")
        if len(args) == 2 and all(isinstance(a, str) for a in args):
            question, context = args
            args = ()
        if args:
            if len(args) > 1:
                raise InvalidInputError("pass one input (a dict, a list of dicts or an iterable of dicts), "
                                        "or question= and context=")
            inputs = args[0]
        elif question is not None and context is not None:
            if isinstance(question, str) and isinstance(context, str):
                inputs = [{"question": question, "context": context}]
            elif isinstance(question, list) and isinstance(context, str):
                inputs = [{"question": q, "context": context} for q in question]
            elif isinstance(question, list) and isinstance(context, list):
                if len(question) != len(context):
                    raise InvalidInputError(f"got {len(question)} questions but {len(context)} contexts; "
                                            "pass as many of each (or one context for all)")
                inputs = [{"question": q, "context": c} for q, c in zip(question, context)]
            else:
                raise InvalidInputError("question= must be a string or a list of strings, and context= a "
                                        "string or a list of the same length")
        else:
            raise InvalidInputError("the question-answering pipeline needs question= and context= "
                                    "(or {'question': ..., 'context': ...} dicts)")
        if isinstance(inputs, Mapping):
            inputs = [inputs]
        elif isinstance(inputs, (list, tuple)):
            inputs = list(inputs)
        elif not isinstance(inputs, Iterable) or isinstance(inputs, str):
            raise InvalidInputError(f"cannot take {type(inputs).__name__} input; pass question= and context=")
        if isinstance(inputs, list):
            for item in inputs:
                _check_example(item)
            if len(inputs) == 1:  # one example: one answer (a dict, or a list for top_k > 1)
                return self._run(inputs[0], params, single=True)
        return self._run(inputs, params, single=False)

    def preprocess(self, item: Any, *, doc_stride: int | None = None, max_seq_len: int | None = None,
                   max_question_len: int | None = None) -> list[dict[str, Any]]:
        _check_example(item)
        question, context = item["question"], item["context"]
        limit = self.max_length or 384
        max_seq_len = min(limit, 384) if max_seq_len is None else max_seq_len
        doc_stride = min(max_seq_len // 2, 128) if doc_stride is None else doc_stride
        if doc_stride > max_seq_len:
            raise InvalidInputError(f"doc_stride ({doc_stride}) is larger than max_seq_len ({max_seq_len}); "
                                    "the windows' overlap must be shorter than a window")
        if max_question_len is not None:  # cut the question after that many tokens
            q = self.tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
            if len(q["input_ids"]) > max_question_len:
                question = question[: q["offset_mapping"][max_question_len - 1][1]]
        question_first = self.tokenizer.padding_side == "right"
        try:
            enc = self.tokenizer(
                text=question if question_first else context,
                text_pair=context if question_first else question,
                truncation="only_second" if question_first else "only_first",
                max_length=max_seq_len, stride=doc_stride, return_token_type_ids=True,
                return_overflowing_tokens=True, return_offsets_mapping=True, return_special_tokens_mask=True,
            )
        except InvalidInputError as e:
            raise InvalidInputError(
                f"the question does not fit in max_seq_len={max_seq_len} tokens with room for the context "
                f"and doc_stride={doc_stride}: shorten the question, or raise max_seq_len / lower "
                f"doc_stride ({e})"
            ) from None
        names = [n for n in self.tokenizer.model_input_names if n in enc]
        cls_id = self.tokenizer.cls_token_id
        features = []
        for i, ids in enumerate(enc["input_ids"]):
            encoding = enc.encodings[i]
            # p_mask: 1 where a token cannot be in the answer (the question, special tokens)
            p_mask = [int(s != 1) if question_first else 0 for s in encoding.sequence_ids]
            if cls_id is not None:  # the CLS token stays selectable (no-answer models use it)
                p_mask = [0 if t == cls_id else m for t, m in zip(ids, p_mask)]
            feat = {n: enc[n][i] for n in names}
            feat.update(p_mask=p_mask, encoding=encoding, context=context, question_first=question_first)
            features.append(feat)
        return features

    def _forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.model(**batch)
        return {"start_logits": out.start_logits, "end_logits": out.end_logits}

    def postprocess(self, outputs: list[dict[str, Any]], top_k: int = 1, handle_impossible_answer: bool = False,
                    max_answer_len: int = 15, align_to_words: bool = True) -> Any:
        null_score = _NULL
        answers: list[dict[str, Any]] = []
        for out in outputs:
            allowed = 1 - np.asarray(out["p_mask"], dtype=np.int64)[None]  # (1, T): 1 where answers may be
            if "attention_mask" in out:
                allowed = allowed & np.asarray(out["attention_mask"], dtype=np.int64)[None]
            start = _normalise(out["start_logits"].numpy()[None], allowed)
            end = _normalise(out["end_logits"].numpy()[None], allowed)
            if handle_impossible_answer:
                null_score = min(null_score, (start[0, 0] * end[0, 0]).item())
            start[0, 0] = end[0, 0] = 0.0  # the CLS position is the no-answer, not a span
            candidates = _best_spans(start, end, top_k * 2 + 10 if align_to_words else top_k,
                                     max_answer_len, allowed)
            enc, context = out["encoding"], out["context"]
            seq = 1 if out["question_first"] else 0
            for s, e, score in candidates:
                lo, hi = _char_span(enc, s, e, seq, align_to_words)
                text = context[lo:hi]
                same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
                if same is not None:  # the same answer from another span or window: add up
                    same["score"] += score
                else:
                    answers.append({"score": score, "start": lo, "end": hi, "answer": text})
        if handle_impossible_answer:
            answers.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
        return answers[0] if len(answers) == 1 else answers


def _check_example(item: Any) -> None:
    if not isinstance(item, Mapping):
        raise InvalidInputError(f"a question-answering input must be a dict with 'question' and 'context', "
                                f"got {type(item).__name__}")
    for key in ("question", "context"):
        if key not in item:
            raise InvalidInputError(f"a question-answering input needs the keys 'question' and 'context'; "
                                    f"{key!r} is missing (got {sorted(item)})")
        value = item[key]
        if not isinstance(value, str):
            raise InvalidInputError(f"{key} must be a string, got {type(value).__name__}")
        if not value:
            raise InvalidInputError(f"{key} is empty; pass a non-empty {key}")


def _normalise(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Softmax over the positions that may be in an answer (others get a -10000 logit)."""
    x = np.where(allowed == 0, -10000.0, logits)
    x = np.exp(x - x.max(axis=-1, keepdims=True))
    return x / x.sum()


def _best_spans(start: np.ndarray, end: np.ndarray, k: int, max_answer_len: int,
                allowed: np.ndarray) -> list[tuple[int, int, float]]:
    """The k best (start, end) token spans with end >= start and at most max_answer_len tokens
    (scores start[s] * end[e]), then kept if both ends are allowed tokens."""
    scores = np.tril(np.triu(start[:, :, None] * end[:, None, :]), max_answer_len - 1)  # (1, T, T)
    flat = scores.ravel()
    if k == 1:
        best = np.array([np.argmax(flat)])
    elif flat.size < k:
        best = np.argsort(-flat)
    else:
        top = np.argpartition(-flat, k)[:k]
        best = top[np.argsort(-flat[top])]
    starts, ends = np.unravel_index(best, scores.shape)[1:]
    # membership is tested against both index arrays of nonzero() (rows are all 0), as the reference
    ok_positions = allowed.nonzero()
    keep = np.isin(starts, ok_positions) & np.isin(ends, ok_positions)
    return [(int(s), int(e), scores[0, s, e].item()) for s, e in zip(starts[keep], ends[keep])]


def _char_span(enc: Any, s: int, e: int, seq: int, align_to_words: bool) -> tuple[int, int]:
    """Token span -> character span of the context; widened to whole words when asked."""
    if align_to_words:
        try:
            first, last = enc.token_to_word(s), enc.token_to_word(e)
            return enc.word_to_chars(first, seq)[0], enc.word_to_chars(last, seq)[1]
        except Exception:  # a special token or a tokenizer without words: keep the token offsets
            pass
    return enc.offsets[s][0], enc.offsets[e][1]
