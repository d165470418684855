"""Goldens for pretrained.processing (and pretrained.audio's load_audio): the reference's feature extractors and load_audio on fixed inputs.

    /work/refvenv/bin/python scripts/golden_audio_features.py      # transformers 5.x, torch, soundfile, soxr

Reference paths recorded (transformers 5.25 with torch installed):
  * WhisperFeatureExtractor.__call__ -> its torch STFT path (``_torch_extract_fbank_features``);
  * ASTFeatureExtractor -> its numpy fbank path, because the reference venv has no torchaudio
    (no torchaudio wheel exists for its torch 2.13); ``kaldi_path`` in the json says which ran;
  * load_audio(..., backend="soundfile"): soundfile decode, channel mean, soxr "HQ" resampling.

Inputs (all float32, exact in the file): synthetic tones + noise from a fixed seed, of lengths that
are and are not multiples of the hop, shorter than one STFT window and longer than 30 s (that one
is a stored piece tiled, rebuilt by the test from ``tile``), and an excerpt of the ALSA recording
Front_Left.wav (Debian alsa-utils) resampled to 16 kHz by the reference's load_audio.

Outputs are packed to stay small (tests/fixtures/goldens/audio/ is a few hundred KB):
  * integer masks as one [start, end) run of ones per row (``<key>.runs``);
  * trailing frames equal to the last one (padding) are stored once: ``<key>.head`` + ``<key>.tail``
    and the full length in the json;
  * a head still larger than BUDGET bytes keeps every ``stride``-th frame (and the last) plus each
    row's mean over all head frames (``<key>.mean``): a wrong frame anywhere moves the mean.

Writes tests/fixtures/goldens/audio/features.safetensors, features.json, stereo_44k.wav (a 0.25 s
synthetic stereo int16 file for load_audio) and configs/<name>/preprocessor_config.json (configs
saved by the reference), and checks that the reference reads our save_pretrained output.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import torch
import transformers
from safetensors.numpy import save_file
from transformers.audio_utils import load_audio as reference_load_audio
from transformers.utils import is_speech_available

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "goldens" / "audio"
ALSA = Path("/usr/share/sounds/alsa/Front_Left.wav")
BUDGET = 6_000  # bytes of frames stored per output before sampling
sys.path.insert(0, str(ROOT))  # for the round trip through our own save_pretrained

logging.getLogger("transformers").setLevel(logging.ERROR)


def synthetic(n: int, seed: int, dc: float = 0.0) -> np.ndarray:
    """Two tones, a chirp and noise: energy across the band, nothing exactly periodic."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000.0
    f1, f2 = rng.uniform(100, 900), rng.uniform(1500, 6000)
    wave = (0.4 * np.sin(2 * np.pi * f1 * t) + 0.2 * np.sin(2 * np.pi * f2 * t + 1.0)
            + 0.1 * np.sin(2 * np.pi * (200 + 3000 * t) * t) + 0.02 * rng.standard_normal(n) + dc)
    return wave.astype(np.float32)


def build_inputs() -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    inputs = {
        "a": synthetic(4837, 1),            # 0.30 s, not a multiple of the hop (160)
        "b": synthetic(8000, 2),            # 0.50 s, a multiple of it
        "c": synthetic(2400, 3, dc=0.25),   # 0.15 s with a DC offset
        "w1": synthetic(1200, 4, dc=0.1),   # short ones for the waveform-sized Wav2Vec2 outputs
        "w2": synthetic(2003, 5),
        "tiny": synthetic(300, 6),          # shorter than one 400-sample window
    }
    loaded = reference_load_audio(str(ALSA), sampling_rate=16000, backend="soundfile")
    start = 4800  # 0.3 s in: the word "front"
    inputs["alsa"] = np.ascontiguousarray(loaded[start:start + 9600], dtype=np.float32)
    meta = {
        "alsa": {"file": ALSA.name, "offset": start, "full_length": int(loaded.shape[0]),
                 "full_sum": float(loaded.astype(np.float64).sum()),
                 "full_abs_sum": float(np.abs(loaded.astype(np.float64)).sum())},
        "long": {"tile": "b", "length": 31 * 16000 + 77},   # past Whisper's 30 s
    }
    return inputs, meta


def resolve_input(name: str, inputs: dict[str, np.ndarray], meta: dict[str, dict]) -> np.ndarray:
    if name in inputs:
        return inputs[name]
    spec = meta[name]
    piece = inputs[spec["tile"]]
    return np.tile(piece, math.ceil(spec["length"] / piece.shape[0]))[: spec["length"]]


# Where the frames are in each class's float output (time samples for Wav2Vec2).
FRAMES_AXIS = {"WhisperFeatureExtractor": -1, "Wav2Vec2FeatureExtractor": -1, "ASTFeatureExtractor": -2}


