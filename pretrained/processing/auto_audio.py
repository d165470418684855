"""``AutoFeatureExtractor`` and ``AutoProcessor``: the right feature extractor (and tokenizer) for
a checkpoint folder or hub id, read from its ``preprocessor_config.json``.

The class comes from the file's ``feature_extractor_type``; files that lack it (older exports)
fall back to ``processor_class``, then to ``config.json``'s ``model_type``. A processor pairs the
feature extractor with the checkpoint's tokenizer, as the reference's ``WhisperProcessor`` /
``Wav2Vec2Processor`` do, for models whose outputs are text.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from ..errors import InvalidInputError, RemoteCodeError, TokenizerNotFoundError, UnknownModelTypeError
from .ast_features import ASTFeatureExtractor
from .base import PREPROCESSOR_CONFIG, FeatureExtractor, read_json, read_preprocessor_config
from .wav2vec2_features import Wav2Vec2FeatureExtractor
from .whisper_features import WhisperFeatureExtractor

__all__ = ["AutoFeatureExtractor", "AutoProcessor", "AudioProcessor", "WhisperProcessor", "FEATURE_EXTRACTORS"]

FEATURE_EXTRACTORS: dict[str, type[FeatureExtractor]] = {
    cls.__name__: cls for cls in (WhisperFeatureExtractor, Wav2Vec2FeatureExtractor, ASTFeatureExtractor)
}
# Checkpoints whose preprocessor config does not name the class: by processor, then by model type.
_BY_PROCESSOR = {"WhisperProcessor": WhisperFeatureExtractor, "Wav2Vec2Processor": Wav2Vec2FeatureExtractor}
_BY_MODEL_TYPE = {
    "whisper": WhisperFeatureExtractor,
    "wav2vec2": Wav2Vec2FeatureExtractor,
    "hubert": Wav2Vec2FeatureExtractor,
    "audio-spectrogram-transformer": ASTFeatureExtractor,
}


def _supported() -> str:
    return (f"feature_extractor_type {', '.join(sorted(FEATURE_EXTRACTORS))}, or config.json model_type "
            f"{', '.join(sorted(_BY_MODEL_TYPE))}")


def _hub_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop the arguments that say where files come from (the rest configure the object)."""
    hub = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "local_files_only", "token") if k in kwargs}
    if kwargs.pop("trust_remote_code", False):
        raise RemoteCodeError("trust_remote_code=True is not supported: pretrained never executes code downloaded "
                              "with a checkpoint; drop it")
    return hub


def _model_type(name_or_path: str | os.PathLike, hub: dict[str, Any]) -> str | None:
    from ..io.hub import resolve

    if os.path.isfile(os.fspath(name_or_path)):
        return None
    found = resolve(name_or_path, **hub).get("config.json")
    return None if found is None else read_json(found).get("model_type")


def _pick_class(config: dict[str, Any], name_or_path: str | os.PathLike, hub: dict[str, Any]) -> type[FeatureExtractor]:
    declared = config.get("feature_extractor_type")
    if declared is not None:
        cls = FEATURE_EXTRACTORS.get(declared)
        if cls is None:
            remote = " (its auto_map points to remote code, which is never run)" if "auto_map" in config else ""
            raise UnknownModelTypeError(
                f"{PREPROCESSOR_CONFIG} of {os.fspath(name_or_path)!r} names feature_extractor_type {declared!r}"
                f"{remote}; supported: {_supported()}")
        return cls
    if config.get("processor_class") in _BY_PROCESSOR:
        return _BY_PROCESSOR[config["processor_class"]]
    model_type = _model_type(name_or_path, hub)
    if model_type in _BY_MODEL_TYPE:
        return _BY_MODEL_TYPE[model_type]
    raise UnknownModelTypeError(
        f"cannot tell which feature extractor {os.fspath(name_or_path)!r} needs: {PREPROCESSOR_CONFIG} has no "
        f"feature_extractor_type and config.json's model_type is {model_type!r}; supported: {_supported()}")


class AutoFeatureExtractor:
    """Picks and loads a checkpoint's feature extractor.

    Example::

        >>> import tempfile
        >>> from pretrained.processing import AutoFeatureExtractor, WhisperFeatureExtractor
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     _ = WhisperFeatureExtractor(feature_size=128).save_pretrained(folder)
        ...     fe = AutoFeatureExtractor.from_pretrained(folder)
        >>> type(fe).__name__, fe.feature_size
        ('WhisperFeatureExtractor', 128)
    """

    def __init__(self) -> None:
        raise TypeError("AutoFeatureExtractor is not instantiated; use AutoFeatureExtractor.from_pretrained(path)")

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> FeatureExtractor:
        """The feature extractor of a folder, a hub id (``revision=``, ``cache_dir=``,
        ``local_files_only=``, ``token=`` as for models) or a ``preprocessor_config.json`` path;
        other keyword arguments override config keys. Raises :class:`UnknownModelTypeError`
        naming the supported types when the checkpoint needs another one."""
        hub = _hub_kwargs(kwargs)
        config = read_preprocessor_config(name_or_path, **hub)
        return _pick_class(config, name_or_path, hub).from_dict(config, **kwargs)


