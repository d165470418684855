"""One exception family for the whole library.

Every error subclasses :class:`PretrainedError` *and* the builtin a caller would naturally
catch (``ValueError``, ``OSError``, ``FileNotFoundError``, ``ImportError``), so existing
``except`` clauses keep working. Messages name the file, key or argument and say what to do.
"""

from __future__ import annotations

__all__ = [
    "PretrainedError",
    "ModelNotFoundError",
    "ConfigError",
    "UnknownModelTypeError",
    "RemoteCodeError",
    "CheckpointError",
    "CheckpointCorruptError",
    "ShapeMismatchError",
    "UnsafeCheckpointError",
    "TokenizerError",
    "TokenizerNotFoundError",
    "TokenizerLoadError",
    "TemplateError",
    "InvalidInputError",
    "MissingDependencyError",
    "UnknownLanguageCodeError",
    "AudioDecodeError",
    "AudioFileNotFoundError",
]


class PretrainedError(Exception):
    """Base class of every error raised on purpose by `pretrained`."""


# --- finding things -------------------------------------------------------------------------
class ModelNotFoundError(PretrainedError, FileNotFoundError):
    """A model id or path is neither a local folder, nor in the cache, nor reachable."""


# --- configs ----------------------------------------------------------------------------------
class ConfigError(PretrainedError, ValueError):
    """config.json is unreadable, or a field has a wrong type or an impossible value."""


class UnknownModelTypeError(ConfigError):
    """The config's ``model_type`` is not one this library implements."""


class RemoteCodeError(PretrainedError, ValueError):
    """The checkpoint needs code from the hub (``auto_map``); we never execute remote code."""


# --- weights ----------------------------------------------------------------------------------
class CheckpointError(PretrainedError, OSError):
    """A weights file is missing, unreadable or does not fit the model."""


class CheckpointCorruptError(CheckpointError):
    """A weights file is truncated or malformed."""


class ShapeMismatchError(CheckpointError, ValueError):
    """A tensor in the checkpoint has a different shape than the model expects."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle checkpoint holds something other than tensors, or pickles were not allowed."""


# --- tokenizers -------------------------------------------------------------------------------
class TokenizerError(PretrainedError, ValueError):
    """Base of tokenizer problems."""


class TokenizerNotFoundError(TokenizerError, FileNotFoundError):
    """No tokenizer file (tokenizer.json, vocab.txt, vocab.json+merges.txt) was found."""


class TokenizerLoadError(TokenizerError):
    """A tokenizer file exists but cannot be loaded."""


class TemplateError(TokenizerError):
    """A chat template failed to render, or tried something the sandbox forbids."""


# --- use --------------------------------------------------------------------------------------
class InvalidInputError(PretrainedError, ValueError):
    """An argument or input is invalid; the message says which and what is allowed."""


class UnknownLanguageCodeError(InvalidInputError):
    """A language code (``src_lang``/``tgt_lang`` of a multilingual tokenizer) that the tokenizer does
    not have; the message lists the valid ones."""


class MissingDependencyError(PretrainedError, ImportError):
    """An optional dependency is needed for this feature; the message names the extra."""


class UnsupportedOptionError(PretrainedError, ValueError):
    """An option the reference library has that this library does not implement (yet); the
    message says what to use instead. Never silently ignored."""


# --- audio ------------------------------------------------------------------------------------
class AudioDecodeError(InvalidInputError):
    """An audio file or bytes that the decoder cannot read (not audio, a format libsndfile lacks,
    truncated), or that decode to no samples."""


class AudioFileNotFoundError(InvalidInputError, FileNotFoundError):
    """An audio path that does not exist."""


# --- conversion from other formats (appended: pretrained/convert/) ------------------------------
class CTranslate2FormatError(CheckpointCorruptError):
    """A CTranslate2 ``model.bin`` is truncated, declares sizes its file cannot hold, or is not
    that format at all; the message names the file and the byte offset."""


class CTranslate2VersionError(CTranslate2FormatError):
    """A ``model.bin`` whose binary version this reader does not implement (it names the
    versions it reads)."""


class ConversionError(CheckpointError, ValueError):
    """A checkpoint read fine but does not fit the layout the converter expects (a missing or
    misshapen variable, another model spec, a quantized weight)."""


class NonZeroKeyBiasError(ConversionError):
    """A fused q/k/v bias whose key slot is not all zeros: the target layout (Whisper's k_proj has
    no bias) cannot hold it, so converting would silently change the model."""


__all__ += [
    "CTranslate2FormatError",
    "CTranslate2VersionError",
    "ConversionError",
    "NonZeroKeyBiasError",
]


# --- vision (appended: pretrained/vision/) ------------------------------------------------------
class ImageDecodeError(InvalidInputError):
    """An image file or bytes that Pillow cannot read: not an image, a format Pillow lacks, truncated
    or corrupt data, or an image with zero width or height."""


class ImageFileNotFoundError(InvalidInputError, FileNotFoundError):
    """An image path that does not exist."""


class ImageTooLargeError(ImageDecodeError):
    """An image whose pixel count is over Pillow's decompression-bomb limit
    (``PIL.Image.MAX_IMAGE_PIXELS``, kept as Pillow sets it); the message names the limit."""


__all__ += [
    "ImageDecodeError",
    "ImageFileNotFoundError",
    "ImageTooLargeError",
]
