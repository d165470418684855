"""The automatic-speech-recognition pipeline on a CTC model (the tiny Wav2Vec2 fixture with its
feature extractor and character tokenizer) against the reference 5.x pipeline's outputs
(scripts/golden_asr_ctc.py): text, character and word timestamps, chunks with strides, batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pretrained import pipeline
from pretrained.errors import InvalidInputError

FIX = Path(__file__).resolve().parent / "fixtures"
GOLDEN = json.loads((FIX / "goldens" / "asr_ctc.json").read_text())
MODEL = FIX / "models" / "wav2vec2-tiny-ctc"


def signal(seconds: float, seed: int) -> np.ndarray:   # the golden script's input, made the same way
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t)
            + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def asr():
    return pipeline("automatic-speech-recognition", model=str(MODEL))


@pytest.mark.parametrize("case", sorted(GOLDEN["cases"]))
def test_ctc_pipeline_equals_the_references(asr, case):
    spec = GOLDEN["cases"][case]
    got = asr({"raw": signal(spec["seconds"], spec["seed"]), "sampling_rate": 16000}, **spec["kwargs"])
    want = spec["output"]
    assert got["text"] == want["text"]
    assert set(got) == set(want)
    if "chunks" in want:
        assert [c["text"] for c in got["chunks"]] == [c["text"] for c in want["chunks"]]
        got_times = [t for c in got["chunks"] for t in c["timestamp"]]
        assert got_times == pytest.approx([t for c in want["chunks"] for t in c["timestamp"]], abs=1e-9)


def test_ctc_refuses_whisper_options_and_overlong_audio(asr):
    one = {"raw": signal(0.3, 1), "sampling_rate": 16000}
    with pytest.raises(InvalidInputError, match="a CTC model does not generate"):
        asr(one, generate_kwargs={"num_beams": 2})
    with pytest.raises(InvalidInputError, match="'char' or 'word'"):
        asr(one, return_timestamps=True)
    with pytest.raises(InvalidInputError, match="chunk_length_s=30"):
        asr({"raw": np.zeros(16000 * 121, np.float32), "sampling_rate": 16000})
