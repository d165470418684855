"""fill-mask against the reference's goldens (transformers 5.x on the tiny pipe-bert-mlm
checkpoint): top_k, targets (in and out of the vocabulary), several masks, batches, generators;
plus the bad inputs."""

from __future__ import annotations

import pytest

from pipeline_goldens import assert_same, case, case_ids, get_pipe, model_path, run
from pretrained.errors import InvalidInputError
from pretrained.pipelines import pipeline

FILE = "fill_mask.json"
TASK = "fill-mask"


@pytest.mark.parametrize("name", case_ids(FILE))
def test_equals_reference(name):
    c = case(FILE, name)
    assert_same(run(TASK, c), c["output"])


@pytest.mark.parametrize("name", ["list", "three_masks_list", "batch_3_targets"])
@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_batch_size_does_not_change_results(name, batch_size):
    c = case(FILE, name)
    assert_same(run(TASK, c, batch_size=batch_size), c["output"])


def test_several_masks_give_one_list_per_mask():
    c = case(FILE, "two_masks_top_k_2")
    out = run(TASK, c)
    assert len(out) == 2 and all(len(row) == 2 for row in out)
    for row in out:  # the other mask stays visible in the sequence
        assert all("[MASK]" in d["sequence"] for d in row)


def test_targets_not_in_vocabulary_use_their_first_token(caplog):
    c = case(FILE, "targets_not_in_vocab")
    with caplog.at_level("WARNING", logger="pretrained"):
        assert_same(run(TASK, c), c["output"])
    assert "'zurichx' is not in the model's vocabulary; using its first token 'zurich'" in caplog.text


# --- bad inputs ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["no_mask", "no_mask_in_list", "empty_string"])
def test_input_without_mask_token_is_a_clear_error(name):
    c = case(FILE, name)
    assert c["error"]["type"] == "PipelineException"
    with pytest.raises(InvalidInputError, match=r"no mask token \(\[MASK\]\) found in the input"):
        run(TASK, c)


def test_targets_that_give_no_token():
    c = case(FILE, "targets_only_empty")
    assert c["error"]["type"] == "ValueError"
    with pytest.raises(InvalidInputError, match=r"targets=\[''\]: none of them gives a token"):
        run(TASK, c)


def test_input_over_max_length():
    fill = get_pipe(TASK, case(FILE, "single"))
    long = "[MASK] " + " ".join(["hello world"] * 60)
    with pytest.raises(InvalidInputError, match=r"longer than this model takes \(64\).*truncation"):
        fill(long)
    c = case(FILE, "long_truncated")
    assert_same(run(TASK, c), c["output"])


@pytest.mark.parametrize("kwargs, match", [
    ({"top_k": 0}, "top_k must be a positive integer"),
    ({"targets": [3]}, "targets must be a string or a list of strings"),
])
def test_bad_parameters(kwargs, match):
    fill = get_pipe(TASK, case(FILE, "single"))
    with pytest.raises(InvalidInputError, match=match):
        fill("hello [MASK]", **kwargs)


def test_top_k_larger_than_the_vocabulary_is_capped():
    fill = get_pipe(TASK, case(FILE, "single"))
    out = fill("hello [MASK]", top_k=10_000)
    assert len(out) == 500 and abs(sum(d["score"] for d in out) - 1) < 1e-4


def test_tokenizer_without_mask_token_is_refused():
    from pretrained import AutoModelForMaskedLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path("pipe-bert-mlm"))
    tok.mask_token = None
    model = AutoModelForMaskedLM.from_pretrained(model_path("pipe-bert-mlm"))
    with pytest.raises(InvalidInputError, match="needs a tokenizer with a mask token"):
        pipeline(TASK, model=model, tokenizer=tok)
