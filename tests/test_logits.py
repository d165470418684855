"""Logits processors and warpers against the reference's outputs on the same scores
(tests/fixtures/goldens/generation/logits.*, made by scripts/golden_generation.py)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pretrained.errors import InvalidInputError
from pretrained.generation import (
    LogitsProcessorList,
    MinLengthLogitsProcessor,
    MinNewTokensLengthLogitsProcessor,
    MinPLogitsWarper,
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

GOLDENS = Path(__file__).parent / "fixtures" / "goldens" / "generation"
DATA = load_file(str(GOLDENS / "logits.safetensors"))
META = json.loads((GOLDENS / "logits.json").read_text())
IDS, SCORES, EOS = DATA["input_ids"], DATA["scores"], META["eos_token_id"]


def _cases() -> dict:
    ids = IDS
    return {
        "temperature_0.7": [TemperatureLogitsWarper(0.7)],
        "temperature_1.3": [TemperatureLogitsWarper(1.3)],
        "top_k_5": [TopKLogitsWarper(5)],
        "top_k_1": [TopKLogitsWarper(1)],
        "top_k_1_keep3": [TopKLogitsWarper(1, min_tokens_to_keep=3)],
        "top_k_200": [TopKLogitsWarper(200)],
        "top_p_0.9": [TopPLogitsWarper(0.9)],
        "top_p_0.3": [TopPLogitsWarper(0.3)],
        "top_p_0.0_keep2": [TopPLogitsWarper(0.0, min_tokens_to_keep=2)],
        "top_p_1.0": [TopPLogitsWarper(1.0)],
        "min_p_0.1": [MinPLogitsWarper(0.1)],
        "min_p_0.9_keep3": [MinPLogitsWarper(0.9, min_tokens_to_keep=3)],
        "min_p_0": [MinPLogitsWarper(0.0)],
        "repetition_1.5": [RepetitionPenaltyLogitsProcessor(1.5)],
        "repetition_0.5": [RepetitionPenaltyLogitsProcessor(0.5)],
        "repetition_ignore_prompt": [RepetitionPenaltyLogitsProcessor(
            1.5, prompt_ignore_length=torch.tensor([0, 3, 10, 1, 5]))],
        "no_repeat_2": [NoRepeatNGramLogitsProcessor(2)],
        "no_repeat_3": [NoRepeatNGramLogitsProcessor(3)],
        "no_repeat_11": [NoRepeatNGramLogitsProcessor(11)],
        "bad_words": [NoBadWordsLogitsProcessor(
            [[5], [9], [int(ids[0, -1]), 7], [int(ids[1, -2]), int(ids[1, -1]), 8], [1, 2, 3]],
            eos_token_id=EOS)],
        "min_length_15": [MinLengthLogitsProcessor(15, EOS)],
        "min_length_5": [MinLengthLogitsProcessor(5, EOS)],
        "min_new_tokens_6_5": [MinNewTokensLengthLogitsProcessor(6, 5, EOS)],
        "min_new_tokens_6_4": [MinNewTokensLengthLogitsProcessor(6, 4, EOS[0])],
        "chain": [RepetitionPenaltyLogitsProcessor(1.2), NoRepeatNGramLogitsProcessor(2),
                  TemperatureLogitsWarper(0.8), TopKLogitsWarper(30), TopPLogitsWarper(0.85),
                  MinPLogitsWarper(0.05)],
    }


def test_every_golden_case_is_covered():
    assert sorted(_cases()) == META["cases"]


@pytest.mark.parametrize("name", META["cases"])
def test_processor_matches_reference_bit_for_bit(name):
    scores = SCORES.clone()
    out = LogitsProcessorList(_cases()[name])(IDS, scores)
    expected = DATA[f"out/{name}"]
    assert torch.equal(torch.isinf(out), torch.isinf(expected))
    assert torch.equal(out, expected)
    assert torch.equal(scores, SCORES), "processors must not modify their input"


def test_goldens_exercise_filtering():
    # The fixture is only useful if the processors actually remove something.
    removed = {n: int(torch.isinf(DATA[f"out/{n}"]).sum() - torch.isinf(SCORES).sum()) for n in META["cases"]}
    for name in ("top_k_5", "top_p_0.9", "min_p_0.1", "no_repeat_2", "bad_words", "min_length_15"):
        assert removed[name] > 0, name


def test_top_k_keeps_k_and_ties():
    s = torch.tensor([[1.0, 3.0, 3.0, 2.0, 0.5]])
    assert torch.isfinite(TopKLogitsWarper(2)(None, s)).tolist() == [[False, True, True, False, False]]
    assert torch.isfinite(TopKLogitsWarper(3)(None, s)).sum() == 3


def test_top_p_keeps_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = TopPLogitsWarper(0.75)(None, probs.log())
    assert torch.isfinite(out).tolist() == [[True, True, False, False]]
    out = TopPLogitsWarper(0.85)(None, probs.log())
    assert torch.isfinite(out).tolist() == [[True, True, True, False]]


def test_repetition_penalty_sign_rule():
    s = torch.tensor([[2.0, -2.0, 1.0]])
    out = RepetitionPenaltyLogitsProcessor(2.0)(torch.tensor([[0, 1]]), s)
    assert out.tolist() == [[1.0, -4.0, 1.0]]


def test_no_repeat_ngram_bans_completion():
    ids = torch.tensor([[1, 2, 3, 1]])
    out = NoRepeatNGramLogitsProcessor(2)(ids, torch.zeros(1, 5))
    assert torch.isinf(out).nonzero()[:, 1].tolist() == [2]


def test_bad_words_eos_single_token_is_not_banned():
    proc = NoBadWordsLogitsProcessor([[3], [4]], eos_token_id=3)
    out = proc(torch.tensor([[0]]), torch.zeros(1, 6))
    assert torch.isinf(out).nonzero()[:, 1].tolist() == [4]


def test_bad_words_outside_vocab():
    with pytest.raises(InvalidInputError, match="outside"):
        NoBadWordsLogitsProcessor([[10]])(torch.tensor([[0]]), torch.zeros(1, 5))


@pytest.mark.parametrize("make", [
    lambda: TemperatureLogitsWarper(0.0),
    lambda: TemperatureLogitsWarper(float("nan")),
    lambda: TemperatureLogitsWarper(-1.0),
    lambda: TopKLogitsWarper(0),
    lambda: TopPLogitsWarper(1.5),
    lambda: MinPLogitsWarper(-0.1),
    lambda: RepetitionPenaltyLogitsProcessor(0.0),
    lambda: NoRepeatNGramLogitsProcessor(0),
    lambda: NoBadWordsLogitsProcessor([]),
    lambda: NoBadWordsLogitsProcessor([[1, -2]]),
    lambda: MinLengthLogitsProcessor(-1, 2),
])
def test_invalid_processor_arguments(make):
    with pytest.raises(InvalidInputError):
        make()
