"""Whisper's log-mel spectrogram: what the reference's ``WhisperFeatureExtractor`` computes, in
batched torch.

Per waveform: pad or cut to 30 s (``n_samples``), centred STFT (reflect padding, periodic Hann
window of ``n_fft`` = 400, hop 160) with the last frame dropped, power spectrum, slaney mel filters
up to 8 kHz, ``log10`` floored at 1e-10, clipped to 8 below the waveform's own maximum, then
``(x + 4) / 4``.

The frames go through ``torch.fft.rfft`` exactly as ``torch.stft`` sends them (same framing, same
window product, same transform), so the spectrum is bit-for-bit the reference's torch path; the
speed comes from what surrounds it: the power taken as re² + im² on the frames-major layout
(no ``abs`` then square, no strided copy), the mel product read through a transposed view, the
padding frames (known zeros) never transformed, and the tail of the log done in place.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import BatchFeature, FeatureExtractor, PaddedBatch, as_waveforms, convert_tensors, positive_int
from .mel import slaney_mel_filters

__all__ = ["WhisperFeatureExtractor"]

_LOG_FLOOR = 1e-10      # power floor before log10: silence reads -10
_DYNAMIC_RANGE = 8.0    # log10 units kept below each waveform's loudest value (80 dB)


class WhisperFeatureExtractor(FeatureExtractor):
    """Log-mel features for Whisper, equal to the reference's (within 1e-5; float32).

    ``feature_size`` is the number of mel bins (80, or 128 for large-v3). A call pads every
    waveform to 30 s by default (``padding="max_length"``); ``padding="longest"`` pads only to the
    longest of the batch (shorter features; Whisper itself wants 3000 frames). Audio longer than
    ``max_length`` samples (default ``n_samples``) is cut unless ``truncation=False``.

    ``attention_mask`` (one value per frame) is returned with ``return_attention_mask=True``. As
    in the reference, when the mask is only computed because of ``do_normalize=True`` or the
    config's ``return_attention_mask``, the sample-level mask is what comes back (one value per
    sample): pass ``return_attention_mask=True`` to get frames.

    Example::

        >>> import numpy as np
        >>> from pretrained.processing import WhisperFeatureExtractor
        >>> fe = WhisperFeatureExtractor()                       # whisper-tiny/base/small... settings
        >>> one_second = np.zeros(16000, dtype=np.float32)
        >>> fe(one_second, sampling_rate=16000, return_tensors="pt").input_features.shape
        torch.Size([1, 80, 3000])
        >>> out = fe([one_second, one_second[:8000]], sampling_rate=16000, padding="longest",
        ...          return_attention_mask=True)
        >>> out["input_features"].shape, out["attention_mask"].sum(axis=1).tolist()
        ((2, 80, 100), [100, 50])
    """

    model_input_names = ["input_features"]
    config_keys = ("hop_length", "chunk_length", "n_fft", "n_samples", "nb_max_frames", "dither")

    def __init__(self, feature_size: int = 80, sampling_rate: int = 16000, hop_length: int = 160,
                 chunk_length: int = 30, n_fft: int = 400, padding_value: float = 0.0, dither: float = 0.0,
                 return_attention_mask: bool = False, **kwargs: Any) -> None:
        # n_samples / nb_max_frames are derived: a saved value is ignored, as the reference does.
        kwargs.pop("n_samples", None)
        kwargs.pop("nb_max_frames", None)
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value,
                         return_attention_mask=return_attention_mask, **kwargs)
        self.n_fft = positive_int(n_fft, "n_fft")
        self.hop_length = positive_int(hop_length, "hop_length")
        self.chunk_length = positive_int(chunk_length, "chunk_length")
        self.dither = float(dither)
        self.n_samples = self.chunk_length * self.sampling_rate
        self.nb_max_frames = self.n_samples // self.hop_length
        # The reference draws the filters up to 8 kHz whatever the rate; so do we.
        self.mel_filters = slaney_mel_filters(1 + self.n_fft // 2, self.feature_size, self.sampling_rate,
                                              0.0, 8000.0)
        self._torch_cache: dict[str, tuple[Any, Any]] = {}

    def __call__(self, raw_speech: Any, truncation: bool = True, pad_to_multiple_of: int | None = None,
                 return_tensors: str | None = None, return_attention_mask: bool | None = None,
                 padding: bool | str | None = "max_length", max_length: int | None = None,
                 sampling_rate: int | None = None, do_normalize: bool | None = None, device: str | None = "cpu",
                 **kwargs: Any) -> BatchFeature:
        """Features of one waveform or a batch (a list of 1-D arrays, or a 2-D array), always as a
        batch: ``input_features`` (B, feature_size, frames) float32.

        ``sampling_rate`` other than the extractor's raises :class:`InvalidInputError` (resample
        with :func:`~pretrained.audio.load_audio` first); ``do_normalize`` makes each waveform zero
        mean and unit variance over its real samples first; ``device`` (``"cuda"``...) runs the
        transform there, the features come back on the CPU as the reference's do.
        """
        self.check_sampling_rate(sampling_rate)
        waves, _ = as_waveforms(raw_speech, type(self).__name__)
        wants_samples_mask = return_attention_mask or do_normalize
        if wants_samples_mask is None:
            wants_samples_mask = self.return_attention_mask
        batch = self.pad_waveforms(waves, padding=padding, max_length=max_length or self.n_samples,
                                   truncation=truncation, pad_to_multiple_of=pad_to_multiple_of,
                                   with_mask=bool(wants_samples_mask), margin=self.n_fft // 2)
        if not batch.is_rectangular:
            from ..errors import InvalidInputError

            raise InvalidInputError(
                f"the waveforms have different lengths after padding ({sorted(set(batch.lengths))} samples) and "
                "cannot be one batch of features: use padding='max_length' (default) or 'longest', or truncation")
        features = self._log_mel(batch, bool(do_normalize), device or "cpu")
        out = BatchFeature(input_features=convert_tensors(features, return_tensors or "np", "input_features"))
        if wants_samples_mask:
            mask = batch.mask
            if return_attention_mask:  # one value per frame: every hop_length-th sample
                mask = mask[:, :: self.hop_length][:, : mask.shape[1] // self.hop_length]
            out["attention_mask"] = convert_tensors(np.ascontiguousarray(mask), return_tensors or "np",
                                                    "attention_mask")
        return out

    def _torch_constants(self, device: Any) -> tuple[Any, Any]:
        """The periodic Hann window and the mel filters as (n_mels, 2 * bins) float32 (each bin's
        weight twice: once for re², once for im²), per device."""
        import torch

        key = str(device)
        if key not in self._torch_cache:
            window = torch.hann_window(self.n_fft, device=device)
            weights = torch.from_numpy(self.mel_filters.T.astype(np.float32))  # the reference's float32 cast
            self._torch_cache[key] = (window, weights.repeat_interleave(2, dim=1).contiguous().to(device))
        return self._torch_cache[key]

    def _log_mel(self, batch: PaddedBatch, do_normalize: bool, device: str) -> np.ndarray:
        import torch

        n_fft, hop, half = self.n_fft, self.hop_length, self.n_fft // 2
        lengths, starts = batch.lengths, batch.starts
        padded, total = batch.values, batch.values.shape[1]
        if total <= half:
            from ..errors import InvalidInputError

            raise InvalidInputError(
                f"{total} samples are too few for a centred STFT of n_fft={n_fft} (more than {half} needed): "
                "pad them (padding='max_length', the default)")
        if do_normalize:  # normalised padding is no longer zero: every frame is transformed
            padded[:] = _normalize_rows(padded, lengths, starts, self.padding_value)
        if self.dither != 0.0:  # the reference adds it to the padded waveform, padding included
            padded += self.dither * torch.randn(padded.shape, dtype=torch.float32).numpy()
        # torch.stft's centring (reflect) written into the margins pad_waveforms left: no copy.
        framed = batch.buffer
        framed[:, :half] = padded[:, 1:half + 1][:, ::-1]
        framed[:, half + total:] = padded[:, total - 1 - half:total - 1][:, ::-1]
        waves = torch.from_numpy(framed).to(device)
        batch_size = waves.shape[0]
        n_frames = total // hop  # the centred STFT has one more; the reference drops it
        # Frames that see only zero padding have power exactly 0: they are never transformed.
        zero_tail = (self.padding_value == 0.0 and self.dither == 0.0 and self.padding_side == "right"
                     and not do_normalize)
        window, filters = self._torch_constants(waves.device)
        out = torch.empty(batch_size, self.feature_size, n_frames, dtype=torch.float32, device=waves.device)
        # One row at a time on the CPU keeps a row's frames and spectrum (~10 MB) in cache.
        step = 1 if waves.device.type == "cpu" else batch_size
        with torch.inference_mode():
            for first in range(0, batch_size, step):
                rows = slice(first, first + step)
                live = n_frames
                if zero_tail:
                    end = max(starts[r] + lengths[r] for r in range(first, min(first + step, batch_size)))
                    live = min(n_frames, (end + half) // hop + 1)
                frames = waves[rows].unfold(-1, n_fft, hop)[:, :live]
                spectrum = torch.fft.rfft(frames * window, dim=-1)
                # |z|² summed into the mel bands by one product: (re², im²) interleaved against
                # each filter weight repeated twice, so no strided reduction over the pair.
                parts = torch.view_as_real(spectrum).square_().flatten(-2)  # (rows, live, 2 * bins)
                target = out[rows]
                if live == n_frames:
                    torch.matmul(filters, parts.transpose(1, 2), out=target)
                else:
                    target[:, :, :live] = filters @ parts.transpose(1, 2)
                    target[:, :, live:] = 0.0
                log_spec = target.clamp_(min=_LOG_FLOOR).log10_()
                ceiling = log_spec.amax(dim=(1, 2), keepdim=True)
                torch.maximum(log_spec, ceiling - _DYNAMIC_RANGE, out=log_spec)
                log_spec.add_(4.0).div_(4.0)
        return out.cpu().numpy()


def _normalize_rows(waves: np.ndarray, lengths: list[int], starts: list[int], padding_value: float) -> np.ndarray:
    """Zero mean, unit variance over each row's real samples (epsilon 1e-7 under the root), the
    padding set back to ``padding_value``: the reference's ``do_normalize``.

    Done with numpy's float32 ``mean``/``var`` exactly as the reference does: the log-mel of a
    near-silent band turns a last-bit difference in the mean (a DC offset of 1e-8) into 3e-5."""
    out = np.full_like(waves, padding_value)
    for row, (start, n) in enumerate(zip(starts, lengths)):
        # The reference takes the first `n` samples whatever the padding side; the real samples
        # are what is meant, and with right padding (the default) the two are the same.
        real = waves[row, start:start + n]
        out[row, start:start + n] = (real - real.mean()) / np.sqrt(real.var() + 1e-7)
    return out
