"""Speech recognition speed: this project's ASR pipeline against the reference 5.x's pipeline and
CTranslate2 on the same real Whisper models, in ONE process, calls interleaved with the order
alternating each round; and peak memory in separate processes.

    /work/refvenv/bin/python benchmarks/bench_asr.py [--rounds 3] [--models whisper-tiny.en,whisper-base]
        [--dtypes float32,bfloat16] [--beams 1,5] [--seconds 60] [--no-ct2]
    /work/refvenv/bin/python benchmarks/bench_asr.py --memory

(the reference's venv with ctranslate2 installed, this repository on ``sys.path``). Audio: the first
``--seconds`` of tests/fixtures/audio/debian_speech.flac (espeak-ng reading Debian package
synopses, 16 kHz). Every library transcribes it in 30-s chunks: the pipelines with
``chunk_length_s=30, stride_length_s=0`` (no overlap, so every library decodes the same
windows), CTranslate2 (float32 and int8, the same ``model.bin`` the Whisper folders were converted
from) on the same windows' features, prompted with <|startoftranscript|>(<|en|><|transcribe|>)
<|notimestamps|>. Reported: the real-time factor (audio seconds per wall second, higher is
faster) of each, and ours / reference and ours / CTranslate2 float32, medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

SPEECH = ROOT / "tests" / "fixtures" / "audio" / "debian_speech.flac"
MODELS = Path(os.path.expanduser("~/.cache/pretrained/models"))


def audio(seconds: float) -> np.ndarray:
    from pretrained.audio import load_audio

    return load_audio(str(SPEECH), 16000)[: int(seconds * 16000)]


def ours(model: str, dtype: torch.dtype):
    from pretrained import pipeline

    return pipeline("automatic-speech-recognition", model=str(MODELS / model), torch_dtype=dtype)


def reference(model: str, dtype: torch.dtype):
    import transformers

    return transformers.pipeline("automatic-speech-recognition", model=str(MODELS / model), dtype=dtype)


def run_pipe(pipe, wave: np.ndarray, beams: int) -> str:
    kw = {"language": "en"} if "base" in str(pipe.model.config.name_or_path) else {}
    return pipe({"raw": wave, "sampling_rate": 16000}, chunk_length_s=30, stride_length_s=0,
                generate_kwargs={"num_beams": beams, **kw})["text"]


class CT2:
    """CTranslate2 on the model.bin the folder was converted from, fed our features."""

    def __init__(self, model: str, compute_type: str) -> None:
        import ctranslate2

        from pretrained.processing import AutoFeatureExtractor
        from pretrained.tokenization import AutoTokenizer

        self.model = ctranslate2.models.Whisper(str(MODELS / f"{model}-ct2"), device="cpu",
                                                compute_type=compute_type, intra_threads=torch.get_num_threads())
        self.fe = AutoFeatureExtractor.from_pretrained(MODELS / model)
        self.tok = AutoTokenizer.from_pretrained(MODELS / model)
        lang = ["<|en|>", "<|transcribe|>"] if "base" in model else []
        self.prompt = ["<|startoftranscript|>", *lang, "<|notimestamps|>"]

    def __call__(self, wave: np.ndarray, beams: int) -> str:
        import ctranslate2

        windows = [wave[i:i + 480000] for i in range(0, len(wave), 480000)]
        feats = self.fe(windows, sampling_rate=16000, return_tensors="np")["input_features"]
        out = self.model.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(feats, np.float32)),
                                  [self.prompt] * len(windows), beam_size=beams, max_length=256)
        return "".join(self.tok.decode(r.sequences_ids[0], skip_special_tokens=True) for r in out)


def speed(args) -> None:
    torch.set_num_threads(args.threads)
    wave = audio(args.seconds)
    secs = len(wave) / 16000
    rows = []
    for model in args.models.split(","):
        for dtype_name in args.dtypes.split(","):
            dtype = getattr(torch, dtype_name)
            runners = {"ours": ours(model, dtype), "reference": reference(model, dtype)}
            ct2 = {}
            if not args.no_ct2 and dtype == torch.float32:
                ct2 = {f"ct2-{c}": CT2(model, c) for c in ("float32", "int8")}
            for beams in map(int, args.beams.split(",")):
                calls = {name: (lambda p=p: run_pipe(p, wave, beams)) for name, p in runners.items()}
                calls.update({name: (lambda c=c: c(wave, beams)) for name, c in ct2.items()})
                times = {name: [] for name in calls}
                texts = {name: fn() for name, fn in calls.items()}   # warm-up, and the texts compared
                for r in range(args.rounds):
                    order = list(calls) if r % 2 == 0 else list(reversed(list(calls)))
                    for name in order:
                        t = time.perf_counter()
                        calls[name]()
                        times[name].append(time.perf_counter() - t)
                rtf = {name: secs / statistics.median(v) for name, v in times.items()}
                row = {"model": model, "dtype": dtype_name, "beams": beams, "audio_s": round(secs, 1),
                       **{f"rtf_{k}": round(v, 1) for k, v in rtf.items()},
                       "ours/reference": round(rtf["ours"] / rtf["reference"], 2),
                       "same_text_as_reference": texts["ours"] == texts["reference"],
                       "chars_ours_reference": [len(texts["ours"]), len(texts["reference"])]}
                if "ct2-float32" in rtf:   # a ratio means something only where the texts agree
                    row["ours/ct2-float32"] = round(rtf["ours"] / rtf["ct2-float32"], 2)
                    row["ours/ct2-int8"] = round(rtf["ours"] / rtf["ct2-int8"], 2)
                    row["same_text_as_ct2-float32"] = texts["ours"] == texts["ct2-float32"]
                    row["chars_ours_ct2"] = [len(texts["ours"]), len(texts["ct2-float32"])]
                rows.append(row)
                print(json.dumps(row), flush=True)


def memory(args) -> None:
    """Peak RSS of one transcription, each library in a fresh process."""
    for model in args.models.split(","):
        for lib in ("ours", "reference"):
            code = (f"import sys; sys.argv=['x']; sys.path.insert(0, {str(ROOT)!r}); "
                    f"import benchmarks.bench_asr as b, torch, resource; w = b.audio({args.seconds}); "
                    f"p = b.{lib}({model!r}, torch.float32); b.run_pipe(p, w, 1); "
                    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)")
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            print(json.dumps({"model": model, "library": lib, "peak_rss_mib": int(out.stdout.split()[-1])}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", default="whisper-tiny.en,whisper-base")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--beams", default="1,5")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-ct2", action="store_true")
    ap.add_argument("--memory", action="store_true")
    args = ap.parse_args()
    print(json.dumps({"cpu_threads": args.threads, "torch": torch.__version__,
                      "maxrss_unit": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss and "KiB"}))
    (memory if args.memory else speed)(args)


if __name__ == "__main__":
    main()
