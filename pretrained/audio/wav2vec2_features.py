"""Wav2Vec2's (and HuBERT's) input: the raw waveform, padded, each utterance scaled to zero mean
and unit variance, as the reference's ``Wav2Vec2FeatureExtractor`` does.

The statistics come from torch's one-pass ``var_mean`` and the scaling is one subtract and one
multiply in place, where the reference makes five numpy passes; the two agree to float32
rounding (about 1e-7 of the output's scale).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import BatchFeature, FeatureExtractor, as_waveforms, convert_tensors, padding_strategy

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
        >>> from pretrained.audio import Wav2Vec2FeatureExtractor
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
        batch = self.pad_waveforms(waves, padding=padding, max_length=max_length, truncation=truncation,
                                   pad_to_multiple_of=pad_to_multiple_of, with_mask=with_mask)
        values: Any = batch.values
        if self.do_normalize:
            masked = with_mask and padding_strategy(padding, max_length) != "do_not_pad"
            values = self._normalize(batch.values, batch.lengths, batch.starts, masked)
        out = BatchFeature(input_values=convert_tensors(values, return_tensors, "input_values"))
        if with_mask:
            mask = batch.mask if return_tensors is not None else list(batch.mask)
            out["attention_mask"] = convert_tensors(mask, return_tensors, "attention_mask")
        return out

    def _normalize(self, values: np.ndarray | list[np.ndarray], lengths: list[int], starts: list[int],
                   masked: bool) -> list[np.ndarray] | np.ndarray:
        """Each row minus its mean, over ``sqrt(variance + 1e-7)``; statistics over the real samples
        when ``masked`` (padding then reset), over the whole row otherwise."""
        import torch

        rectangular = isinstance(values, np.ndarray)
        out = np.empty_like(values) if rectangular else [np.empty_like(row) for row in values]
        with torch.inference_mode():
            for row in range(len(lengths)):
                source = torch.from_numpy(values[row])
                target = torch.from_numpy(out[row])
                if masked:
                    # The reference reads the first `length` samples whatever the padding side;
                    # the real samples are what is meant (the same under right padding, the default).
                    start, n = starts[row], lengths[row]
                    real = source[start:start + n]
                    var, mean = torch.var_mean(real, correction=0)
                    torch.sub(real, mean, out=target[start:start + n]).div_(torch.sqrt(var + _VARIANCE_EPSILON))
                    target[:start] = self.padding_value
                    target[start + n:] = self.padding_value
                else:
                    var, mean = torch.var_mean(source, correction=0)
                    torch.sub(source, mean, out=target).div_(torch.sqrt(var + _VARIANCE_EPSILON))
        return list(out) if rectangular else out
