"""Check the converted real Whisper folders with the reference, and record its outputs as goldens.

Why: ``pretrained fetch whisper-tiny.en`` / ``whisper-base`` turn CTranslate2 ``model.bin`` files
into HF Whisper folders (pretrained/convert/whisper_ct2.py). The proof that the conversion is
right is that the reference library itself loads those folders and transcribes real speech
correctly; what it outputs then is the golden our own Whisper is checked against.

Run it with both reference versions (each writes its own section of the golden file):

    /work/refvenv/bin/python scripts/convert_check_whisper.py     # transformers 5.25
    /work/ref4venv/bin/python scripts/convert_check_whisper.py    # transformers 4.57.6

For each model it loads ``WhisperForConditionalGeneration.from_pretrained(folder, float32)`` and
``WhisperProcessor``, reads every ALSA test recording (/usr/share/sounds/alsa/*.wav, 48 kHz) with
soundfile, resamples it to 16 kHz with soxr, and transcribes it with ``model.generate`` +
``batch_decode(skip_special_tokens=True)`` and with ``pipeline("automatic-speech-recognition")`` on
``{"raw": array, "sampling_rate": 16000}``, greedy (``generate_kwargs={"num_beams": 1}``) and as
the pipeline decodes by default (beam search: its ``_default_generation_config`` has num_beams 5,
which the hub's generation configs leave unset; it gives " front, center." on Front_Center). It
fails (exit 1) unless the expected (greedy) strings come out of generate and the greedy pipeline.
It also records, for tiny.en on Front_Left, a summary of the reference's log-mel features and
encoder output and the logits of the first decoder step (after the forced prompt), for
checks of our model at 1e-4.

Writes tests/fixtures/goldens/whisper_real.json (the section ``transformers-<version>``) and, in
the same run, checks it against the other version's section when that one is already there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
import transformers
from transformers import WhisperForConditionalGeneration, WhisperProcessor, pipeline

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pretrained.io.fetch import fetch  # noqa: E402  (stdlib only until a conversion is needed)

GOLDEN = ROOT / "tests" / "fixtures" / "goldens" / "whisper_real.json"
ALSA = Path("/usr/share/sounds/alsa")
FILES = ["Front_Center", "Front_Left", "Front_Right", "Noise", "Rear_Center", "Rear_Left",
         "Rear_Right", "Side_Left", "Side_Right"]  # fmt: skip
EXPECTED = {
    "whisper-tiny.en": {"Front_Left": " Front, left.", "Front_Center": " Front, center.",
                        "Side_Right": " Side, right."},
    "whisper-base": {"Front_Center": " Front Center.", "Rear_Right": " Rear, right."},
}  # fmt: skip
ENCODER_FRAMES = [0, 1, 10, 100, 250, 749, 1499]
FEATURE_FRAMES = [0, 1, 50, 100, 200, 2999]
MAJOR = int(transformers.__version__.split(".")[0])


def load_audio(name: str) -> np.ndarray:
    """The recording as float32 mono at 16 kHz: soundfile float32, mean of channels, soxr (HQ)."""
    audio, rate = sf.read(ALSA / f"{name}.wav", dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    return soxr.resample(audio, rate, 16000).astype(np.float32)


def rows(t: torch.Tensor, index: list[int], n: int = 8) -> dict[str, list[float]]:
    return {str(i): [float(v) for v in t[i, :n]] for i in index}


def probe(model, processor, audio: np.ndarray) -> dict:
    """Features, encoder output and first-step logits of one recording (float32)."""
    feats = processor(audio, sampling_rate=16000, return_tensors="pt").input_features
    prompt = [model.generation_config.decoder_start_token_id] + [
        t for _, t in model.generation_config.forced_decoder_ids
    ]
    with torch.no_grad():
        enc = model.model.encoder(feats).last_hidden_state[0]
        out = model(input_features=feats, decoder_input_ids=torch.tensor([prompt]))
    logits = out.logits[0, -1]
    top = torch.topk(logits, 20)
    return {
        "features": {"shape": list(feats.shape), "mean": float(feats.mean()),
                     "frames_bins0to8": rows(feats[0].T, FEATURE_FRAMES)},
        "encoder": {"shape": list(enc.shape), "mean": float(enc.mean()),
                    "abs_mean": float(enc.abs().mean()), "frames_first8": rows(enc, ENCODER_FRAMES)},
        "first_step": {"decoder_input_ids": prompt, "argmax": int(logits.argmax()),
                       "top20_ids": top.indices.tolist(), "top20_logits": top.values.tolist(),
                       "logits_first64": logits[:64].tolist(), "logsumexp": float(logits.logsumexp(0))},
    }  # fmt: skip


def _pipeline_num_beams(asr) -> int | None:
    """The beam count the pipeline decodes with by default (4.57: its generation_config; 5.x
    keeps only the class default it merges in at call time)."""
    config = getattr(asr, "generation_config", None) or getattr(asr, "_default_generation_config", None)
    return getattr(config, "num_beams", None)


def check_model(name: str, audio: dict[str, np.ndarray]) -> tuple[dict, list[str]]:
    folder = str(fetch(name, quiet=True))
    dtype_kw = {"dtype": torch.float32} if MAJOR >= 5 else {"torch_dtype": torch.float32}
    model = WhisperForConditionalGeneration.from_pretrained(folder, **dtype_kw).eval()
    processor = WhisperProcessor.from_pretrained(folder)
    asr = pipeline("automatic-speech-recognition", model=folder, **dtype_kw)
    section: dict = {"folder": folder, "generate": {}, "pipeline": {}, "pipeline_greedy": {},
                     "pipeline_num_beams": _pipeline_num_beams(asr)}
    failures = []
    for f, x in audio.items():
        feats = processor(x, sampling_rate=16000, return_tensors="pt").input_features
        with torch.no_grad():
            ids = model.generate(feats)
        text = processor.batch_decode(ids, skip_special_tokens=True)[0]
        section["generate"][f] = {"tokens": ids[0].tolist(), "text": text}
        piped = asr({"raw": x.copy(), "sampling_rate": 16000})["text"]
        greedy = asr({"raw": x.copy(), "sampling_rate": 16000}, generate_kwargs={"num_beams": 1})["text"]
        section["pipeline"][f], section["pipeline_greedy"][f] = piped, greedy
        want = EXPECTED[name].get(f)
        for how, got in (("generate", text), ("pipeline", piped), ("pipeline greedy", greedy)):
            ok = want is None or got == want
            # the pipeline's own default decodes with beam search (num_beams 5 in both versions),
            # the expected strings are greedy: its output is recorded, not required
            required = how != "pipeline"
            note = "" if ok else f"  EXPECTED {want!r}" + ("" if required else " (beam search: recorded)")
            print(f"  {name:16s} {f:13s} {how:15s} {got!r}{note}")
            if not ok and required:
                failures.append(f"{name} {f} {how}: {got!r} != {want!r}")
    if name == "whisper-tiny.en":
        section["probe_Front_Left"] = probe(model, processor, audio["Front_Left"])
    return section, failures


def compare(a: dict, b: dict, tol: float = 1e-4) -> list[str]:
    """Differences between two versions' sections (tokens equal, probe values within ``tol``)."""
    out = []
    for name in EXPECTED:
        for f in FILES:
            if a[name]["generate"][f]["tokens"] != b[name]["generate"][f]["tokens"]:
                out.append(f"{name} {f}: tokens differ between versions")
    pa, pb = a["whisper-tiny.en"]["probe_Front_Left"], b["whisper-tiny.en"]["probe_Front_Left"]
    for key in ("encoder", "first_step"):
        va = np.array(_numbers(pa[key]))
        vb = np.array(_numbers(pb[key]))
        if va.shape != vb.shape or np.abs(va - vb).max() > tol:
            out.append(f"probe {key} differs between versions by more than {tol}")
    return out


