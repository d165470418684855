"""decode_asr (the ASR pipeline's joining of chunked Whisper output) against the reference's
``_decode_asr``.

Goldens: tests/fixtures/goldens/whisper_tokenizer/decode_asr.json, recorded by
scripts/golden_whisper_tokenizer.py: real token ids of real English and French sentences, cut into
overlapping windows as the pipeline cuts audio (with strides), timestamps where the words are,
silent windows, a language change, long-form timestamps that start over, prompts.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from pretrained.errors import InvalidInputError, UnsupportedOptionError
from pretrained.pipelines.whisper_decoding import decode_asr, find_longest_common_sequence
from pretrained.tokenization import AutoTokenizer

ROOT = Path(__file__).resolve().parent
GOLDENS = json.loads((ROOT / "fixtures" / "goldens" / "whisper_tokenizer" / "decode_asr.json").read_text("utf-8"))
FOLDERS = {
    "whisper-base": ROOT / "fixtures" / "tokenizers" / "whisper-base",
    "whisper-tiny.en": Path.home() / ".cache" / "pretrained" / "models" / "whisper-tiny.en",
}
CASES = [
    pytest.param(name, i, id=f"{name}-{case['name']}",
                 marks=pytest.mark.skipif(not FOLDERS[name].is_dir(), reason=f"{FOLDERS[name]} missing"))
    for name, cases in GOLDENS.items() for i, case in enumerate(cases)
]  # fmt: skip
_TOKENIZERS: dict = {}


def _tok(name: str):
    if name not in _TOKENIZERS:
        _TOKENIZERS[name] = AutoTokenizer.from_pretrained(FOLDERS[name])
    return _TOKENIZERS[name]


def _outputs(case: dict, kind: str) -> list[dict]:
    """The model outputs as the pipeline hands them over: (1, n) tensors (or arrays, or flat lists)."""
    outs = []
    for o in case["model_outputs"]:
        row = o["tokens"]
        tokens = {"torch": torch.tensor(row), "numpy": np.array(row), "flat": row[0]}[kind]
        outs.append({"tokens": tokens, **({"stride": tuple(o["stride"])} if "stride" in o else {})})
    return outs


def test_goldens_cover_the_cases_the_pipeline_meets():
    names = {c["name"] for c in GOLDENS["whisper-base"]}
    for needed in ("strides_ts0", "strides_ts1", "silent_window_ts1", "languages_ts0_lang1", "languages_ts1_lang1",
                   "unstrided_longform_pair", "unstrided_prompt", "precision_004", "perturbed_overlap_ts0"):
        assert needed in names
    # the synthetic windows really overlap and really carry strides
    case = next(c for c in GOLDENS["whisper-base"] if c["name"] == "strides_ts0")
    assert len(case["model_outputs"]) >= 3 and case["model_outputs"][1]["stride"][1] > 0


@pytest.mark.parametrize(("name", "index"), CASES)
def test_decode_asr_equals_the_reference(name, index):
    case = GOLDENS[name][index]
    kind = ("torch", "numpy", "flat")[index % 3]
    text, optional = decode_asr(_tok(name), _outputs(case, kind), **case["kwargs"])
    assert text == case["expected"]["text"]
    assert json.loads(json.dumps(optional)) == case["expected"]["optional"]


def test_chunk_timestamps_are_tuples_and_fields_follow_the_options():
    case = next(c for c in GOLDENS["whisper-base"] if c["name"] == "languages_ts1_lang1")
    tok = _tok("whisper-base")
    _, optional = decode_asr(tok, _outputs(case, "torch"), return_timestamps=True, return_language=False,
                             time_precision=0.02)  # fmt: skip
    assert all(isinstance(c["timestamp"], tuple) and set(c) == {"text", "timestamp"} for c in optional["chunks"])
    _, optional = decode_asr(tok, _outputs(case, "torch"), return_timestamps=False, return_language=True,
                             time_precision=0.02)  # fmt: skip
    assert all(set(c) == {"text", "language"} for c in optional["chunks"])


def test_missing_end_timestamp_is_warned_about(caplog):
    tok = _tok("whisper-base")
    ids = [50258, 50259, 50359, 50364, 2425, 13, 50257]  # <|0.00|> Hello. and no end
    with caplog.at_level(logging.WARNING, logger="pretrained.pipelines.whisper_decoding"):
        text, optional = decode_asr(tok, [{"tokens": ids}], return_timestamps=True, return_language=False,
                                    time_precision=0.02)  # fmt: skip
    assert text == " Hello." and optional["chunks"] == [{"text": " Hello.", "timestamp": (0.0, None)}]
    assert "ending timestamp" in caplog.text


def test_word_timestamps_are_refused_by_name():
    with pytest.raises(UnsupportedOptionError, match="return_timestamps=True"):
        decode_asr(_tok("whisper-base"), [{"tokens": [50258]}], return_timestamps="word", return_language=False,
                   time_precision=0.02)  # fmt: skip


def test_bad_tokens_are_named_errors():
    tok = _tok("whisper-base")
    with pytest.raises(InvalidInputError, match="tokens"):
        decode_asr(tok, [{"stride": (30, 0, 0)}], return_timestamps=False, return_language=False, time_precision=0.02)
    with pytest.raises(InvalidInputError, match="one sequence"):
        decode_asr(tok, [{"tokens": torch.zeros(2, 3, dtype=torch.long)}], return_timestamps=False,
                   return_language=False, time_precision=0.02)  # fmt: skip


# find_longest_common_sequence: expected values worked out by hand from the rule (best share of
# equal tokens over the overlap, more than one match; left kept to the overlap's middle).
def test_longest_common_sequence_joins_exact_overlaps():
    assert find_longest_common_sequence([[1, 2, 3, 4, 5], [3, 4, 5, 6, 7]]) == [1, 2, 3, 4, 5, 6, 7]
    assert find_longest_common_sequence([[1, 2, 3], [2, 3, 4], [3, 4, 5]]) == [1, 2, 3, 4, 5]


def test_longest_common_sequence_needs_two_matches():
    # one equal token is no overlap: both sequences are kept whole
    assert find_longest_common_sequence([[1, 2, 3], [3, 9]]) == [1, 2, 3, 3, 9]
    assert find_longest_common_sequence([[1, 2], [7, 8]]) == [1, 2, 7, 8]


def test_longest_common_sequence_splits_a_disagreement_at_the_middle():
    # overlap [3, 4, 5, 6] vs [3, 4, 9, 6]: 3 of 4 equal; left kept for the first half, right after
    assert find_longest_common_sequence([[1, 2, 3, 4, 5, 6], [3, 4, 9, 6, 7]]) == [1, 2, 3, 4, 9, 6, 7]


def test_longest_common_sequence_prefers_the_longer_perfect_match():
    # [1, 2] and [1, 2, 1, 2] both match perfectly; the longer one is the overlap (the epsilon)
    assert find_longest_common_sequence([[1, 2, 1, 2], [1, 2, 1, 2, 3]]) == [1, 2, 1, 2, 3]
