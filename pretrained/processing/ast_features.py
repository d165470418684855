"""The Audio Spectrogram Transformer's input: Kaldi-style log-mel filter banks, padded or cut to
``max_length`` frames and normalised with AudioSet's mean and standard deviation.

Kaldi's fbank per 25 ms frame (400 samples, 10 ms hop, frames that fit only, no centring): the
frame's mean removed, pre-emphasis 0.97 (the first sample scaled by 0.03), a symmetric Hann
window (the reference asks Kaldi for ``"hanning"``, not Kaldi's default Povey window), a 512-point
FFT, the power spectrum through 128 triangular filters on Kaldi's mel scale from 20 Hz to
Nyquist, then ``log(max(energy, float32 epsilon))``. No dither. Then ``(x - mean) / (2 * std)``.

The reference runs ``torchaudio.compliance.kaldi.fbank`` when torchaudio is installed and its own
numpy version otherwise; this follows the numpy one (float64 throughout, the spectrum rounded to
complex64 as it stores it), which agrees with Kaldi's float32 torchaudio one to float32 rounding.
All frames are computed in one batched ``rfft`` instead of a Python loop per frame, and only the
first ``max_length`` frames at all: the rest would be cut anyway.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import BatchFeature, FeatureExtractor, as_waveforms, convert_tensors, positive_int
from .mel import kaldi_mel_filters

__all__ = ["ASTFeatureExtractor"]

_FRAME = 400            # 25 ms at 16 kHz
_HOP = 160              # 10 ms
_FFT = 512              # the frame rounded up to a power of two, as Kaldi does
_PREEMPHASIS = 0.97
_LOG_FLOOR = 1.192092955078125e-07  # the reference's spelling of float32 epsilon


class ASTFeatureExtractor(FeatureExtractor):
    """Normalised Kaldi fbank features for AST, equal to the reference's within 1e-5.

    Every waveform gives ``(max_length, num_mel_bins)`` = (1024, 128) by default: shorter audio
    is padded with zero rows (before normalisation, as the reference does), longer audio is cut.

    Example::

        >>> import numpy as np
        >>> from pretrained.processing import ASTFeatureExtractor
        >>> fe = ASTFeatureExtractor()
        >>> tone = np.sin(np.arange(16000) / 16000 * 2 * np.pi * 1000).astype(np.float32)
        >>> fe(tone, sampling_rate=16000, return_tensors="pt").input_values.shape
        torch.Size([1, 1024, 128])
    """

    model_input_names = ["input_values", "attention_mask"]
    config_keys = ("num_mel_bins", "max_length", "do_normalize", "mean", "std")

    def __init__(self, feature_size: int = 1, sampling_rate: int = 16000, num_mel_bins: int = 128,
                 max_length: int = 1024, padding_value: float = 0.0, do_normalize: bool = True,
                 mean: float = -4.2677393, std: float = 4.5689974, return_attention_mask: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value,
                         return_attention_mask=return_attention_mask, **kwargs)
        self.num_mel_bins = positive_int(num_mel_bins, "num_mel_bins")
        self.max_length = positive_int(max_length, "max_length")
        self.do_normalize = bool(do_normalize)
        self.mean = float(mean)
        self.std = float(std)
        self.mel_filters = kaldi_mel_filters(_FFT // 2 + 1, self.num_mel_bins, self.sampling_rate, 20.0,
                                             self.sampling_rate // 2)
        self._torch_cache: dict[str, tuple[Any, Any]] = {}

    def __call__(self, raw_speech: Any, sampling_rate: int | None = None, return_tensors: str | None = None,
                 **kwargs: Any) -> BatchFeature:
        """``input_values`` (B, max_length, num_mel_bins) float32 for one waveform or a batch; a
        list of 2-D arrays with ``return_tensors=None``, as the reference returns."""
        self.check_sampling_rate(sampling_rate)
        waves, _ = as_waveforms(raw_speech, type(self).__name__)
        features = self._fbank(waves)
        if self.do_normalize:
            features.sub_(self.mean).div_(self.std * 2)
        array = features.numpy()
        values = list(array) if return_tensors is None else array
        return BatchFeature(input_values=convert_tensors(values, return_tensors, "input_values"))

    def _constants(self) -> tuple[Any, Any]:
        import torch

        if "cpu" not in self._torch_cache:
            window = torch.from_numpy(np.hanning(_FRAME))  # symmetric, float64
            self._torch_cache["cpu"] = (window, torch.from_numpy(self.mel_filters))
        return self._torch_cache["cpu"]

    def _fbank(self, waves: list[np.ndarray]) -> Any:
        """(B, max_length, num_mel_bins) float32 log filter-bank energies, zero rows past the end."""
        import torch

        window, filters = self._constants()
        out = torch.zeros(len(waves), self.max_length, self.num_mel_bins, dtype=torch.float32)
        needed = _FRAME + (self.max_length - 1) * _HOP  # samples the kept frames read
        with torch.inference_mode():
            for row, wave in enumerate(waves):
                if wave.shape[0] < _FRAME:  # not one whole frame: all padding
                    continue
                samples = torch.from_numpy(wave[:needed]).double()
                frames = samples.unfold(0, _FRAME, _HOP)  # (n_frames, 400), only whole frames
                frames = frames - frames.mean(dim=1, keepdim=True)
                emphasised = torch.empty_like(frames)
                emphasised[:, 1:] = frames[:, 1:] - _PREEMPHASIS * frames[:, :-1]
                emphasised[:, 0] = frames[:, 0] * (1 - _PREEMPHASIS)
                spectrum = torch.fft.rfft(emphasised * window, n=_FFT, dim=1)
                # The reference stores the spectrum as complex64 before taking its power.
                parts = torch.view_as_real(spectrum.to(torch.complex64)).double()
                power = parts.square_().sum(-1)
                energies = (power @ filters).clamp_(min=_LOG_FLOOR).log_()
                out[row, : energies.shape[0]] = energies
        return out