def pack(key: str, value, tensors: dict[str, np.ndarray], frames_axis: int) -> dict:
    """Store one output (see the module doc); returns its json description."""
    if isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.dtype == object):
        return {"list": [pack(f"{key}.{i}", v, tensors, frames_axis) for i, v in enumerate(value)]}
    array = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    desc = {"shape": list(array.shape), "dtype": str(array.dtype),
            "container": "torch" if isinstance(value, torch.Tensor) else "numpy"}
    if array.dtype.kind in "iu":  # masks: one run of ones per row, stored as [start, end) per row
        rows = array.reshape(-1, array.shape[-1])
        runs = []
        for row in rows:
            ones = np.flatnonzero(row)
            start, end = (int(ones[0]), int(ones[-1]) + 1) if ones.size else (0, 0)
            assert set(np.unique(row)) <= {0, 1} and row[start:end].all(), key
            runs.append((start, end))
        tensors[f"{key}.runs"] = np.asarray(runs, dtype=np.int64)
        desc["mode"] = "runs"
        return desc
    if array.ndim < 2 and array.nbytes <= BUDGET:
        tensors[key] = np.ascontiguousarray(array)
        desc["mode"] = "full"
        return desc
    moved = np.moveaxis(array, frames_axis, -1)  # frames last
    last = moved[..., -1:]
    same = np.all(moved == last, axis=tuple(range(moved.ndim - 1)))
    head_len = int(moved.shape[-1] - np.argmin(same[::-1])) if not same.all() else 1
    head = moved[..., :head_len]
    desc.update(frames_axis=frames_axis, head_len=head_len)
    tensors[f"{key}.tail"] = np.ascontiguousarray(last[..., 0])
    if head.nbytes <= BUDGET:
        desc["mode"] = "head"
        tensors[f"{key}.head"] = np.ascontiguousarray(head)
        return desc
    stride = math.ceil(head.nbytes / BUDGET)
    index = np.unique(np.r_[np.arange(0, head_len, stride), head_len - 1])
    desc.update(mode="sampled", stride=int(stride))
    tensors[f"{key}.frames"] = index.astype(np.int64)
    tensors[f"{key}.sampled"] = np.ascontiguousarray(head[..., index])
    tensors[f"{key}.mean"] = np.atleast_1d(head.astype(np.float64).mean(axis=-1))
    return desc


# (case name, class, config overrides, call kwargs, input name (one waveform) or names (a batch))
CASES = [
    ("whisper80_default", "WhisperFeatureExtractor", {}, {}, "alsa"),
    ("whisper80_batch_max_length", "WhisperFeatureExtractor", {}, {"return_tensors": "pt"}, ["a", "b", "tiny"]),
    ("whisper80_longest_mask", "WhisperFeatureExtractor", {},
     {"padding": "longest", "return_attention_mask": True}, ["a", "b", "c"]),
    ("whisper80_longest_multiple", "WhisperFeatureExtractor", {},
     {"padding": "longest", "pad_to_multiple_of": 1000, "return_attention_mask": True}, ["a", "c"]),
    ("whisper80_normalize", "WhisperFeatureExtractor", {}, {"do_normalize": True, "padding": "longest"},
     ["c", "a"]),
    ("whisper80_normalize_mask", "WhisperFeatureExtractor", {},
     {"do_normalize": True, "return_attention_mask": True, "padding": "longest"}, ["a", "c"]),
    ("whisper80_truncated", "WhisperFeatureExtractor", {}, {}, "long"),
    ("whisper80_max_length_arg", "WhisperFeatureExtractor", {},
     {"max_length": 6000, "padding": "max_length", "return_attention_mask": True}, ["b", "a"]),
    ("whisper80_no_truncation", "WhisperFeatureExtractor", {},
     {"truncation": False, "padding": "longest", "max_length": 4000}, ["a"]),
    ("whisper80_config_mask", "WhisperFeatureExtractor", {"return_attention_mask": True},
     {"padding": "longest"}, ["c", "b"]),
    ("whisper128_default", "WhisperFeatureExtractor", {"feature_size": 128}, {"return_tensors": "np"}, "b"),
    ("whisper128_longest", "WhisperFeatureExtractor", {"feature_size": 128},
     {"padding": "longest", "return_attention_mask": True}, ["alsa", "a"]),
    ("wav2vec2_single", "Wav2Vec2FeatureExtractor", {}, {}, "w1"),
    ("wav2vec2_unpadded", "Wav2Vec2FeatureExtractor", {}, {}, ["w1", "w2"]),
    ("wav2vec2_padded_no_mask", "Wav2Vec2FeatureExtractor", {}, {"padding": True, "return_tensors": "np"},
     ["w1", "w2"]),
    ("wav2vec2_padded_mask", "Wav2Vec2FeatureExtractor", {"return_attention_mask": True},
     {"padding": "longest", "return_tensors": "pt"}, ["w1", "w2"]),
    ("wav2vec2_multiple_value", "Wav2Vec2FeatureExtractor", {"return_attention_mask": True, "padding_value": 0.5},
     {"padding": True, "pad_to_multiple_of": 512}, ["w2", "w1"]),
    ("wav2vec2_truncate", "Wav2Vec2FeatureExtractor", {},
     {"padding": "max_length", "max_length": 1500, "truncation": True, "return_attention_mask": True,
      "return_tensors": "np"}, ["w1", "w2"]),
    ("wav2vec2_raw", "Wav2Vec2FeatureExtractor", {"do_normalize": False},
     {"padding": True, "return_tensors": "np"}, ["w1", "w2"]),
    ("ast_default", "ASTFeatureExtractor", {}, {}, "alsa"),
    ("ast_batch", "ASTFeatureExtractor", {}, {"return_tensors": "pt"}, ["a", "c", "tiny"]),
    ("ast_long", "ASTFeatureExtractor", {}, {"return_tensors": "np"}, "long"),
    ("ast_raw_short", "ASTFeatureExtractor", {"do_normalize": False, "max_length": 64, "num_mel_bins": 64},
     {}, "b"),
]


