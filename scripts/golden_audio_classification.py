"""Goldens for the audio-classification pipeline, from the reference 5.x, on a tiny random
Wav2Vec2 classifier (tests/fixtures/models/wav2vec2-audiocls-pipeline: the weights of the
wav2vec2-tiny-seqcls fixture, named labels, and a Wav2Vec2FeatureExtractor):

    /work/refvenv/bin/python scripts/golden_audio_classification.py

Inputs: fixed-seed signals at 16 kHz and at 8 kHz (resampled by the pipeline; the reference needs
torchaudio for that, so the 8-kHz case is resampled here with soxr first, as our loader does).
Writes tests/fixtures/goldens/audio_classification.json.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import transformers

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
SRC = FIX / "models" / "wav2vec2-tiny-seqcls"
DST = FIX / "models" / "wav2vec2-audiocls-pipeline"
LABELS = ["yes", "no", "maybe"]


def signal(seconds: float, seed: int, rate: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * (200 + 40 * seed) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


CASES = {
    "default": (0.5, 1, {}),
    "top_k_2": (0.7, 2, {"top_k": 2}),
    "sigmoid": (0.4, 3, {"function_to_apply": "sigmoid"}),
    "none_top_k_large": (0.6, 4, {"function_to_apply": "none", "top_k": 10}),
}


def main() -> None:
    shutil.rmtree(DST, ignore_errors=True)
    model = transformers.Wav2Vec2ForSequenceClassification.from_pretrained(
        SRC, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    model.save_pretrained(DST)
    transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(DST)
    pipe = transformers.pipeline("audio-classification", model=str(DST))
    out = {"transformers": transformers.__version__, "cases": {}}
    for name, (seconds, seed, kw) in CASES.items():
        result = pipe({"raw": signal(seconds, seed), "sampling_rate": 16000}, **kw)
        out["cases"][name] = {"seconds": seconds, "seed": seed, "kwargs": kw, "output": result}
        print(name, result)
    batch = pipe([{"raw": signal(s, seed), "sampling_rate": 16000} for s, seed, _ in CASES.values()], top_k=1)
    out["batch_top1"] = batch
    (FIX / "goldens" / "audio_classification.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
