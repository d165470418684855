"""Audio in any of the forms users have it -> one float32 mono waveform at the model's rate.

Files and bytes are decoded by ``soundfile`` (libsndfile) and resampled by ``soxr``; both live in
the ``audio`` extra and are imported only when a file must be decoded or a rate changed, so an
array already at the right rate needs neither. The steps on a file are the reference's own
(``transformers.audio_utils.load_audio`` with its soundfile backend, itself ``librosa.load``):
decode to float32, average the channels, resample with soxr's "HQ" quality, then pad or trim to
``ceil(n * rate / source_rate)`` samples, so a file gives the same samples here as there.

Example::

    >>> import numpy as np
    >>> from pretrained.audio import load_audio
    >>> tone = np.sin(np.arange(48000) / 48000 * 2 * np.pi * 440).astype(np.float32)
    >>> load_audio({"raw": tone, "sampling_rate": 48000}).shape      # 1 s at 16 kHz
    (16000,)
    >>> load_audio(np.zeros(10, np.int16), source_rate=16000).dtype
    dtype('float32')
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from typing import Any, Union

import numpy as np

from ..errors import AudioDecodeError, AudioFileNotFoundError, InvalidInputError, MissingDependencyError

__all__ = ["load_audio", "resample", "AudioSource", "MAX_CHANNELS"]

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Mapping[str, Any], Any]

#: A 2-D array whose shorter side is at most this is read as channels (more is a batch or a mistake).
MAX_CHANNELS = 8

_INSTALL_HINT = "pip install 'pretrained[audio]'"
_RAW_HINT = 'pass {"raw": array, "sampling_rate": 16000} or load_audio(array, source_rate=16000)'
# Integer PCM -> [-1, 1): the scale soundfile applies when it reads such a file as float.
_PCM_SCALE = {np.dtype(np.int8): 128.0, np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0}


def _soundfile():
    try:
        import soundfile
    except ImportError as e:  # OSError too: the wheel is there but libsndfile is not
        raise MissingDependencyError(
            f"decoding audio files needs the 'soundfile' package (libsndfile): {_INSTALL_HINT}") from e
    except OSError as e:
        raise MissingDependencyError(
            f"soundfile is installed but cannot load libsndfile ({e}); reinstall it: {_INSTALL_HINT}") from e
    return soundfile


def _soxr():
    try:
        import soxr
    except ImportError as e:
        raise MissingDependencyError(f"resampling audio needs the 'soxr' package: {_INSTALL_HINT}") from e
    return soxr


def _readable_formats(soundfile: Any) -> str:
    version = getattr(soundfile, "__libsndfile_version__", "unknown")
    names = ", ".join(sorted(soundfile.available_formats()))
    return (f"what libsndfile {version} reads: {names} (WAV, FLAC and OGG/Vorbis/Opus everywhere; "
            "MP3 needs libsndfile >= 1.1)")


def _check_rate(rate: Any, what: str) -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer, float, np.floating)):
        raise InvalidInputError(f"{what} must be a positive number of samples per second, got {rate!r}")
    if not math.isfinite(float(rate)) or rate <= 0 or float(rate) != int(rate):
        raise InvalidInputError(f"{what} must be a positive whole number of Hz, got {rate!r}")
    return int(rate)


def resample(waveform: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """``waveform`` (1-D float32) from ``source_rate`` to ``target_rate`` with soxr ("HQ"), padded
    or trimmed to ``ceil(n * target_rate / source_rate)`` samples as the reference does, so the
    length does not depend on soxr's filter delay."""
    if source_rate == target_rate:
        return waveform
    n_out = math.ceil(waveform.shape[-1] * target_rate / source_rate)
    out = _soxr().resample(waveform, source_rate, target_rate, quality="HQ")
    if out.shape[-1] < n_out:
        out = np.pad(out, (0, n_out - out.shape[-1]))
    return np.ascontiguousarray(out[:n_out], dtype=np.float32)


