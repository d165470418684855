"""Feature extraction speed, pretrained.processing against the reference's extractors, in ONE process.

    /work/refvenv/bin/python benchmarks/bench_audio_features.py [--rounds 7] [--repeats 3]
        [--batches 1,8] [--seconds 60] [--extractors whisper,whisper-numpy,wav2vec2,ast] [--threads N]

Both libraries run in the reference's venv (this repository on ``sys.path``), their calls
interleaved round by round with the order alternating (ours first in even rounds, the reference
first in odd ones), so both see the same machine and the same load of the minute.

Input: ``--seconds`` of synthetic audio at 16 kHz (tones, a chirp and noise; a different seed per
row), ``--batches`` rows per call, as a list of float32 arrays, ``sampling_rate=16000``,
``return_tensors="np"``. Extractors (default settings):
  * ``whisper``: WhisperFeatureExtractor (80 bins; both cut the audio to 30 s); the reference
    runs its torch STFT path, as it does whenever torch is installed;
  * ``whisper-numpy``: the same, the reference forced onto its numpy path (what it runs without
    torch; the issue's ">= 3x against the reference's numpy extractors");
  * ``wav2vec2``: Wav2Vec2FeatureExtractor (normalisation, ``padding=True``);
  * ``ast``: ASTFeatureExtractor (the reference's numpy fbank without torchaudio, else Kaldi's).
Per round and side: one untimed call, then ``--repeats`` timed calls, their median. Reported:
medians over rounds (ms per call) and the median over rounds of the per-round ratio
(reference time / ours). Before timing, each pair's outputs are compared (max abs difference).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

logging.getLogger("transformers").setLevel(logging.ERROR)


def synthetic(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000.0
    wave = (0.4 * np.sin(2 * np.pi * rng.uniform(100, 900) * t)
            + 0.2 * np.sin(2 * np.pi * rng.uniform(1500, 6000) * t)
            + 0.1 * np.sin(2 * np.pi * (200 + 50 * t) * t) + 0.02 * rng.standard_normal(n))
    return wave.astype(np.float32)


@contextmanager
def reference_without_torch():
    """The reference's Whisper extractor as it runs where torch is not installed (numpy STFT)."""
    import transformers.models.whisper.feature_extraction_whisper as module

    saved = module.is_torch_available
    module.is_torch_available = lambda: False
    try:
        yield
    finally:
        module.is_torch_available = saved


@contextmanager
def nothing():
    yield


def pair(name: str):
    """(ours, reference, call kwargs, context the reference runs in)."""
    import transformers

    from pretrained import audio

    if name in ("whisper", "whisper-numpy"):
        return (audio.WhisperFeatureExtractor(), transformers.WhisperFeatureExtractor(), {},
                reference_without_torch if name == "whisper-numpy" else nothing)
    if name == "wav2vec2":
        return audio.Wav2Vec2FeatureExtractor(), transformers.Wav2Vec2FeatureExtractor(), {"padding": True}, nothing
    if name == "ast":
        return audio.ASTFeatureExtractor(), transformers.ASTFeatureExtractor(), {}, nothing
    raise SystemExit(f"unknown extractor {name!r}")


def max_diff(a, b) -> float:
    key = "input_features" if "input_features" in a else "input_values"
    return max(float(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)).max())
               for x, y in zip(a[key], b[key]))


def timed(call, repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--extractors", default="whisper,whisper-numpy,wav2vec2,ast")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    print(f"transformers {transformers.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"numpy {np.__version__}; {args.seconds:g} s of audio per row, {args.rounds} rounds x {args.repeats}")
    print(f"{'extractor':14} {'batch':>5} {'ours ms':>9} {'ref ms':>9} {'ratio':>7} {'max diff':>9}")
    for name in args.extractors.split(","):
        ours, reference, kwargs, context = pair(name)
        for batch in (int(b) for b in args.batches.split(",")):
            rows = [synthetic(args.seconds, seed) for seed in range(batch)]

            def run_ours():
                return ours(rows, sampling_rate=16000, return_tensors="np", **kwargs)

            def run_reference():
                with context():
                    return reference(rows, sampling_rate=16000, return_tensors="np", **kwargs)

            diff = max_diff(run_ours(), run_reference())
            ours_times, reference_times, ratios = [], [], []
            for round_index in range(args.rounds):
                if round_index % 2 == 0:
                    mine, theirs = timed(run_ours, args.repeats), timed(run_reference, args.repeats)
                else:
                    theirs, mine = timed(run_reference, args.repeats), timed(run_ours, args.repeats)
                ours_times.append(mine)
                reference_times.append(theirs)
                ratios.append(theirs / mine)
            print(f"{name:14} {batch:>5} {statistics.median(ours_times) * 1e3:>9.2f} "
                  f"{statistics.median(reference_times) * 1e3:>9.2f} {statistics.median(ratios):>6.2f}x "
                  f"{diff:>9.2g}")


if __name__ == "__main__":
    main()
