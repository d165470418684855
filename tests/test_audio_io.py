"""load_audio: files, bytes, arrays and dicts against the reference's load_audio (goldens from
scripts/golden_audio_features.py), channel mixing, integer PCM, and every named error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from safetensors.numpy import load_file

from pretrained.audio import load_audio
from pretrained.errors import AudioDecodeError, AudioFileNotFoundError, InvalidInputError, MissingDependencyError

GOLD = Path(__file__).parent / "fixtures" / "goldens" / "audio"
REPORT = json.loads((GOLD / "features.json").read_text())
TENSORS = load_file(str(GOLD / "features.safetensors"))
STEREO = GOLD / "stereo_44k.wav"
ALSA = Path("/usr/share/sounds/alsa") / REPORT["inputs"]["alsa"]["file"]
ROOT = Path(__file__).resolve().parent.parent


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b).max())


@pytest.mark.parametrize("rate", [16000, 22050])
def test_file_equals_the_reference(rate):
    expected = TENSORS[f"load_audio.stereo_44k.{rate}"]
    ours = load_audio(STEREO, sampling_rate=rate)
    assert ours.dtype == np.float32 and ours.ndim == 1
    assert _max_diff(ours, expected) <= 1e-6
    assert _max_diff(load_audio(str(STEREO), rate), expected) <= 1e-6
    assert _max_diff(load_audio(STEREO.read_bytes(), sampling_rate=rate), expected) <= 1e-6


def test_arrays_and_dicts_equal_the_file():
    pcm, rate = soundfile.read(STEREO, dtype="int16")  # (frames, 2)
    expected = TENSORS["load_audio.stereo_44k.16000"]
    assert pcm.shape[1] == 2 and rate == 44100
    for source, kwargs in [
        (pcm, {"source_rate": rate}),                              # int16 (frames, channels)
        (pcm.T.copy(), {"source_rate": rate}),                     # (channels, frames)
        (pcm / 32768.0, {"source_rate": rate}),                    # float64
        (torch.from_numpy(pcm.astype(np.float32) / 32768), {"source_rate": rate}),
        ({"raw": pcm, "sampling_rate": rate}, {}),
        ({"array": pcm.astype(np.float32) / 32768, "sampling_rate": rate, "path": "x.wav"}, {}),
        ({"raw": pcm, "sampling_rate": rate}, {"source_rate": rate}),
    ]:
        assert _max_diff(load_audio(source, 16000, **kwargs), expected) <= 1e-6


def test_lossless_formats_decode_the_same(tmp_path):
    pcm, rate = soundfile.read(STEREO, dtype="int16")
    expected = TENSORS["load_audio.stereo_44k.16000"]
    soundfile.write(tmp_path / "x.flac", pcm, rate)
    assert _max_diff(load_audio(tmp_path / "x.flac"), expected) <= 1e-6
    soundfile.write(tmp_path / "x.ogg", pcm.astype(np.float32) / 32768, rate, format="OGG", subtype="VORBIS")
    lossy = load_audio(tmp_path / "x.ogg")
    assert lossy.shape == expected.shape and float(np.corrcoef(lossy, expected)[0, 1]) > 0.95


@pytest.mark.skipif("MP3" not in soundfile.available_formats(), reason="this libsndfile has no MP3 (needs >= 1.1)")
def test_mp3(tmp_path):
    t = np.arange(16000) / 16000
    soundfile.write(tmp_path / "x.mp3", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000,
                    format="MP3", subtype="MPEG_LAYER_III")
    wave = load_audio(tmp_path / "x.mp3", 16000)
    # the encoder adds a little delay and padding; the tone is there
    assert abs(wave.shape[0] - 16000) < 3000 and 0.3 < np.abs(wave).max() < 0.7


def test_integer_pcm_scaling():
    assert load_audio(np.array([0, 16384, -32768], np.int16), source_rate=16000).tolist() == [0.0, 0.5, -1.0]
    assert load_audio(np.array([0, 2 ** 30, -(2 ** 31)], np.int32), source_rate=16000).tolist() == [0.0, 0.5, -1.0]
    assert load_audio(np.array([128, 192, 0], np.uint8), source_rate=16000).tolist() == [0.0, 0.5, -1.0]
    assert load_audio(np.array([0, 64, -128], np.int8), source_rate=16000).tolist() == [0.0, 0.5, -1.0]
    same_rate = np.array([0.25, -0.5], np.float64)
    out = load_audio(same_rate, source_rate=16000)
    assert out.dtype == np.float32 and out.tolist() == [0.25, -0.5]


def test_channel_layouts_average():
    left, right = np.full(100, 0.2, np.float32), np.full(100, 0.6, np.float32)
    for layout in (np.stack([left, right]), np.stack([left, right], axis=1)):
        assert np.allclose(load_audio(layout, source_rate=8000, sampling_rate=8000), 0.4)
    five = np.stack([np.full(50, float(i), np.float32) for i in range(5)], axis=1)  # (frames, 5)
    assert np.allclose(load_audio(five, source_rate=8000, sampling_rate=8000), 2.0)
    assert load_audio(left[None], source_rate=8000, sampling_rate=8000).shape == (100,)


def test_resampled_length_is_the_reference_rule():
    wave = np.zeros(44101, np.float32)
    assert load_audio(wave, source_rate=44100).shape == (16001,)  # ceil(44101 * 16000 / 44100)
    assert load_audio(wave[:3], source_rate=48000).shape == (1,)


@pytest.mark.skipif(not ALSA.exists(), reason="the ALSA test sounds (Debian alsa-utils) are not installed")
def test_real_recording_equals_the_reference():
    spec = REPORT["inputs"]["alsa"]
    wave = load_audio(ALSA)
    assert wave.shape == (spec["full_length"],)
    excerpt = wave[spec["offset"]: spec["offset"] + TENSORS["input.alsa"].shape[0]]
    assert _max_diff(excerpt, TENSORS["input.alsa"]) <= 1e-6
    assert abs(float(np.abs(wave.astype(np.float64)).sum()) - spec["full_abs_sum"]) <= 1e-3


# --- errors ---------------------------------------------------------------------------------------
def test_file_errors(tmp_path):
    with pytest.raises(AudioFileNotFoundError, match="does not exist") as info:
        load_audio(tmp_path / "missing.wav")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)
    with pytest.raises(AudioFileNotFoundError, match="URLs are not downloaded"):
        load_audio("https://example.com/a.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "notes.txt").write_text("not audio at all\n" * 20)
    with pytest.raises(AudioDecodeError, match=r"could not decode.*WAV.*MP3 needs libsndfile >= 1.1"):
        load_audio(tmp_path / "notes.txt")
    with pytest.raises(AudioDecodeError, match="could not decode 5 bytes"):
        load_audio(b"hello")
    with pytest.raises(AudioDecodeError, match="empty"):
        load_audio(b"")
    with pytest.raises(AudioDecodeError, match="folder"):
        load_audio(tmp_path)
    truncated = STEREO.read_bytes()[:44]  # the header alone: no frames
    with pytest.raises(AudioDecodeError):
        load_audio(truncated)
    with pytest.raises(InvalidInputError, match="source_rate= is for raw arrays"):
        load_audio(STEREO, source_rate=44100)


def test_array_errors():
    with pytest.raises(InvalidInputError, match=r'\{"raw": array, "sampling_rate": 16000\}.*source_rate='):
        load_audio(np.zeros(10, np.float32))
    with pytest.raises(InvalidInputError, match="no 'sampling_rate'"):
        load_audio({"raw": np.zeros(10, np.float32)})
    with pytest.raises(InvalidInputError, match="'raw' or 'array'"):
        load_audio({"audio": np.zeros(10), "sampling_rate": 16000})
    with pytest.raises(InvalidInputError, match="contradicts"):
        load_audio({"raw": np.zeros(10), "sampling_rate": 16000}, source_rate=8000)
    with pytest.raises(InvalidInputError, match="zero samples"):
        load_audio(np.zeros(0, np.float32), source_rate=16000)
    with pytest.raises(InvalidInputError, match="2 NaN or infinite"):
        load_audio(np.array([0.0, np.nan, np.inf, 0.1], np.float32), source_rate=16000)
    for bad, word in [(np.zeros(4, np.complex64), "complex"), (np.array([True, False]), "booleans"),
                      (np.array(["a", "b"]), "strings"), (np.array([object(), object()]), "objects"),
                      (np.zeros(4, np.int64), "int64")]:
        with pytest.raises(InvalidInputError, match=word):
            load_audio(bad, source_rate=16000)
    with pytest.raises(InvalidInputError, match="shape"):
        load_audio(np.zeros((2, 3, 100), np.float32), source_rate=16000)
    with pytest.raises(InvalidInputError, match="neither side"):
        load_audio(np.zeros((20, 100), np.float32), source_rate=16000)
    with pytest.raises(InvalidInputError, match="single number"):
        load_audio(np.float32(0.5), source_rate=16000)
    with pytest.raises(InvalidInputError, match="None"):
        load_audio(None)
    for rate in (0, -16000, 1.5, "16000", True):
        with pytest.raises(InvalidInputError, match="sampling_rate|source_rate"):
            load_audio(np.zeros(10, np.float32), source_rate=16000, sampling_rate=rate)


def test_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "soundfile", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'pretrained\[audio\]'") as info:
        load_audio(STEREO)
    assert isinstance(info.value, ImportError)
    monkeypatch.setitem(sys.modules, "soxr", None)
    with pytest.raises(MissingDependencyError, match=r"soxr.*pip install 'pretrained\[audio\]'"):
        load_audio(np.zeros(100, np.float32), source_rate=8000)
    # an array already at the target rate needs neither package
    assert load_audio(np.zeros(100, np.float32), source_rate=16000).shape == (100,)


def test_import_stays_light():
    code = ("import sys, pretrained; from pretrained import load_audio, AutoFeatureExtractor; "
            "import pretrained.audio.io; print(' '.join(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    loaded = set(out.stdout.split())
    assert "torch" not in loaded and "soundfile" not in loaded and "soxr" not in loaded