def _numbers(obj) -> list[float]:
    if isinstance(obj, dict):
        return [v for k in sorted(obj) for v in _numbers(obj[k])]
    if isinstance(obj, list):
        return [v for x in obj for v in _numbers(x)]
    return [float(obj)] if isinstance(obj, (int, float)) else []


def main() -> int:
    torch.manual_seed(0)
    audio = {f: load_audio(f) for f in FILES}
    key = f"transformers-{transformers.__version__}"
    print(f"reference {key}")
    section, failures = {}, []
    for name in EXPECTED:
        section[name], fails = check_model(name, audio)
        failures += fails
    golden = json.loads(GOLDEN.read_text(encoding="utf-8")) if GOLDEN.is_file() else {}
    golden["about"] = (
        "The reference on the converted real Whisper folders (pretrained fetch whisper-tiny.en / "
        "whisper-base), written by scripts/convert_check_whisper.py; audio: ALSA test WAVs read "
        "with soundfile as float32 mono, soxr.resample(x, 48000, 16000) (HQ); generate: "
        "model.generate(input_features) tokens (without the prompt) and batch_decode(skip_special_"
        "tokens=True); pipeline: pipeline('automatic-speech-recognition')({'raw', 'sampling_rate': "
        "16000})['text'] with its default decoding (beam search, pipeline_num_beams) and with "
        "generate_kwargs={'num_beams': 1} (pipeline_greedy); probe_Front_Left: tiny.en "
        "features/encoder rows (first 8 values) and the logits after the forced prompt."
    )
    golden["expected"] = EXPECTED
    golden[key] = section
    others = [k for k in golden if k.startswith("transformers-") and k != key]
    for other in others:
        diffs = compare(section, golden[other])
        print(f"against {other}: " + ("tokens equal, probe within 1e-4" if not diffs else "; ".join(diffs)))
        failures += [f"vs {other}: {d}" for d in diffs]
    GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN.relative_to(ROOT)} [{key}]")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("OK: the reference transcribes the converted folders as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
