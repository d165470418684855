"""Goldens for the automatic-speech-recognition pipeline on a CTC model (the tiny random
Wav2Vec2 fixture with its feature extractor and character tokenizer), from the reference 5.x:

    /work/refvenv/bin/python scripts/golden_asr_ctc.py

Audio: a fixed-seed signal of 0.6 s (every call) and 2.4 s (chunked with strides). The model is
random, so its "text" is noise, but every step of the pipeline (features, argmax, strides, the
collapse of repeats and blanks, offsets in seconds) is compared. Writes
tests/fixtures/goldens/asr_ctc.json: case -> {kwargs, input seconds, output}.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import transformers

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
MODEL = FIX / "models" / "wav2vec2-tiny-ctc"


def signal(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


CASES = {
    "plain": (0.6, {}),
    "char_timestamps": (0.6, {"return_timestamps": "char"}),
    "word_timestamps": (0.6, {"return_timestamps": "word"}),
    "chunked": (2.4, {"chunk_length_s": 0.8, "stride_length_s": 0.2}),
    "chunked_batched_words": (2.4, {"chunk_length_s": 0.8, "stride_length_s": [0.1, 0.2], "batch_size": 3,
                                    "return_timestamps": "word"}),
}


def main() -> None:
    pipe = transformers.pipeline("automatic-speech-recognition", model=str(MODEL))
    out = {"transformers": transformers.__version__, "cases": {}}
    for name, (seconds, kw) in CASES.items():
        result = pipe({"raw": signal(seconds, 7), "sampling_rate": 16000}, **kw)
        if "chunks" in result:
            result["chunks"] = [{**c, "timestamp": list(c["timestamp"])} for c in result["chunks"]]
        out["cases"][name] = {"seconds": seconds, "seed": 7, "kwargs": kw, "output": result}
        print(name, json.dumps(result)[:200])
    (FIX / "goldens" / "asr_ctc.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
