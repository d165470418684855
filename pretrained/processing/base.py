"""What every feature extractor shares: its ``preprocessor_config.json``, the waveforms it accepts,
padding/truncation of waveforms, and :class:`BatchFeature`, the dict a call returns.

The reference's padding rules are followed to the letter (they decide the shapes a model sees):
``padding=True``/``"longest"`` pads to the longest waveform of the batch, ``"max_length"`` to
``max_length``, ``False``/``"do_not_pad"`` not at all; ``truncation`` cuts to ``max_length``;
``pad_to_multiple_of`` rounds both targets up; padding goes on ``padding_side``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError, InvalidInputError, UnsupportedOptionError

__all__ = ["BatchFeature", "FeatureExtractor", "PaddedBatch", "PREPROCESSOR_CONFIG", "read_preprocessor_config",
           "write_preprocessor_config"]

logger = logging.getLogger("pretrained")

PREPROCESSOR_CONFIG = "preprocessor_config.json"
_PADDING_NAMES = {True: "longest", "longest": "longest", "max_length": "max_length",
                  False: "do_not_pad", "do_not_pad": "do_not_pad", None: "do_not_pad"}


class BatchFeature(dict):
    """What a feature extractor returns: a ``dict`` (``input_features`` / ``input_values``,
    ``attention_mask``) with attribute access and ``.to(device)`` / ``.to(dtype)`` for tensors."""

    def __getattr__(self, item: str) -> Any:
        if item.startswith("_"):
            raise AttributeError(item)
        try:
            return self[item]
        except KeyError:
            raise AttributeError(f"BatchFeature has no key {item!r} (keys: {list(self.keys())})") from None

    @property
    def data(self) -> dict[str, Any]:
        """The plain ``dict`` (the reference's ``UserDict`` attribute)."""
        return dict(self)

    def to(self, *args: Any, **kwargs: Any) -> "BatchFeature":
        """Move the tensors (``.to(device)``); a dtype converts only floating tensors, so masks stay
        integers, as the reference does."""
        import torch

        dtype = next((a for a in (*args, kwargs.get("dtype")) if isinstance(a, torch.dtype)), None)
        out = BatchFeature()
        for key, value in self.items():
            if isinstance(value, torch.Tensor):
                if dtype is not None and not value.is_floating_point():
                    rest = [a for a in args if not isinstance(a, torch.dtype)]
                    value = value.to(*rest, **{k: v for k, v in kwargs.items() if k != "dtype"})
                else:
                    value = value.to(*args, **kwargs)
            out[key] = value
        return out


def convert_tensors(values: Any, return_tensors: str | None, key: str) -> Any:
    """``None`` leaves arrays/lists as they are; ``"np"`` stacks into one array; ``"pt"`` into a
    torch tensor (no copy from a numpy array)."""
    if return_tensors is None:
        return values
    kind = getattr(return_tensors, "value", return_tensors)
    if kind not in ("pt", "np"):
        raise UnsupportedOptionError(
            f"return_tensors={return_tensors!r}: only 'pt' (PyTorch), 'np' (NumPy) or None are supported")
    if not isinstance(values, np.ndarray):
        import torch

        if isinstance(values, torch.Tensor):
            return values if kind == "pt" else values.cpu().numpy()
        if len({np.shape(v) for v in values}) > 1:
            raise InvalidInputError(
                f"{key!r} rows have different lengths ({sorted({len(v) for v in values})}), so they cannot be "
                f"one {'tensor' if kind == 'pt' else 'array'}: pass padding=True (or 'max_length'), or "
                "return_tensors=None")
        values = np.stack(values)
    if kind == "np":
        return values
    import torch

    return torch.from_numpy(values)


def as_waveforms(raw_speech: Any, owner: str) -> tuple[list[np.ndarray], bool]:
    """The reference's accepted inputs -> (list of 1-D float32 waveforms, whether it was a batch).

    One waveform: a 1-D array/tensor or a list of numbers. A batch: a 2-D array/tensor (one row
    each) or a list of arrays/lists/tensors. Samples are taken as they are (no integer scaling:
    that is :func:`~pretrained.audio.load_audio`'s job)."""
    if type(raw_speech).__module__.startswith("torch"):
        raw_speech = raw_speech.detach().cpu().float().numpy()
    if isinstance(raw_speech, np.ndarray):
        if raw_speech.ndim > 2:
            raise InvalidInputError(
                f"{owner} takes mono audio: got an array of shape {raw_speech.shape}; average the channels "
                "first (pretrained.audio.load_audio does) and pass a batch as a list or a 2-D array")
        batched = raw_speech.ndim == 2
        items = list(raw_speech) if batched else [raw_speech]
    elif isinstance(raw_speech, (list, tuple)):
        if len(raw_speech) == 0:
            raise InvalidInputError(f"{owner} got an empty list: pass one waveform or a list of waveforms")
        first = raw_speech[0]
        batched = isinstance(first, (np.ndarray, list, tuple)) or type(first).__module__.startswith("torch")
        items = list(raw_speech) if batched else [raw_speech]
    else:
        raise InvalidInputError(
            f"{owner} takes a waveform (1-D numpy array, torch tensor or list of floats) or a list of them, "
            f"not {type(raw_speech).__name__}; decode files with pretrained.audio.load_audio first")
    waves = []
    for i, item in enumerate(items):
        if type(item).__module__.startswith("torch"):
            item = item.detach().cpu().float().numpy()
        try:
            wave = np.asarray(item)
        except ValueError as e:
            raise InvalidInputError(f"{owner}: waveform {i} is not a flat list of numbers ({e})") from None
        if wave.dtype.kind not in "fiu":
            raise InvalidInputError(
                f"{owner}: waveform {i} has dtype {wave.dtype}; audio samples must be real numbers (float32)")
        if wave.ndim != 1:
            raise InvalidInputError(
                f"{owner}: waveform {i} has shape {wave.shape}; each waveform must be 1-D mono samples")
        if wave.shape[0] == 0:
            raise InvalidInputError(f"{owner}: waveform {i} is empty (zero samples)")
        waves.append(wave.astype(np.float32, copy=False))
    return waves, batched


class PaddedBatch:
    """Waveforms after truncation and padding: ``values`` (B, L) when all rows have one length
    (else a list of rows), the sample-level ``mask`` in the same layout (``None`` when not asked), and each row's
    ``lengths`` (real samples), ``starts`` (where they begin: > 0 under left padding) and
    ``sources`` (the waveforms after truncation)."""

    def __init__(self, values: np.ndarray | list[np.ndarray], mask: np.ndarray | list[np.ndarray] | None,
                 lengths: list[int], starts: list[int], sources: list[np.ndarray]) -> None:
        self.values, self.mask, self.lengths, self.starts, self.sources = values, mask, lengths, starts, sources
        self.buffer: np.ndarray | None = None  # ``values`` with margins, when asked for

    @property
    def is_rectangular(self) -> bool:
        return isinstance(self.values, np.ndarray)


def _round_up(n: int, multiple: int | None) -> int:
    return n if not multiple or n % multiple == 0 else (n // multiple + 1) * multiple


def padding_strategy(padding: Any, max_length: int | None) -> str:
    """``"longest"``, ``"max_length"`` or ``"do_not_pad"`` from the reference's spellings (an enum
    with a ``value`` counts as its value)."""
    key = getattr(padding, "value", padding)
    name = _PADDING_NAMES.get(key) if isinstance(key, (bool, str, type(None))) else None
    if name is None:
        raise InvalidInputError(f"padding={padding!r}: use True/'longest', 'max_length', or False/'do_not_pad'")
    if name == "max_length" and max_length is None:
        raise InvalidInputError("padding='max_length' needs max_length=<number of samples>")
    return name


class FeatureExtractor:
    """Base of the feature extractors: config fields, ``from_pretrained`` / ``save_pretrained``,
    the sampling-rate check and waveform padding.

    A subclass lists its config keys in ``config_keys`` (``__init__`` arguments stored as
    attributes of the same name, written back by :meth:`to_dict`); keys it does not know are kept
    in ``extra_config`` and written back unchanged, except ``processor_class``, which the
    reference drops as well.
    """

    model_input_names: ClassVar[list[str]] = []
    config_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, feature_size: int, sampling_rate: int, padding_value: float,
                 padding_side: str = "right", return_attention_mask: bool = False, **extra: Any) -> None:
        extra.pop("feature_extractor_type", None)
        extra.pop("processor_class", None)  # the reference drops it too: the processor writes its own
        self.feature_size = positive_int(feature_size, "feature_size")
        self.sampling_rate = positive_int(sampling_rate, "sampling_rate")
        if isinstance(padding_value, bool) or not isinstance(padding_value, (int, float)):
            raise ConfigError(f"padding_value must be a number, got {padding_value!r}")
        self.padding_value = float(padding_value)
        if padding_side not in ("right", "left"):
            raise ConfigError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        self.padding_side = padding_side
        self.return_attention_mask = bool(return_attention_mask)
        self.extra_config: dict[str, Any] = extra

    # --- configuration ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The ``preprocessor_config.json`` content, readable by the reference's class of this name."""
        out = dict(self.extra_config)
        for key in ("feature_size", "sampling_rate", "padding_value", "padding_side", "return_attention_mask",
                    *self.config_keys):
            out[key] = getattr(self, key)
        out["feature_extractor_type"] = type(self).__name__
        return dict(sorted(out.items()))

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()  # type: ignore[union-attr]

    __hash__ = None  # type: ignore[assignment]  (mutable, compared by content)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], **overrides: Any) -> "FeatureExtractor":
        """Build from a config dict; ``overrides`` win over its keys."""
        merged = {**config, **overrides}
        merged.pop("feature_extractor_type", None)
        try:
            return cls(**merged)
        except TypeError as e:
            raise ConfigError(f"{cls.__name__}: {e}") from None

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, revision: str | None = None,
                        cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                        token: str | bool | None = None, **overrides: Any) -> "FeatureExtractor":
        """Load ``preprocessor_config.json`` from a local folder (or that file itself) or a hub id
        (cache first, like the models); keyword arguments override its keys."""
        return cls.from_dict(read_preprocessor_config(name_or_path, revision=revision, cache_dir=cache_dir,
                                                      local_files_only=local_files_only, token=token), **overrides)

    def save_pretrained(self, save_directory: str | os.PathLike, **_: Any) -> list[str]:
        """Write ``preprocessor_config.json`` (atomically) into ``save_directory``; returns its path."""
        return write_preprocessor_config(save_directory, self.to_json_string())

    # --- calling ------------------------------------------------------------------------------
    def check_sampling_rate(self, sampling_rate: int | None) -> None:
        """A different rate is refused (the features would be silently wrong); no rate only warns,
        as the reference does."""
        if sampling_rate is None:
            logger.warning("It is strongly recommended to pass the `sampling_rate` argument to `%s()`. "
                           "Failing to do so can result in silent errors that might be hard to debug.",
                           type(self).__name__)
        elif sampling_rate != self.sampling_rate:
            raise InvalidInputError(
                f"The model corresponding to this feature extractor: {type(self).__name__} was trained using a "
                f"sampling rate of {self.sampling_rate}. Please make sure that the provided `raw_speech` input was "
                f"sampled with {self.sampling_rate} and not {sampling_rate} (pretrained.audio.load_audio("
                f"..., sampling_rate={self.sampling_rate}) resamples).")

    def pad_waveforms(self, waves: Sequence[np.ndarray], *, padding: Any, max_length: int | None,
                      truncation: bool, pad_to_multiple_of: int | None, with_mask: bool = True,
                      with_values: bool = True, margin: int = 0) -> PaddedBatch:
        """Truncate then pad 1-D float32 waveforms by the reference's rules (see the module doc).

        The sample-level mask is built only ``with_mask``; without ``with_values`` the rows are
        allocated but left for the caller to fill (from ``sources``, the truncated waveforms),
        which saves a copy when the caller transforms every sample anyway. ``margin`` leaves that
        many uninitialised samples on both sides of a rectangular batch (``buffer``; ``values`` is
        its middle), for a caller that pads further without copying again."""
        strategy = padding_strategy(padding, max_length)
        if pad_to_multiple_of is not None and (isinstance(pad_to_multiple_of, bool) or pad_to_multiple_of <= 0):
            raise InvalidInputError(f"pad_to_multiple_of must be a positive integer, got {pad_to_multiple_of!r}")
        if truncation:
            if max_length is None:
                raise InvalidInputError("truncation=True needs max_length=<number of samples>")
            limit = _round_up(max_length, pad_to_multiple_of)
            waves = [w[:limit] for w in waves]
        lengths = [int(w.shape[0]) for w in waves]
        if strategy == "do_not_pad":
            target = None
        else:
            target = _round_up(max(lengths) if strategy == "longest" else int(max_length), pad_to_multiple_of)
        widths = [max(target, n) if target is not None else n for n in lengths]
        left = self.padding_side == "left"
        starts = [width - n if left else 0 for width, n in zip(widths, lengths)]
        rectangular = len(set(widths)) == 1
        buffer = np.empty((len(waves), widths[0] + 2 * margin), dtype=np.float32) if rectangular else None
        values: Any = (buffer[:, margin:margin + widths[0]] if rectangular
                       else [np.empty(width, dtype=np.float32) for width in widths])
        mask: Any = None
        if with_mask:
            mask = (np.zeros((len(waves), widths[0]), dtype=np.int32) if rectangular
                    else [np.zeros(width, dtype=np.int32) for width in widths])
        for row, (w, s, n) in enumerate(zip(waves, starts, lengths)):
            if with_values:
                values[row][:s] = self.padding_value
                values[row][s:s + n] = w
                values[row][s + n:] = self.padding_value
            if mask is not None:
                mask[row][s:s + n] = 1
        padded = PaddedBatch(values, mask, lengths, starts, list(waves))
        padded.buffer = buffer
        return padded


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int if it is a positive whole number, else :class:`ConfigError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        if isinstance(value, float) and value.is_integer() and value > 0:
            return int(value)
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def read_preprocessor_config(name_or_path: str | os.PathLike, *, revision: str | None = None,
                             cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                             token: str | bool | None = None, required: bool = True) -> dict[str, Any]:
    """The parsed ``preprocessor_config.json`` of a folder, a hub id, or the file's own path
    (``{}`` when absent and not ``required``)."""
    path = Path(os.fspath(name_or_path)).expanduser()
    if path.is_file():
        return read_json(path)
    from ..io.hub import resolve

    files = resolve(name_or_path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                    token=token)
    found = files.get(PREPROCESSOR_CONFIG)
    if found is None:
        if not required:
            return {}
        from ..errors import ModelNotFoundError

        raise ModelNotFoundError(
            f"{files.describe()} has no {PREPROCESSOR_CONFIG}: it is not an audio model's folder, or the feature "
            "extractor was not saved (feature_extractor.save_pretrained(folder) writes it)")
    return read_json(found)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; malformed JSON named with its line and column."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {str(path)!r}: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{str(path)!r} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{str(path)!r} must hold a JSON object, not {type(data).__name__}")
    return data


def write_preprocessor_config(save_directory: str | os.PathLike, text: str) -> list[str]:
    """Write ``text`` as ``preprocessor_config.json`` in ``save_directory`` (created), atomically
    (a temporary file, then one rename); returns its path. Feature extractors and image
    processors save through this."""
    directory = Path(save_directory)
    if directory.is_file():
        raise InvalidInputError(f"{str(directory)!r} is a file; save_pretrained needs a directory")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / PREPROCESSOR_CONFIG
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".preprocessor_config.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return [str(target)]