def _decode(data: Any, what: str) -> tuple[np.ndarray, int]:
    """(frames, channels) float32 and the file's rate; every decoder failure named as such."""
    soundfile = _soundfile()
    try:
        with soundfile.SoundFile(data) as f:
            rate = f.samplerate
            frames = f.read(dtype="float32", always_2d=True)
    except (RuntimeError, TypeError, ValueError, EOFError) as e:  # LibsndfileError is a RuntimeError
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AudioDecodeError(
            f"could not decode {what} as audio ({detail}). Audio files must be in {_readable_formats(soundfile)}; "
            "convert other formats first (e.g. ffmpeg -i in.m4a out.wav).") from None
    if frames.shape[0] == 0:
        raise AudioDecodeError(f"{what} holds no audio samples (zero frames)")
    return frames, rate


def _from_path(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not os.path.exists(text):
        hint = (" URLs are not downloaded by load_audio: fetch the file first." if text.startswith(("http://", "https://"))
                else "")
        raise AudioFileNotFoundError(f"audio file {text!r} does not exist.{hint}")
    if os.path.isdir(text):
        raise AudioDecodeError(f"{text!r} is a folder, not an audio file")
    if os.path.getsize(text) == 0:
        raise AudioDecodeError(f"audio file {text!r} is empty (0 bytes)")
    return _decode(text, f"file {text!r}")


def _from_bytes(data: bytes | bytearray | memoryview) -> tuple[np.ndarray, int]:
    if len(data) == 0:
        raise AudioDecodeError("the audio bytes are empty (0 bytes)")
    return _decode(io.BytesIO(bytes(data)), f"{len(data)} bytes")


def _as_float_array(array: Any) -> np.ndarray:
    """Any array-like of samples -> float32 ndarray, integer PCM scaled to [-1, 1)."""
    if type(array).__module__.startswith("torch"):
        array = array.detach().cpu()
        if str(array.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            array = array.float()
        array = array.numpy()
    elif not isinstance(array, np.ndarray):
        try:
            array = np.asarray(array)
        except (ValueError, TypeError) as e:
            raise InvalidInputError(f"audio samples must be a numeric array, got {type(array).__name__}: {e}") from None
    kind = array.dtype.kind
    if kind == "f":
        out = array.astype(np.float32, copy=False)
    elif array.dtype in _PCM_SCALE:
        out = (array.astype(np.float32) / np.float32(_PCM_SCALE[array.dtype])).astype(np.float32)
    elif array.dtype == np.uint8:  # 8-bit WAV is unsigned, silence at 128
        out = ((array.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    else:
        why = {"b": "booleans", "c": "complex numbers", "O": "Python objects", "U": "strings", "S": "bytes strings",
               "V": "raw records", "M": "dates", "m": "time deltas"}.get(kind, f"{array.dtype}")
        raise InvalidInputError(
            f"audio samples have dtype {array.dtype} ({why}); pass float samples in [-1, 1] "
            "(float32/float64) or integer PCM (int16, int32, int8, uint8)")
    return out


def _to_mono(samples: np.ndarray, what: str) -> np.ndarray:
    if samples.ndim == 0:
        raise InvalidInputError(f"{what} is a single number, not a waveform")
    if samples.ndim > 2:
        raise InvalidInputError(
            f"{what} has shape {samples.shape}: a waveform is 1-D (samples) or 2-D (samples, channels) / "
            f"(channels, samples) with at most {MAX_CHANNELS} channels; pass batches as a list of waveforms")
    if samples.ndim == 2:
        rows, cols = samples.shape
        if cols <= MAX_CHANNELS and (rows > MAX_CHANNELS or cols <= rows):
            samples = samples.T  # soundfile's (frames, channels)
        elif rows > MAX_CHANNELS:
            raise InvalidInputError(
                f"{what} has shape {samples.shape}: neither side is a channel count (at most {MAX_CHANNELS}); "
                "pass batches as a list of waveforms")
        samples = samples.mean(axis=0, dtype=np.float32) if samples.shape[0] > 1 else samples[0]
    if samples.shape[0] == 0:
        raise InvalidInputError(f"{what} has zero samples")
    return samples


def load_audio(source: AudioSource, sampling_rate: int = 16000, *, source_rate: int | None = None) -> np.ndarray:
    """One mono float32 waveform at ``sampling_rate`` from a file, bytes, an array or a dict.

    ``source`` may be a path (anything libsndfile reads: WAV, FLAC, OGG, AIFF..., MP3 with
    libsndfile >= 1.1), the bytes of such a file, a numpy array or torch tensor of samples with
    ``source_rate=`` given, or the reference pipeline's dicts ``{"raw": array, "sampling_rate": sr}``
    / ``{"array": array, "sampling_rate": sr}`` (other keys, like ``path``, are ignored). A raw
    array must come with its rate: guessing it would silently change the pitch and speed.

    Several channels are averaged (files give (frames, channels); arrays may also be
    (channels, frames) with at most 8 channels). Integer PCM is scaled to [-1, 1), floats are
    taken as they are. A different rate is resampled with soxr at "HQ" quality.

    Raises :class:`AudioFileNotFoundError` for a missing path, :class:`AudioDecodeError` for what
    cannot be decoded or decodes to nothing, :class:`MissingDependencyError` when soundfile/soxr
    are needed but absent, and :class:`InvalidInputError` for a raw array without a rate, a wrong
    dtype, more than 2 dimensions, zero samples, or NaN/inf samples.
    """
    target = _check_rate(sampling_rate, "sampling_rate")
    if source_rate is not None:
        source_rate = _check_rate(source_rate, "source_rate")

    if isinstance(source, (str, os.PathLike)):
        if source_rate is not None:
            raise InvalidInputError("source_rate= is for raw arrays; a file's own header gives its rate")
        frames, rate = _from_path(source)
        return _finish(_frames_to_mono(frames), f"the audio in {os.fspath(source)!r}", rate, target)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if source_rate is not None:
            raise InvalidInputError("source_rate= is for raw arrays; the file's own header gives its rate")
        frames, rate = _from_bytes(source)
        return _finish(_frames_to_mono(frames), "the decoded audio bytes", rate, target)

    what = "the audio array"
    if isinstance(source, Mapping):
        key = "raw" if "raw" in source else "array" if "array" in source else None
        if key is None:
            raise InvalidInputError(
                f"an audio dict needs the samples under 'raw' or 'array' and their rate under 'sampling_rate' "
                f"(got keys {sorted(map(str, source))}): {_RAW_HINT}")
        if source.get("sampling_rate") is None:
            raise InvalidInputError(f"the audio dict has no 'sampling_rate': {_RAW_HINT}")
        given = _check_rate(source["sampling_rate"], "the dict's 'sampling_rate'")
        if source_rate is not None and source_rate != given:
            raise InvalidInputError(f"source_rate={source_rate} contradicts the dict's sampling_rate={given}")
        source_rate, source, what = given, source[key], f"the dict's {key!r}"
    elif source is None:
        raise InvalidInputError(f"no audio given (None): pass a file path, bytes, or an array; {_RAW_HINT}")

    samples = _to_mono(_as_float_array(source), what)
    if source_rate is None:
        raise InvalidInputError(f"a raw audio array needs its sampling rate: {_RAW_HINT}")
    return _finish(samples, what, source_rate, target)


def _frames_to_mono(frames: np.ndarray) -> np.ndarray:
    """soundfile's (frames, channels) -> mono, averaging as the reference does."""
    return frames[:, 0] if frames.shape[1] == 1 else frames.T.mean(axis=0)


def _finish(samples: np.ndarray, what: str, source_rate: int, target_rate: int) -> np.ndarray:
    if not np.isfinite(samples).all():
        bad = int(np.count_nonzero(~np.isfinite(samples)))
        raise InvalidInputError(f"{what} holds {bad} NaN or infinite samples; clean the signal first")
    return resample(np.ascontiguousarray(samples, dtype=np.float32), source_rate, target_rate)
