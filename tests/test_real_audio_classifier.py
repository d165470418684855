"""The spoken-digit classifier trained here (examples/train_audio_classifier.py, a small Wav2Vec2
trained from scratch on espeak-ng digits; cached under ~/.cache/pretrained/trained/spoken-digits,
not committed), run as a user would through ``pipeline("audio-classification")`` on the files of
voices it never heard: at least the accuracy its training run recorded (results.json), less a
small margin. Where the model has not been trained on this machine the tests say how to make it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pretrained.io.paths import cache_home

FOLDER = cache_home() / "pretrained" / "trained" / "spoken-digits"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MARGIN = 0.02


@pytest.fixture(scope="module")
def trained():
    if not (FOLDER / "results.json").is_file() or not (FOLDER / "model.safetensors").is_file():
        pytest.skip(f"no trained classifier in {FOLDER}: run `python examples/train_audio_classifier.py` "
                    "(about 15 minutes) to make the data set, train and cache it")
    sys.path.insert(0, str(EXAMPLES))
    try:
        import spoken_digits
    finally:
        sys.path.remove(str(EXAMPLES))
    data = spoken_digits.load()   # remade from espeak-ng when absent (deterministic)
    from pretrained import pipeline

    return json.loads((FOLDER / "results.json").read_text()), data, pipeline("audio-classification", model=str(FOLDER))


@pytest.mark.slow
def test_held_out_voices_are_classified_as_accurately_as_recorded(trained):
    results, data, clf = trained
    test_voices = {r["voice"] for r in data["test"]}
    assert test_voices and not test_voices & {r["voice"] for r in data["train"]}
    assert sorted(test_voices) == results["voices"]["test"]
    words = [clf(r["path"], top_k=1)[0]["label"] for r in data["test"]]
    accuracy = sum(w == r["word"] for w, r in zip(words, data["test"])) / len(words)
    assert accuracy >= results["test_accuracy_pipeline"] - MARGIN, (accuracy, results["test_accuracy_pipeline"])
    assert accuracy > 0.5   # chance is 0.1
    batched = clf([r["path"] for r in data["test"][:24]], top_k=1, batch_size=8)
    assert [b[0]["label"] for b in batched] == words[:24]


@pytest.mark.slow
def test_top_k_gives_distinct_digit_words_best_first(trained):
    _, data, clf = trained
    labels = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    for row in data["test"][::80]:
        out = clf(row["path"], top_k=3)
        assert len(out) == 3 and len({o["label"] for o in out}) == 3 and all(o["label"] in labels for o in out)
        scores = [o["score"] for o in out]
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
        every = clf(row["path"])
        assert len(every) == 10 and sum(o["score"] for o in every) == pytest.approx(1.0, abs=1e-5)
        assert every[:3] == out
