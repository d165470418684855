"""text-classification against the reference's goldens (transformers 5.x pipeline outputs on the
tiny pipe-bert-* checkpoints; scripts/golden_pipelines.py), plus batching and bad inputs."""

from __future__ import annotations

import pytest

from pipeline_goldens import assert_same, case, case_ids, get_pipe, model_path, run
from pretrained.errors import InvalidInputError
from pretrained.pipelines import pipeline

FILE = "text_classification.json"
TASK = "text-classification"


@pytest.mark.parametrize("name", case_ids(FILE))
def test_equals_reference(name):
    c = case(FILE, name)
    assert_same(run(TASK, c), c["output"])


@pytest.mark.parametrize("name", ["list", "list_top_k_none", "pair_list", "multilabel_default",
                                  "regression_default_none", "function_sigmoid"])
@pytest.mark.parametrize("batch_size", [2, 4])
def test_batched_equals_reference(name, batch_size):
    c = case(FILE, name)
    assert_same(run(TASK, c, batch_size=batch_size), c["output"])


def test_output_shapes_follow_the_reference():
    clf = get_pipe(TASK, case(FILE, "single"))
    single = clf("hello world")
    assert isinstance(single, list) and len(single) == 1 and set(single[0]) == {"label", "score"}
    assert isinstance(clf({"text": "a", "text_pair": "b"}), dict)
    assert isinstance(clf(["a", "b"])[0], dict)
    assert isinstance(clf(["a", "b"], top_k=1)[0], list)
    assert [d["label"] for d in clf("a", top_k=None)] != [] and len(clf("a", top_k=None)) == 2


# --- bad inputs ------------------------------------------------------------------------------
def test_empty_and_whitespace_only_text_are_classified_like_the_reference():
    # the reference classifies "[CLS] [SEP]": a label, not an error
    for name in ("empty_string", "whitespace_only"):
        c = case(FILE, name)
        assert_same(run(TASK, c), c["output"])


def test_input_over_max_length_is_a_clear_error():
    c = case(FILE, "long_no_truncation")
    assert c["error"]["type"] == "RuntimeError"  # the reference fails deep in the embeddings
    with pytest.raises(InvalidInputError, match=r"224 tokens is longer than this model takes \(64\).*truncation=True"):
        run(TASK, c)
    assert_same(run(TASK, case(FILE, "long_truncated")), case(FILE, "long_truncated")["output"])


def test_list_pair_is_a_clear_error():
    c = case(FILE, "pair_legacy_list_of_list")
    assert c["error"]["type"] == "ValueError"
    with pytest.raises(InvalidInputError, match=r'pass a dict \{"text": "My text", "text_pair": "My pair"\}'):
        run(TASK, c)


@pytest.mark.parametrize("bad, match", [
    ({"txt": "a"}, r"needs the key 'text'.*got keys \['txt'\]"),
    ({"text": "a", "pair": "b"}, "needs the key 'text'"),
    ([3], "must be a string or a dict, got int"),
])
def test_malformed_items(bad, match):
    clf = pipeline(TASK, model=model_path("pipe-bert-sentiment"))
    with pytest.raises(InvalidInputError, match=match):
        clf(bad)


@pytest.mark.parametrize("kwargs, match", [
    ({"function_to_apply": "relu"}, "function_to_apply='relu' is not known"),
    ({"top_k": -1}, "top_k must be an integer >= 0"),
    ({"top_k": "all"}, "top_k must be"),
])
def test_bad_parameters(kwargs, match):
    clf = pipeline(TASK, model=model_path("pipe-bert-sentiment"))
    with pytest.raises(InvalidInputError, match=match):
        clf("hello", **kwargs)


def test_default_function_is_read_from_the_config():
    clf = pipeline(TASK, model=model_path("pipe-bert-sentiment"))
    assert clf("hello", function_to_apply="default") == clf("hello")
    scores = [d["score"] for d in clf("hello world", top_k=None)]
    assert abs(sum(scores) - 1) < 1e-6  # two labels, single-label: softmax