class AudioProcessor:
    """A feature extractor and a tokenizer in one object: audio in through the first, text
    (labels, decoding) through the second, as the reference's speech processors.

    ``processor(audio=..., sampling_rate=..., text=...)`` returns the features; with ``text``
    too, its token ids under ``labels``; with ``text`` alone, the tokenizer's output. Keyword
    arguments go to the feature extractor when its ``__call__`` takes them, else to the
    tokenizer (``return_tensors`` to both).
    """

    def __init__(self, feature_extractor: FeatureExtractor, tokenizer: Any) -> None:
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(feature_extractor={type(self.feature_extractor).__name__}, "
                f"tokenizer={type(self.tokenizer).__name__})")

    @property
    def model_input_names(self) -> list[str]:
        return list(dict.fromkeys([*self.feature_extractor.model_input_names, "attention_mask"]))

    def __call__(self, audio: Any = None, sampling_rate: int | None = None, text: Any = None,
                 **kwargs: Any) -> Any:
        if audio is None:
            audio = kwargs.pop("raw_speech", None)
        if audio is None and text is None:
            raise InvalidInputError(f"{type(self).__name__} needs audio=... and/or text=...")
        takes = inspect.signature(type(self.feature_extractor).__call__).parameters
        audio_kwargs = {k: v for k, v in kwargs.items() if k in takes or k == "return_tensors"}
        text_kwargs = {k: v for k, v in kwargs.items() if k not in takes or k == "return_tensors"}
        features = None
        if audio is not None:
            features = self.feature_extractor(audio, sampling_rate=sampling_rate, **audio_kwargs)
        if text is None:
            return features
        encodings = self.tokenizer(text, **text_kwargs)
        if features is None:
            return encodings
        features["labels"] = encodings["input_ids"]
        return features

    def batch_decode(self, *args: Any, **kwargs: Any) -> Any:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> Any:
        return self.tokenizer.decode(*args, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> list[str]:
        """Both halves into one folder: ``preprocessor_config.json`` and the tokenizer files."""
        written = list(self.feature_extractor.save_pretrained(save_directory))
        written += [str(p) for p in self.tokenizer.save_pretrained(save_directory)]
        return written


class WhisperProcessor(AudioProcessor):
    """Whisper's feature extractor and tokenizer (the reference's ``WhisperProcessor``)."""

    def get_decoder_prompt_ids(self, task: str | None = None, language: str | None = None,
                               no_timestamps: bool = True) -> Any:
        """The forced decoder prompt (language, task, no-timestamps tokens), from the tokenizer."""
        prompt = getattr(self.tokenizer, "get_decoder_prompt_ids", None)
        if prompt is None:
            raise InvalidInputError(f"the tokenizer ({type(self.tokenizer).__name__}) has no Whisper prompt ids")
        return prompt(task=task, language=language, no_timestamps=no_timestamps)


class AutoProcessor:
    """Loads what a checkpoint needs to turn raw inputs into model inputs: a
    :class:`WhisperProcessor` for Whisper, an :class:`AudioProcessor` for other audio models
    with a tokenizer (CTC models), the bare feature extractor for those without one (audio
    classifiers).

    Example::

        >>> from pretrained.processing import AutoProcessor
        >>> processor = AutoProcessor.from_pretrained("path/to/whisper-tiny")      # doctest: +SKIP
        >>> batch = processor(audio=waveform, sampling_rate=16000, return_tensors="pt")  # doctest: +SKIP
        >>> processor.batch_decode(generated_ids, skip_special_tokens=True)        # doctest: +SKIP
    """

    def __init__(self) -> None:
        raise TypeError("AutoProcessor is not instantiated; use AutoProcessor.from_pretrained(path)")

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> AudioProcessor | FeatureExtractor:
        """Same arguments as :meth:`AutoFeatureExtractor.from_pretrained`; the tokenizer is read from
        the same place. Raises :class:`TokenizerNotFoundError` for a Whisper checkpoint without one."""
        hub = _hub_kwargs(kwargs)
        feature_extractor = AutoFeatureExtractor.from_pretrained(name_or_path, **hub, **kwargs)
        from ..tokenization import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, **hub)
        except TokenizerNotFoundError:
            if isinstance(feature_extractor, WhisperFeatureExtractor):
                raise
            return feature_extractor
        if isinstance(feature_extractor, WhisperFeatureExtractor):
            return WhisperProcessor(feature_extractor, tokenizer)
        return AudioProcessor(feature_extractor, tokenizer)

