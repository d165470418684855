"""token-classification / ner against the reference's goldens (transformers 5.x on the tiny
pipe-bert-ner checkpoint): every aggregation strategy, ignore_labels, pre-split words, long
inputs with stride, batches, generators; plus long inputs without stride and bad inputs."""

from __future__ import annotations

import pytest

from pipeline_goldens import assert_same, case, case_ids, get_pipe, model_path, run
from pretrained.errors import InvalidInputError
from pretrained.pipelines import pipeline

FILE = "token_classification.json"
TASK = "token-classification"
STRATEGIES = ("none", "simple", "first", "average", "max")
# The reference cuts a text longer than the model off; we process it whole (tested below).
CUT_OFF = [n for n in case_ids(FILE) if n.endswith("_long_truncated")]


@pytest.mark.parametrize("name", [n for n in case_ids(FILE) if n not in CUT_OFF])
def test_equals_reference(name):
    c = case(FILE, name)
    assert_same(run(TASK, c), c["output"])


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("batch_size", [2, 4])
def test_batched_equals_reference(strategy, batch_size):
    c = case(FILE, f"{strategy}_list")
    assert_same(run(TASK, c, batch_size=batch_size), c["output"])


def _plain(s: str) -> str:
    """Lower case, no accents, no whitespace: how the uncased tokenizer sees a word."""
    import unicodedata

    s = unicodedata.normalize("NFD", s.lower())
    return "".join(ch for ch in s if not unicodedata.combining(ch) and not ch.isspace())


@pytest.mark.parametrize("strategy", ["first", "simple"])
def test_entities_are_character_spans_of_the_text(strategy):
    c = case(FILE, f"{strategy}_keep_O")
    out = run(TASK, c)
    for text, entities in zip(c["inputs"], out):
        assert entities
        for e in entities:
            assert _plain(text[e["start"]:e["end"]]) == _plain(e["word"].replace("##", ""))


# --- long inputs without stride: windows, not a cut-off ----------------------------------------
def _window_two_start(text: str, stride: int) -> int:
    """Character offset where the second window starts (62 tokens per window, overlap stride)."""
    from pretrained import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path("pipe-bert-ner"))
    offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return offsets[62 - stride][0]


def test_long_text_none_is_numbered_across_windows():
    c = case(FILE, "none_long_truncated")
    ours, ref = run(TASK, c), c["output"]
    assert_same(ours[:len(ref)], ref)  # the first window is what the reference returns
    assert len(ours) > 2 * len(ref)  # ... and the rest of the text is there too
    indexes = [e["index"] for e in ours]
    assert indexes == sorted(set(indexes)) and ours[-1]["end"] > len(c["inputs"]) - 10


@pytest.mark.parametrize("strategy", ["simple", "first", "average", "max"])
def test_long_text_grouped_covers_the_whole_text(strategy):
    c = case(FILE, f"{strategy}_long_truncated")
    ours, ref = run(TASK, c), c["output"]
    cut = _window_two_start(c["inputs"], 64 // 4)
    before = [e for e in ref if e["end"] <= cut]
    assert len(before) > 3
    assert_same(ours[:len(before)], before)  # unaffected by the window merge
    assert ours[-1]["end"] > len(c["inputs"]) - 15  # the end of the text is labelled too
    starts = [e["start"] for e in ours]
    assert starts == sorted(starts) and all(a["end"] <= b["start"] for a, b in zip(ours, ours[1:]))


def test_long_text_with_stride_equals_reference_batched():
    c = case(FILE, "simple_long_list_stride_batch")
    assert_same(run(TASK, c, batch_size=1), c["output"])


# --- bad inputs ------------------------------------------------------------------------------
def test_empty_and_whitespace_only_text_give_no_entities():
    for name in ("empty_string", "whitespace_only", "empty_string_none"):
        c = case(FILE, name)
        assert c["output"] == [] and run(TASK, c) == []


def test_stride_errors():
    c = case(FILE, "stride_too_large")
    assert c["error"]["type"] == "ValueError"
    with pytest.raises(InvalidInputError, match=r"stride=64 must be less than the model's length \(64\)"):
        run(TASK, c)
    ner = pipeline(TASK, model=model_path("pipe-bert-ner"))
    with pytest.raises(InvalidInputError, match="aggregation_strategy other than 'none'"):
        ner("hello", stride=8, aggregation_strategy="none")
    with pytest.raises(InvalidInputError, match="stride must be an integer >= 0"):
        ner("hello", stride=-1, aggregation_strategy="simple")


@pytest.mark.parametrize("inputs, kwargs, match", [
    (42, {}, "cannot take int input"),
    ([1, 2], {}, "must be a string, got int"),
    ("hello", {"aggregation_strategy": "longest"}, "aggregation_strategy='longest' is not known"),
    ("hello", {"ignore_labels": "O"}, "ignore_labels must be a list"),
    ([["a", 1]], {"is_split_into_words": True}, "must be a list of words"),
])
def test_bad_inputs_and_parameters(inputs, kwargs, match):
    ner = get_pipe(TASK, case(FILE, "default_single"))
    with pytest.raises(InvalidInputError, match=match):
        ner(inputs, **kwargs)


def test_pre_split_single_sentence_is_wrapped_like_the_reference():
    c = case(FILE, "simple_split_words")
    out = run(TASK, c)
    assert isinstance(out, list) and len(out) == 1 and isinstance(out[0], list)