def write_stereo_wav() -> np.ndarray:
    """A 0.25 s, 44.1 kHz stereo int16 file whose channels differ (so averaging shows)."""
    rng = np.random.default_rng(7)
    t = np.arange(11025) / 44100.0
    left = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)
    right = 0.3 * np.sin(2 * np.pi * 1250 * t + 0.5) + 0.05 * rng.standard_normal(t.size)
    pcm = np.round(np.stack([left, right], axis=1) * 32767).astype(np.int16)
    soundfile.write(OUT / "stereo_44k.wav", pcm, 44100, subtype="PCM_16")
    return pcm


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {}
    inputs, input_meta = build_inputs()
    for name, wave in inputs.items():
        tensors[f"input.{name}"] = wave
    report: dict = {"transformers": transformers.__version__, "torch": torch.__version__, "numpy": np.__version__,
                    "kaldi_path": bool(is_speech_available()), "inputs": input_meta, "cases": {}, "load_audio": {}}

    for case, class_name, config, kwargs, names in CASES:
        extractor = getattr(transformers, class_name)(**config)
        batched = isinstance(names, list)
        waves = [resolve_input(n, inputs, input_meta) for n in (names if batched else [names])]
        result = extractor(waves if batched else waves[0], sampling_rate=16000, **kwargs)
        axis = FRAMES_AXIS[class_name]
        outputs = {key: pack(f"out.{case}.{key}", value, tensors, axis) for key, value in result.items()}
        report["cases"][case] = {"class": class_name, "config": config, "kwargs": kwargs, "inputs": names,
                                 "outputs": outputs}

    # load_audio on a stereo file, as a path, at two target rates
    write_stereo_wav()
    for rate in (16000, 22050):
        loaded = reference_load_audio(str(OUT / "stereo_44k.wav"), sampling_rate=rate, backend="soundfile")
        tensors[f"load_audio.stereo_44k.{rate}"] = np.ascontiguousarray(loaded, dtype=np.float32)
        report["load_audio"][f"stereo_44k.{rate}"] = {"file": "stereo_44k.wav", "sampling_rate": rate,
                                                      "length": int(loaded.shape[0])}

    # configs as the reference writes them; and ours read back by the reference
    from pretrained import audio as ours

    round_trip = {}
    for folder, class_name, config in [
        ("whisper", "WhisperFeatureExtractor", {}),
        ("whisper128", "WhisperFeatureExtractor", {"feature_size": 128, "processor_class": "WhisperProcessor"}),
        ("wav2vec2", "Wav2Vec2FeatureExtractor", {"return_attention_mask": True}),
        ("ast", "ASTFeatureExtractor", {}),
    ]:
        target = OUT / "configs" / folder
        if target.exists():
            shutil.rmtree(target)
        reference = getattr(transformers, class_name)(**config)
        reference.save_pretrained(target)
        with tempfile.TemporaryDirectory() as tmp:
            getattr(ours, class_name).from_pretrained(target).save_pretrained(tmp)
            again = transformers.AutoFeatureExtractor.from_pretrained(tmp)
            round_trip[folder] = {"class": type(again).__name__,
                                  "equal_dict": again.to_dict() == reference.to_dict()}
    report["round_trip"] = round_trip

    save_file(tensors, str(OUT / "features.safetensors"))
    (OUT / "features.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({size / 1024:.0f} KB); round trip: {round_trip}")


if __name__ == "__main__":
    main()
