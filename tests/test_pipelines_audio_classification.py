"""The audio-classification pipeline against the reference 5.x's outputs on a tiny Wav2Vec2
classifier with named labels (scripts/golden_audio_classification.py), and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pretrained import pipeline
from pretrained.errors import InvalidInputError

FIX = Path(__file__).resolve().parent / "fixtures"
GOLDEN = json.loads((FIX / "goldens" / "audio_classification.json").read_text())
MODEL = FIX / "models" / "wav2vec2-audiocls-pipeline"


def signal(seconds: float, seed: int, rate: int = 16000) -> np.ndarray:   # the golden script's inputs
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * (200 + 40 * seed) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def clf():
    return pipeline("audio-classification", model=str(MODEL))


def _same(got, want):
    assert [g["label"] for g in got] == [w["label"] for w in want]
    assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=1e-5)


@pytest.mark.parametrize("case", sorted(GOLDEN["cases"]))
def test_scores_and_labels_equal_the_references(clf, case):
    spec = GOLDEN["cases"][case]
    _same(clf({"raw": signal(spec["seconds"], spec["seed"]), "sampling_rate": 16000}, **spec["kwargs"]),
          spec["output"])


def test_a_batch_gives_one_answer_per_input(clf):
    inputs = [{"raw": signal(c["seconds"], c["seed"]), "sampling_rate": 16000} for c in GOLDEN["cases"].values()]
    got = clf(inputs, top_k=1)   # one at a time, as the golden was made
    assert len(got) == len(GOLDEN["batch_top1"])
    for g, w in zip(got, GOLDEN["batch_top1"]):
        _same(g, w)


def test_the_task_is_read_from_the_checkpoint_and_needs_no_tokenizer():
    p = pipeline(model=str(MODEL))
    assert p.task == "audio-classification"
    assert p({"raw": signal(0.5, 1), "sampling_rate": 16000}, top_k=1)[0]["label"] == \
        GOLDEN["cases"]["default"]["output"][0]["label"]


def test_errors_name_the_fix(clf):
    with pytest.raises(InvalidInputError, match="top_k"):
        clf({"raw": signal(0.5, 1), "sampling_rate": 16000}, top_k=0)
    with pytest.raises(InvalidInputError, match="function_to_apply"):
        clf({"raw": signal(0.5, 1), "sampling_rate": 16000}, function_to_apply="relu")
    with pytest.raises(InvalidInputError, match="sampling_rate"):
        clf(signal(0.5, 1))
    with pytest.raises(InvalidInputError, match="zero|empty|no samples"):
        clf({"raw": np.zeros(0, np.float32), "sampling_rate": 16000})
    with pytest.raises(InvalidInputError, match="NaN|nan|finite"):
        clf({"raw": np.full(800, np.nan, np.float32), "sampling_rate": 16000})
