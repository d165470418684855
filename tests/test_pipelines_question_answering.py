"""question-answering against the goldens of transformers 4.57.6 (the last reference release with
this pipeline) on the tiny pipe-bert-qa checkpoint: top_k, long contexts split with doc_stride,
max_seq_len, max_answer_len, impossible answers, word alignment, batches, generators; plus the
bad inputs."""

from __future__ import annotations

import pytest

from pipeline_goldens import assert_same, case, case_ids, get_pipe, run
from pretrained.errors import InvalidInputError

FILE = "question_answering.json"
TASK = "question-answering"


@pytest.mark.parametrize("name", case_ids(FILE))
def test_equals_reference(name):
    c = case(FILE, name)
    assert_same(run(TASK, c), c["output"])


@pytest.mark.parametrize("name", ["list_of_dicts", "questions_and_contexts", "batch_3"])
@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_batch_size_does_not_change_answers(name, batch_size):
    c = case(FILE, name)
    assert_same(run(TASK, c, batch_size=batch_size), c["output"])


def test_answers_are_character_spans_of_the_context():
    c = case(FILE, "long_stride_16")
    context = c["inputs"]["context"]
    answers = run(TASK, c)
    assert len(answers) == 5
    for a in answers:
        assert context[a["start"]:a["end"]] == a["answer"] and a["answer"]
    scores = [a["score"] for a in answers]
    assert scores == sorted(scores, reverse=True)


def test_long_context_finds_answers_in_later_windows():
    c = case(FILE, "long_default_stride")  # ~110 tokens at max_seq_len 64: several windows
    answers = run(TASK, c)
    assert max(a["start"] for a in answers) > 300  # far past what one window of 64 tokens holds


def test_context_with_no_answer():
    # handle_impossible_answer: the empty answer competes with the spans
    c = case(FILE, "impossible_top_1")
    assert_same(run(TASK, c), c["output"])
    qa = get_pipe(TASK, c)
    out = qa(question="Why?", context="hello world", handle_impossible_answer=True, top_k=5)
    assert {"score", "start", "end", "answer"} == set(out[0])
    # (a zero-score span on the CLS token also reads as "", as in the reference)
    null = [a for a in out if a["answer"] == "" and a["score"] > 0]
    assert len(null) == 1 and null[0]["start"] == null[0]["end"] == 0 and null[0]["score"] < 1
    # a context without any word: the reference's empty zero-score answer
    assert_same(run(TASK, case(FILE, "whitespace_context")), {"score": 0.0, "start": 0, "end": 0, "answer": ""})


@pytest.mark.parametrize("name, match", [
    ("empty_question", "question is empty"),
    ("empty_context", "context is empty"),
    ("question_too_long", r"question does not fit in max_seq_len=64"),
    ("top_k_0", "top_k must be >= 1, got 0"),
    ("max_answer_len_0", "max_answer_len must be >= 1, got 0"),
    ("stride_over_seq_len", r"doc_stride \(100\) is larger than max_seq_len \(40\)"),
])
def test_bad_inputs_are_clear_errors(name, match):
    c = case(FILE, name)
    assert c["error"]["type"] in ("ValueError", "Exception")  # what the reference raised
    with pytest.raises(InvalidInputError, match=match):
        run(TASK, c)


@pytest.mark.parametrize("call, match", [
    (lambda qa: qa(question="Who?"), "needs question= and context="),
    (lambda qa: qa({"question": "Who?"}), "'context' is missing"),
    (lambda qa: qa({"question": 3, "context": "x"}), "question must be a string, got int"),
    (lambda qa: qa(question=["a", "b"], context=["x"]), "got 2 questions but 1 contexts"),
    (lambda qa: qa("just a string"), "cannot take str input; pass question= and context="),
    (lambda qa: qa(["just a string"]), "must be a dict with 'question' and 'context'"),
    (lambda qa: qa(question="Who?", context="Berlin", doc_stride=-1), "doc_stride must be a non-negative"),
])
def test_malformed_calls(call, match):
    qa = get_pipe(TASK, case(FILE, "single"))
    with pytest.raises(InvalidInputError, match=match):
        call(qa)


def test_positional_question_and_context():
    c = case(FILE, "single")
    qa = get_pipe(TASK, c)
    assert_same(qa(c["inputs"]["question"], c["inputs"]["context"]), c["output"])


def test_max_question_len_cuts_the_question():
    qa = get_pipe(TASK, case(FILE, "single"))
    long_q = " ".join(["the"] * 80)  # "the" is one token
    with pytest.raises(InvalidInputError):
        qa(question=long_q, context="Berlin is big")
    cut = qa(question=long_q, context="Berlin is big", max_question_len=10)
    assert cut == qa(question=" ".join(["the"] * 10), context="Berlin is big")
