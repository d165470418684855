"""Goldens for the automatic-speech-recognition pipeline on the real Whisper models.

    /work/refvenv/bin/python scripts/golden_asr_pipeline.py     # transformers 5.x (has the pipeline)

Needs the converted models (`pretrained fetch whisper-tiny.en` / `whisper-base`), the ALSA test
recordings (Debian `alsa-utils`, /usr/share/sounds/alsa) and `espeak-ng` (Debian) for the long
speech, which is written once to tests/fixtures/audio/debian_speech.flac (16 kHz, 16-bit) with its
script: synopses of Debian packages (examples/debian_text.py's Translation-en), spoken by espeak-ng.

The audio is read with the reference's own `audio_utils.load_audio` (soundfile, soxr resampling)
and passed to the reference pipeline as {"raw": array, "sampling_rate": 16000}; our tests pass the
file paths, so the reading is part of what they compare. Writes
tests/fixtures/goldens/asr_pipeline.json: case -> {model, file, kwargs, output}, after every case
(a rerun resumes; --force starts over).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import transformers
from transformers.audio_utils import load_audio

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
SPEECH = FIX / "audio" / "debian_speech.flac"
ALSA = Path("/usr/share/sounds/alsa")
MODELS = Path(os.path.expanduser("~/.cache/pretrained/models"))
N_SENTENCES = 20


def synopses() -> list[str]:
    sys.path.insert(0, str(ROOT / "examples"))
    from debian_text import data_dir, parse_stanzas, read_text

    text = read_text(data_dir() / "Translation-en.xz")
    out, seen = [], set()
    for d in parse_stanzas(text, "en"):
        s = d.synopsis.strip().rstrip(".")
        # plain sentences a listener can follow: letters and spaces, 5 to 12 words
        if 5 <= len(s.split()) <= 12 and all(c.isalpha() or c in " ,-'" for c in s) and s.lower() not in seen:
            seen.add(s.lower())
            out.append(s[0].upper() + s[1:] + ".")
        if len(out) == N_SENTENCES:
            break
    return out


def make_speech() -> dict:
    sentences = synopses()
    SPEECH.parent.mkdir(parents=True, exist_ok=True)
    pieces = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, s in enumerate(sentences):
            wav = Path(tmp) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), s], check=True)
            pieces.append(load_audio(str(wav), sampling_rate=16000))
            pieces.append(np.zeros(8000, np.float32))   # half a second between sentences
    audio = np.concatenate(pieces)
    soundfile.write(SPEECH, audio, 16000, subtype="PCM_16")
    (SPEECH.with_suffix(".json")).write_text(json.dumps(
        {"sentences": sentences, "seconds": len(audio) / 16000,
         "made_by": "espeak-ng -v en-us -s 150, 0.5 s silence between, 16 kHz PCM_16 FLAC"}, indent=1) + "\n")
    return {"sentences": sentences, "seconds": len(audio) / 16000}


CASES = [
    # (case, model, file, call kwargs)
    *[(f"tiny_{f}", "whisper-tiny.en", f"alsa:{f}", {}) for f in ("Front_Left", "Front_Center", "Side_Right")],
    ("tiny_greedy_Noise", "whisper-tiny.en", "alsa:Noise", {"generate_kwargs": {"num_beams": 1}}),
    ("tiny_greedy_Rear_Left", "whisper-tiny.en", "alsa:Rear_Left", {"generate_kwargs": {"num_beams": 1}}),
    ("tiny_timestamps_Front_Left", "whisper-tiny.en", "alsa:Front_Left", {"return_timestamps": True}),
    ("base_Front_Center", "whisper-base", "alsa:Front_Center", {}),
    ("base_Rear_Right", "whisper-base", "alsa:Rear_Right", {}),
    ("base_fr_Rear_Right", "whisper-base", "alsa:Rear_Right",
     {"generate_kwargs": {"language": "fr", "task": "transcribe"}}),
    ("base_language_Side_Left", "whisper-base", "alsa:Side_Left", {"return_language": True, "return_timestamps": True}),
    ("tiny_chunked", "whisper-tiny.en", "speech",
     {"chunk_length_s": 30, "stride_length_s": 5, "batch_size": 4}),
    ("tiny_chunked_timestamps", "whisper-tiny.en", "speech",
     {"chunk_length_s": 30, "stride_length_s": 5, "batch_size": 4, "return_timestamps": True}),
    ("tiny_longform", "whisper-tiny.en", "speech", {"return_timestamps": True, "generate_kwargs": {"num_beams": 1}}),
    ("base_chunked_greedy", "whisper-base", "speech",
     {"chunk_length_s": 30, "stride_length_s": 5, "batch_size": 4, "generate_kwargs": {"num_beams": 1, "language": "en"}}),
]


def audio_of(source: str) -> np.ndarray:
    if source == "speech":
        return load_audio(str(SPEECH), sampling_rate=16000)
    return load_audio(str(ALSA / f"{source.split(':')[1]}.wav"), sampling_rate=16000)


def main() -> None:
    speech = make_speech() if not SPEECH.exists() or "--speech" in sys.argv else \
        json.loads(SPEECH.with_suffix(".json").read_text())
    target = FIX / "goldens" / "asr_pipeline.json"
    out = {"transformers": transformers.__version__, "speech": speech, "cases": {}}
    if target.exists() and "--force" not in sys.argv:   # resume: keep the cases already recorded
        out["cases"] = json.loads(target.read_text())["cases"]
    pipes: dict = {}
    for case, model, source, kw in CASES:
        if case in out["cases"] and out["cases"][case]["kwargs"] == kw:
            continue
        if model not in pipes:
            pipes[model] = transformers.pipeline("automatic-speech-recognition", model=str(MODELS / model))
        kw = dict(kw)
        result = pipes[model]({"raw": audio_of(source), "sampling_rate": 16000}, **kw)
        if "chunks" in result:
            result["chunks"] = [{**c, "timestamp": list(c["timestamp"])} for c in result["chunks"]]
        out["cases"][case] = {"model": model, "source": source, "kwargs": kw, "output": result}
        print(case, json.dumps(result)[:300], flush=True)
        target.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")   # after every case


if __name__ == "__main__":
    main()
