"""Wav2Vec2's (and HuBERT's) input: the raw waveform, padded, each utterance scaled to zero mean
and unit variance, as the reference's ``Wav2Vec2FeatureExtractor`` does.

Each normalised row is written straight from the input into the output (no padded copy first)
in three passes over memory (mean; centre + sum of squares block by block; scale), where the
reference makes about nine and allocates five arrays; numpy throughout, single-threaded, so the
speed does not depend on free cores. The result equals the reference's to float32 rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import BatchFeature, FeatureExtractor, PaddedBatch, as_waveforms, convert_tensors, padding_strategy

__all__ = ["Wav2Vec2FeatureExtractor"]

_VARIANCE_EPSILON = 1e-7


class Wav2Vec2FeatureExtractor(FeatureExtractor):
    """Padded, normalised waveforms for Wav2Vec2 / HuBERT (``input_values``), equal to the
    reference's within 1e-5.

    ``do_normalize`` scales each utterance to zero mean and unit variance. Which samples count
    follows the reference: the real samples when an attention mask is produced
    (``return_attention_mask``, per call or from the config) and padding is on, else the whole
    row, padding included (how the "group norm" checkpoints such as wav2vec2-base were trained).
    Masked padding is set back to ``padding_value``.

    With ``return_tensors=None`` the reference's container types are kept: a list of 1-D arrays
    for normalised values or unequal lengths, a 2-D array otherwise; masks as a list of arrays.

    Example::

        >>> import numpy as np
        >>> from pretrained.processing import Wav2Vec2FeatureExtractor
        >>> fe = Wav2Vec2FeatureExtractor(return_attention_mask=True)
        >>> batch = fe([np.ones(4), np.arange(6.0)], sampling_rate=16000, padding=True, return_tensors="pt")
        >>> batch.input_values.shape, batch.attention_mask.tolist()
        (torch.Size([2, 6]), [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
        >>> round(float(batch.input_values[1].std(unbiased=False)), 4)
        1.0
    """

    model_input_names = ["input_values", "attention_mask"]
    config_keys = ("do_normalize",)

    def __init__(self, feature_size: int = 1, sampling_rate: int = 16000, padding_value: float = 0.0,
                 return_attention_mask: bool = False, do_normalize: bool = True, **kwargs: Any) -> None:
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value,
                         return_attention_mask=return_attention_mask, **kwargs)
        self.do_normalize = bool(do_normalize)

    def __call__(self, raw_speech: Any, padding: bool | str | None = False, max_length: int | None = None,
                 truncation: bool = False, pad_to_multiple_of: int | None = None,
                 return_attention_mask: bool | None = None, return_tensors: str | None = None,
                 sampling_rate: int | None = None, **kwargs: Any) -> BatchFeature:
        """``input_values`` (B, samples) for one waveform or a batch (always a batch), with
        ``attention_mask`` (int32) when asked or configured. No padding by default."""
        self.check_sampling_rate(sampling_rate)
        waves, _ = as_waveforms(raw_speech, type(self).__name__)
        with_mask = self.return_attention_mask if return_attention_mask is None else bool(return_attention_mask)
        masked = with_mask and padding_strategy(padding, max_length) != "do_not_pad"
        # Normalised rows are written straight from the input (no padded copy first), except
        # rows whose statistics must include their padding (no mask).
        batch = self.pad_waveforms(waves, padding=padding, max_length=max_length, truncation=truncation,
                                   pad_to_multiple_of=pad_to_multiple_of, with_mask=with_mask,
                                   with_values=not self.do_normalize)
        values: Any = batch.values
        if self.do_normalize:
            self._normalize_into(batch, masked)
            if return_tensors is None:
                values = list(values)  # the reference's container for normalised values
        out = BatchFeature(input_values=convert_tensors(values, return_tensors, "input_values"))
        if with_mask:
            mask = batch.mask if return_tensors is not None else list(batch.mask)
            out["attention_mask"] = convert_tensors(mask, return_tensors, "attention_mask")
        return out

    def _normalize_into(self, batch: PaddedBatch, masked: bool) -> None:
        """Fill ``batch.values``: each row minus its mean, over ``sqrt(variance + 1e-7)``, with the
        statistics over the real samples when ``masked`` (padding then ``padding_value``), over
        the whole padded row otherwise."""
        for row, (source, start, n) in enumerate(zip(batch.sources, batch.starts, batch.lengths)):
            target = batch.values[row]
            if masked or target.shape[0] == n:
                # The reference reads the first `n` samples whatever the padding side; the real
                # samples are what is meant (the same under right padding, the default).
                target[:start] = self.padding_value
                target[start + n:] = self.padding_value
                _standardize(source, out=target[start:start + n])
            else:
                target[:start] = self.padding_value
                target[start:start + n] = source
                target[start + n:] = self.padding_value
                _standardize(target.copy(), out=target)


_BLOCK = 16384  # samples per block: centred, squared and summed while in cache


def _standardize(samples: np.ndarray, out: np.ndarray) -> None:
    """``(samples - mean) / sqrt(var + 1e-7)`` into ``out``, as the reference's float32 numpy.

    The mean is numpy's own float32 ``mean`` (the reference's, bit for bit). The samples are then
    centred into ``out`` block by block, each block squared and summed (numpy's pairwise float32
    sum, blocks added in float64) while it is still in cache: three passes over memory where the
    reference's ``var`` and scaling make seven and allocate four arrays. Single-threaded numpy on
    purpose: the work is memory-bound, and threads only add waiting on a busy machine."""
    n = samples.shape[0]
    if n >= _THREADED_FROM and torch_threads() > 1:
        _standardize_threaded(samples, out)
        return
    mean = samples.mean()
    squares_buffer = np.empty(min(n, _BLOCK), dtype=np.float32)
    squares = 0.0
    for first in range(0, n, _BLOCK):
        centred = out[first:first + _BLOCK]
        np.subtract(samples[first:first + _BLOCK], mean, out=centred)
        block = squares_buffer[: centred.shape[0]]
        np.multiply(centred, centred, out=block)
        squares += float(np.add.reduce(block))
    out /= np.sqrt(np.float32(squares / n) + np.float32(_VARIANCE_EPSILON))


# From about 4 s of audio, torch's threads beat one numpy pass: the same three passes over
# memory (mean; centre into ``out``; one dot product for the variance), split across cores
# (60 s: 0.7 ms against 1.3 ms on 2 cores). Below that, starting the threads costs more.
_THREADED_FROM = 65536


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _standardize_threaded(samples: np.ndarray, out: np.ndarray) -> None:
    """:func:`_standardize` on torch's threads (within 1e-6 of it: the float32 sums are split
    differently)."""
    import torch

    source = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    target = torch.from_numpy(out)
    torch.sub(source, source.mean(), out=target)
    variance = torch.dot(target, target).double() / source.numel()
    target.div_(float(np.sqrt(np.float32(variance) + np.float32(_VARIANCE_EPSILON))))
