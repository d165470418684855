"""Speech recognition ("automatic-speech-recognition"): audio in, ``{"text": ...}`` out.

Whisper transcribes with its ``generate()`` (language, task and timestamps through
``generate_kwargs={"language": "fr", "task": "transcribe"}`` or ``return_timestamps=True``);
CTC models (Wav2Vec2, HuBERT) read the best character of every frame. Audio longer than a window
is handled in one of two ways, as in the reference:

* ``chunk_length_s=30, stride_length_s=5``: the pipeline cuts overlapping chunks, transcribes them
  (``batch_size`` at a time) and joins the texts where the overlaps agree;
* no ``chunk_length_s``: Whisper reads the audio 30 s after 30 s, each window starting where the
  last complete sentence ended (its own long-form way, which needs ``return_timestamps=True``
  where the model's generation config turns timestamps off, as the real ones do: else a named
  error); a CTC model reads it whole, up to :data:`MAX_UNCHUNKED_S` seconds.

Whisper's defaults are the reference 5.x pipeline's: ``num_beams=5`` and ``max_new_tokens=256``
unless the call or the model's generation config sets them.

Example::

    >>> from pretrained import pipeline                                        # doctest: +SKIP
    >>> asr = pipeline("automatic-speech-recognition", model="whisper-tiny.en")   # doctest: +SKIP
    >>> asr("/usr/share/sounds/alsa/Front_Left.wav")                           # doctest: +SKIP
    {'text': ' Front, left.'}
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InvalidInputError, UnsupportedOptionError
from .audio_base import AudioPipeline

__all__ = ["AutomaticSpeechRecognitionPipeline", "MAX_UNCHUNKED_S"]

#: the longest audio a CTC model reads in one piece (its attention grows with the square)
MAX_UNCHUNKED_S = 120.0
#: the reference 5.x pipeline's generation defaults for Whisper
GENERATION_DEFAULTS = {"max_new_tokens": 256, "num_beams": 5}


class AutomaticSpeechRecognitionPipeline(AudioPipeline):
    """Transcribes audio with Whisper (``speech-seq2seq``) or a CTC model (``ctc``)."""

    task = "automatic-speech-recognition"
    head = None
    chunked = True

    def __init__(self, model: torch.nn.Module, tokenizer: Any = None, **kwargs: Any) -> None:
        model_type = getattr(model.config, "model_type", None)
        if model_type == "whisper":
            self.kind = "whisper"
        elif type(model).__name__.endswith("ForCTC"):
            self.kind = "ctc"
        else:
            raise InvalidInputError(f"the automatic-speech-recognition pipeline takes Whisper "
                                    f"(AutoModelForSpeechSeq2Seq) or a CTC model (AutoModelForCTC), got "
                                    f"{type(model).__name__}")
        super().__init__(model, tokenizer, **kwargs)

    def _sanitize_parameters(self, *, chunk_length_s: float | None = None,
                             stride_length_s: float | list | None = None, return_timestamps: Any = None,
                             return_language: bool | None = None, generate_kwargs: dict | None = None,
                             max_new_tokens: int | None = None, ignore_warning: bool | None = None,
                             ) -> tuple[dict, dict, dict]:
        pre: dict[str, Any] = {}
        fwd: dict[str, Any] = dict(generate_kwargs or {})
        post: dict[str, Any] = {}
        if chunk_length_s is not None:
            if not isinstance(chunk_length_s, (int, float)) or chunk_length_s <= 0:
                raise InvalidInputError(f"chunk_length_s must be a number of seconds > 0, got {chunk_length_s!r}")
            pre["chunk_length_s"] = chunk_length_s
        if stride_length_s is not None:
            pre["stride_length_s"] = stride_length_s
        if max_new_tokens is not None:
            fwd["max_new_tokens"] = max_new_tokens
        if return_timestamps is not None:
            if self.kind == "whisper" and return_timestamps == "char":
                raise InvalidInputError("Whisper gives segment timestamps (return_timestamps=True), not "
                                        "character ones")
            if self.kind == "whisper" and return_timestamps == "word":
                raise UnsupportedOptionError("word timestamps for Whisper are not supported yet; use "
                                             "return_timestamps=True (segments)")
            if self.kind == "ctc" and return_timestamps not in ("char", "word"):
                raise InvalidInputError("a CTC model gives return_timestamps='char' or 'word'")
            fwd["return_timestamps"] = return_timestamps
            post["return_timestamps"] = return_timestamps
        if return_language is not None:
            if self.kind != "whisper":
                raise InvalidInputError("only Whisper can return the language")
            post["return_language"] = return_language
            fwd["return_language"] = return_language
        if self.kind == "whisper" and not chunk_length_s:
            # Whisper's own long form needs timestamps; the model's generation_config.json
            # (return_timestamps: false in the real ones) stands when the call says nothing
            timestamps = fwd.get("return_timestamps")
            if timestamps is None:
                timestamps = getattr(getattr(self.model, "generation_config", None), "return_timestamps", None)
            pre["long_form"] = timestamps is None or bool(timestamps)
        if self.kind != "whisper" and fwd and set(fwd) - {"return_timestamps"}:
            raise InvalidInputError(f"generation options {sorted(set(fwd) - {'return_timestamps'})} are for "
                                    "Whisper; a CTC model does not generate")
        return pre, fwd, post

    # --- preprocess ---------------------------------------------------------------------------
    def preprocess(self, item: Any, chunk_length_s: float = 0, stride_length_s: Any = None,
                   long_form: bool = True) -> list[dict]:
        audio = self.load(item)
        rate = self.sampling_rate
        if chunk_length_s:
            return list(self._chunks(audio, chunk_length_s, stride_length_s))
        seconds = len(audio) / rate
        if self.kind == "ctc":
            if seconds > MAX_UNCHUNKED_S:
                raise InvalidInputError(f"the audio lasts {seconds:.0f} s; a CTC model reads at most "
                                        f"{MAX_UNCHUNKED_S:.0f} s at once: pass chunk_length_s=30 "
                                        "(and stride_length_s=5) to transcribe it in chunks")
            # the length rides along: a batch pads shorter inputs, whose extra frames are cut off
            return [{"is_last": True, "samples": len(audio), **self._features(audio)}]
        n_samples = int(getattr(self.feature_extractor, "n_samples", 30 * rate))
        if len(audio) > n_samples and not long_form:
            # said here, in seconds and before an hour of features is computed, naming both ways
            raise InvalidInputError(f"the audio lasts {seconds:.0f} s, longer than Whisper's "
                                    f"{n_samples / rate:.0f}-s window: pass chunk_length_s=30 (with "
                                    "stride_length_s=5, and batch_size=N to read chunks together) to "
                                    "transcribe it in chunks, or return_timestamps=True for Whisper's own "
                                    "sequential long form")
        if len(audio) > n_samples:   # Whisper's own long form: every frame, with the length mask
            feats = self.feature_extractor(audio, sampling_rate=rate, truncation=False, padding="longest",
                                           return_tensors="pt", return_attention_mask=True)
            return [{"is_last": True, "input_features": feats["input_features"],
                     "attention_mask": feats["attention_mask"]}]
        return [{"is_last": True, **self._features(audio)}]

    def _features(self, audio: np.ndarray) -> dict[str, torch.Tensor]:
        feats = self.feature_extractor(audio, sampling_rate=self.sampling_rate, return_tensors="pt",
                                       return_attention_mask=True)
        out = {}
        for name in ("input_features", "input_values", "attention_mask"):
            if name in feats and feats[name] is not None:
                out[name] = torch.as_tensor(feats[name])
        if self.kind == "whisper":
            out.pop("attention_mask", None)   # a 30-s window: every frame is read
        return out

    def _chunks(self, audio: np.ndarray, chunk_length_s: float, stride_length_s: Any):
        """Overlapping chunks (the reference's ``chunk_iter``): each carries its stride (samples
        in the chunk, overlap on the left, overlap on the right) for the join."""
        rate = self.sampling_rate
        if stride_length_s is None:
            stride_length_s = chunk_length_s / 6
        if isinstance(stride_length_s, (int, float)):
            stride_length_s = [stride_length_s, stride_length_s]
        align = int(getattr(self.model.config, "inputs_to_logits_ratio", 1)) if self.kind == "ctc" else 1
        chunk_len = int(round(chunk_length_s * rate / align) * align)
        left = int(round(stride_length_s[0] * rate / align) * align)
        right = int(round(stride_length_s[1] * rate / align) * align)
        if chunk_len < left + right:
            raise InvalidInputError(f"chunk_length_s={chunk_length_s} must exceed the two strides "
                                    f"{list(stride_length_s)} together")
        if chunk_len == left + right:
            raise InvalidInputError("chunk_length_s equals the two strides together: every chunk would "
                                    "be overlap; lower stride_length_s")
        step = chunk_len - left - right
        for start in range(0, len(audio), step):
            end = start + chunk_len
            chunk = audio[start:end]
            is_last = end >= len(audio)
            stride = (len(chunk), 0 if start == 0 else left, 0 if is_last else right)
            if len(chunk) > stride[1]:
                yield {"is_last": is_last, "stride": stride, **self._features(chunk)}
            if is_last:
                break

    # --- forward ------------------------------------------------------------------------------
    def _generate_kwargs(self, fwd: dict) -> dict:
        kw = dict(fwd)
        timestamps = kw.pop("return_timestamps", None)
        if kw.pop("return_language", None):
            kw["return_segments"] = True
        set_by_model = self.model.generation_config.to_diff_dict() if getattr(self.model, "generation_config", None) else {}
        for key, value in GENERATION_DEFAULTS.items():
            if key in kw or key in set_by_model:
                continue
            if key == "max_new_tokens" and ("max_length" in kw or "max_length" in set_by_model):
                continue   # a set max_length (Whisper's 448) wins over the default
            kw[key] = value
        if kw.get("num_beams") == 1:
            kw.pop("num_beams")
        if timestamps:
            kw["return_timestamps"] = True
        pad = getattr(self.tokenizer, "pad_token_id", None)
        if pad is not None and "pad_token_id" not in kw:
            kw["pad_token_id"] = pad
        return kw

    def _forward(self, batch: dict[str, torch.Tensor], **fwd: Any) -> dict[str, torch.Tensor]:
        if self.kind == "whisper":
            kw = self._generate_kwargs(fwd)
            features = batch["input_features"].to(next(self.model.parameters()).dtype)
            out = self.model.generate(features, attention_mask=batch.get("attention_mask"), **kw)
            if not isinstance(out, dict):
                return {"tokens": out}
            # return_language: the language token of each prompt goes in front of its tokens
            langs = set((getattr(self.model.generation_config, "lang_to_id", None) or {}).values())
            lang = [next((t for t in row.tolist() if t in langs), None) for row in out["prompt"]]
            if any(t is None for t in lang):
                return {"tokens": out["sequences"]}
            lead = torch.tensor(lang, dtype=out["sequences"].dtype)[:, None]
            return {"tokens": torch.cat([lead, out["sequences"]], dim=1)}
        inputs = {"input_values": batch["input_values"]}
        if "attention_mask" in batch and getattr(self.feature_extractor, "return_attention_mask", False):
            inputs["attention_mask"] = batch["attention_mask"]
        logits = self.model(**inputs).logits
        return {"tokens": logits.argmax(dim=-1)}

    # --- postprocess --------------------------------------------------------------------------
    def postprocess(self, outputs: list[dict], return_timestamps: Any = None,
                    return_language: bool | None = None) -> dict[str, Any]:
        if self.kind == "whisper":
            from .whisper_decoding import decode_asr

            rate = self.sampling_rate
            items = []
            for out in outputs:
                item = {"tokens": out["tokens"]}
                if "stride" in out:
                    n, left, right = out["stride"]
                    item["stride"] = (n / rate, left / rate, right / rate)
                items.append(item)
            precision = self.feature_extractor.chunk_length / self.model.config.max_source_positions
            text, optional = decode_asr(self.tokenizer, items, return_timestamps=return_timestamps,
                                        return_language=return_language, time_precision=precision)
            return {"text": text, **optional}
        return self._postprocess_ctc(outputs, return_timestamps)

    def _postprocess_ctc(self, outputs: list[dict], return_timestamps: Any) -> dict[str, Any]:
        ratio = int(getattr(self.model.config, "inputs_to_logits_ratio", 320))
        pieces = []
        for out in outputs:
            ids = out["tokens"][0]
            if "stride" in out:
                n, left, right = out["stride"]
                frames = int(round(n / ratio))
                left_f, right_f = int(round(left / n * frames)), int(round(right / n * frames))
                ids = ids[left_f:frames - right_f]
            elif "samples" in out:   # (the reference keeps a padded row's extra frames; we do not)
                ids = ids[:int(self.model._get_feat_extract_output_lengths(out["samples"]))]
            pieces.append(ids)
        ids = torch.cat(pieces).tolist()
        text = self.tokenizer.decode(ids)
        if not return_timestamps:
            return {"text": text}
        kind = "char" if return_timestamps == "char" else "word"
        decoded = self.tokenizer.decode(ids, output_char_offsets=kind == "char",
                                        output_word_offsets=kind == "word")
        offsets = decoded[f"{kind}_offsets"]
        chunks = [{"text": o[kind], "timestamp": (o["start_offset"] * ratio / self.sampling_rate,
                                                  o["end_offset"] * ratio / self.sampling_rate)} for o in offsets]
        return {"text": text, "chunks": chunks}
