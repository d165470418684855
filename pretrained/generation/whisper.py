"""Whisper's generate(): its decoder prompt, its token rules, and audio longer than one window.

Whisper is told what to do by the first decoder tokens: ``<|startoftranscript|>``, a language
(``<|en|>``; detected from the audio when a multilingual model is not told), a task
(``<|transcribe|>`` / ``<|translate|>``) and ``<|notimestamps|>`` unless timestamps are asked for.
Its rules are logits processors: tokens never generated (``suppress_tokens``), tokens never
generated first (``begin_suppress_tokens``), and with timestamps
:class:`WhisperTimeStampLogitsProcessor`, which keeps timestamp tokens in rising pairs.

Audio longer than 30 s (more than 3000 feature frames) is transcribed window by window, as the
reference does: each window's timestamps say where the last complete segment ended, and the next
window starts there. Each window is one call of the shared :func:`~.search.generate` with the
encoder's output and the prompt as ``decoder_input_ids``. The output follows the reference 5.x:
the generated tokens of every segment, without the prompt and the end token, right-padded.

Example::

    >>> from pretrained import AutoModelForSpeechSeq2Seq, AutoProcessor      # doctest: +SKIP
    >>> model = AutoModelForSpeechSeq2Seq.from_pretrained("whisper-tiny.en")  # doctest: +SKIP
    >>> ids = model.generate(processor(audio, sampling_rate=16000, return_tensors="pt").input_features)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from ..errors import InvalidInputError, UnsupportedOptionError
from ..whisper_languages import LANGUAGES, TASKS, TO_LANGUAGE_CODE
from .config import GenerationConfig
from .logits import LogitsProcessor, SuppressTokensAtBeginLogitsProcessor, SuppressTokensLogitsProcessor

# options of the reference's Whisper generate() not built yet: refused by name, never ignored
_NOT_YET = ("condition_on_prev_tokens", "logprob_threshold", "compression_ratio_threshold",
            "no_speech_threshold", "prompt_ids", "return_token_timestamps", "prompt_condition_type")


class WhisperTimeStampLogitsProcessor(LogitsProcessor):
    """Timestamps as Whisper writes them: ``<|notimestamps|>`` never; timestamp tokens in pairs
    (a lone one must be followed by another timestamp or the end; two in a row by text), never
    decreasing, the first one at most ``max_initial_timestamp_index`` steps in; and a timestamp
    whenever all timestamps together are likelier than the best text token."""

    def __init__(self, no_timestamps_token_id: int, eos_token_id: int, begin_index: int,
                 max_initial_timestamp_index: int | None) -> None:
        self.no_timestamps_token_id = no_timestamps_token_id
        self.timestamp_begin = no_timestamps_token_id + 1
        self.eos_token_id = eos_token_id
        self.begin_index = begin_index
        self.max_initial_timestamp_index = max_initial_timestamp_index

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        neg = -float("inf")
        scores = scores.clone()
        scores[:, self.no_timestamps_token_id] = neg
        first = self.timestamp_begin
        lowest = []
        for k, row in enumerate(input_ids.tolist()):
            seq = row[self.begin_index:]
            last_ts = len(seq) >= 1 and seq[-1] >= first
            penultimate_ts = len(seq) < 2 or seq[-2] >= first
            if last_ts:
                if penultimate_ts:
                    scores[k, first:] = neg        # a pair just closed: text comes next
                else:
                    scores[k, :self.eos_token_id] = neg   # a pair is open: a timestamp or the end
            stamps = [t for t in seq if t >= first]
            low = first   # <|0.00|> only until one timestamp is out
            if stamps:
                low = stamps[-1] if last_ts and not penultimate_ts else stamps[-1] + 1
            lowest.append(low)
        vocab = torch.arange(scores.shape[-1], device=scores.device)
        low = torch.tensor(lowest, device=scores.device)[:, None]
        scores.masked_fill_((vocab >= first) & (vocab < low), neg)
        if input_ids.shape[1] == self.begin_index:
            scores[:, :first] = neg
            if self.max_initial_timestamp_index is not None:
                scores[:, first + self.max_initial_timestamp_index + 1:] = neg
        logprobs = torch.log_softmax(scores.float(), dim=-1)
        stamp_mass = logprobs[:, first:].logsumexp(dim=-1)
        best_text = logprobs[:, :first].max(dim=-1).values
        scores[:, :first].masked_fill_((stamp_mass > best_text)[:, None], neg)
        return scores


def _merged_config(model: Any, generation_config: GenerationConfig | None, kwargs: dict) -> GenerationConfig:
    base = getattr(model, "generation_config", None)
    cfg = copy.deepcopy(base) if isinstance(base, GenerationConfig) else GenerationConfig.from_model_config(model.config)
    if generation_config is not None:
        if not isinstance(generation_config, GenerationConfig):
            raise InvalidInputError(f"generation_config must be a GenerationConfig, got "
                                    f"{type(generation_config).__name__}")
        for key, value in generation_config.to_diff_dict().items():
            setattr(cfg, key, copy.deepcopy(value))
    return cfg


def _language_id(cfg: GenerationConfig, language: str) -> int:
    lang_to_id = getattr(cfg, "lang_to_id", None) or {}
    name = language.lower()
    if name in lang_to_id:
        token = name
    elif name in TO_LANGUAGE_CODE:   # a name ("french") or an alias ("castilian")
        token = f"<|{TO_LANGUAGE_CODE[name]}|>"
    elif name in LANGUAGES:
        token = f"<|{name}|>"
    else:
        raise InvalidInputError(f"unknown language {language!r}: pass a code ('fr') or a name ('french') "
                                f"of Whisper's languages, e.g. {', '.join(list(LANGUAGES)[:8])}, ...")
    if token not in lang_to_id:
        raise InvalidInputError(f"{token} is not among this model's languages (generation_config.lang_to_id "
                                f"has {len(lang_to_id)}); is it an English-only checkpoint?")
    return lang_to_id[token]


def detect_language(model: Any, encoder_states: torch.Tensor, cfg: GenerationConfig) -> torch.Tensor:
    """The most likely language token per row, from one decoder step after the start token."""
    lang_ids = list((getattr(cfg, "lang_to_id", None) or {}).values())
    if not lang_ids:
        raise InvalidInputError("this model's generation config has no lang_to_id, so the language "
                                "cannot be detected: pass language='en' (or another)")
    start = torch.full((encoder_states.shape[0], 1), cfg.decoder_start_token_id, dtype=torch.long,
                       device=encoder_states.device)
    with torch.no_grad():
        logits = model(encoder_outputs=(encoder_states,), decoder_input_ids=start, use_cache=False).logits[:, -1]
    keep = torch.full_like(logits[0], -float("inf"))
    keep[lang_ids] = 0
    return (logits + keep).argmax(-1)


def _init_tokens(model: Any, cfg: GenerationConfig, states: torch.Tensor, batch: int, language: Any,
                 task: str | None, timestamps: bool) -> list[list[int]]:
    """Each row's decoder prompt, in the reference's order of rules (forced_decoder_ids only
    when neither language nor task is given; the language detected when still open)."""
    start = [cfg.decoder_start_token_id]
    if task is None and language is None:
        forced = getattr(cfg, "forced_decoder_ids", None) or getattr(model.config, "forced_decoder_ids", None)
        if forced:
            i = 1
            while forced and forced[0][0] == i:
                start.append(forced[0][1])
                forced = forced[1:]
                i += 1
            if forced:
                raise InvalidInputError(f"forced_decoder_ids {forced} do not follow Whisper's prompt "
                                        "(positions 1, 2, 3 ...); pass language= and task= instead")
    lang_open = len(start) <= 1 or start[1] is None
    if isinstance(language, (list, tuple)):
        if len(language) != batch or any(lang is None for lang in language):
            raise InvalidInputError(f"language as a list needs one language per input ({batch}), got {language!r}")
        languages = list(language)
    else:
        languages = [language] * batch
    rows = [list(start) for _ in range(batch)]
    lang_ids = None
    if language is not None:
        lang_ids = [_language_id(cfg, lang) for lang in languages]
    elif getattr(cfg, "lang_to_id", None) and lang_open:
        lang_ids = detect_language(model, states, cfg).tolist()
    task_to_id = getattr(cfg, "task_to_id", None) or {}
    no_ts = getattr(cfg, "no_timestamps_token_id", None)
    for i, row in enumerate(rows):
        if lang_ids is not None:
            if len(row) > 1:
                row[1] = lang_ids[i]
            else:
                row.append(lang_ids[i])
        if task is not None:
            row.append(task_to_id[task])
        elif language is not None and task_to_id and not any(t in row for t in task_to_id.values()):
            row.append(task_to_id["transcribe"])
        if not timestamps and no_ts is not None and row[-1] != no_ts:
            row.append(no_ts)
        elif timestamps and row[-1] == no_ts:
            row.pop()
        rows[i] = [t for t in row if t is not None]
    return rows


def _segments(seq: torch.Tensor, ts_begin: int, offset: float, window_frames: int, precision: float,
              features_precision: float, stride: int) -> tuple[list[dict], int]:
    """Cut one window's tokens at its timestamp pairs (the reference's rule); returns the
    segments (start/end seconds, tokens) and how many feature frames to move on."""
    is_ts = [t >= ts_begin for t in seq.tolist()]
    single_ending = is_ts[-2:] == [False, True]
    cuts = [i + 1 for i in range(len(is_ts) - 1) if is_ts[i] and is_ts[i + 1]]
    if cuts:
        if single_ending:
            cuts.append(len(seq))
        else:
            cuts[-1] += 1   # the last pair's second timestamp stays in the last segment
        out, last = [], 0
        for i, cut in enumerate(cuts):
            tokens = seq[last:cut]
            end_at = -1 if i < len(cuts) - 1 or single_ending else -2
            out.append({"start": offset + float(tokens[0] - ts_begin) * precision,
                        "end": offset + float(tokens[end_at] - ts_begin) * precision, "tokens": tokens})
            last = cut
        if single_ending:   # nothing is said after the last timestamp: the window is done
            return out, window_frames
        # the last segment ran past the window: start the next window at its last timestamp
        return out, int(seq[last - 2].item() - ts_begin) * stride
    stamps = [i for i, t in enumerate(is_ts) if t]
    last_pos = int(window_frames * features_precision / precision)
    end = offset + last_pos * precision
    if stamps and int(seq[stamps[-1]]) != ts_begin:
        end = offset + float(seq[stamps[-1]] - ts_begin) * precision
    return [{"start": offset, "end": end, "tokens": seq}], window_frames


def whisper_generate(model: Any, input_features: torch.Tensor | None = None,
                     generation_config: GenerationConfig | None = None, logits_processor: list | None = None,
                     stopping_criteria: list | None = None, streamer: Any = None, *,
                     language: str | list | None = None, task: str | None = None,
                     return_timestamps: bool | None = None, is_multilingual: bool | None = None,
                     attention_mask: torch.Tensor | None = None, return_segments: bool = False,
                     temperature: float | None = None, time_precision: float = 0.02,
                     time_precision_features: float = 0.01, **kwargs: Any) -> Any:
    """Transcribe (or translate) log-mel ``input_features`` (B, mel bins, frames): the token ids
    of each input, without the prompt and the end token, right-padded with the pad id.

    ``language`` ("fr", "french", or one per input), ``task`` ("transcribe"/"translate"),
    ``return_timestamps`` (timestamp tokens in the output; always on past 30 s), and the usual
    generation options (``num_beams``, ``max_new_tokens``, ``temperature`` > 0 samples).
    ``return_segments=True`` returns ``{"sequences", "segments", "prompt"}``: each segment's start
    and end in seconds, and each input's decoder prompt. More than 3000 frames: windows of 30 s, one after another; a batch of
    such inputs needs the feature extractor's ``attention_mask`` (each input's length)."""
    from .search import generate

    for name in _NOT_YET:
        if kwargs.get(name) not in (None, False):
            raise UnsupportedOptionError(f"Whisper generate(): {name} is not supported yet; leave it unset")
        kwargs.pop(name, None)
    if streamer is not None:
        raise UnsupportedOptionError("Whisper generate(): streamer is not supported yet; leave it unset")
    for name in ("return_dict_in_generate", "output_scores", "output_logits"):
        if kwargs.get(name):
            raise UnsupportedOptionError(f"Whisper generate(): {name} is not supported yet; use "
                                         "return_segments=True for the segments and their times")
    if isinstance(temperature, (list, tuple)):
        raise UnsupportedOptionError("Whisper generate(): a temperature fallback schedule is not supported "
                                     "yet; pass one temperature")
    if kwargs.get("num_return_sequences", 1) not in (None, 1):
        raise UnsupportedOptionError("Whisper generate(): num_return_sequences > 1 is not supported yet")
    if kwargs.pop("decoder_input_ids", None) is not None:
        raise InvalidInputError("Whisper makes its own decoder prompt: pass language= and task= instead "
                                "of decoder_input_ids")
    encoder_outputs = kwargs.pop("encoder_outputs", None)
    if input_features is None:
        input_features = kwargs.pop("input_features", None)
    if input_features is None and encoder_outputs is None:
        raise InvalidInputError("pass input_features (the feature extractor's output) to generate()")
    cfg = _merged_config(model, generation_config, kwargs)
    conf = model.config
    window = 2 * conf.max_source_positions   # feature frames per 30-s window
    stride = 2                                # frames per encoder position (the second conv)
    if input_features is not None:
        if not isinstance(input_features, torch.Tensor) or input_features.dim() != 3:
            raise InvalidInputError("input_features must be a (batch, mel bins, frames) tensor from "
                                    "the feature extractor (return_tensors='pt')")
        batch, total = input_features.shape[0], input_features.shape[-1]
    else:
        states = encoder_outputs[0] if isinstance(encoder_outputs, (tuple, list)) else encoder_outputs.last_hidden_state
        batch, total = states.shape[0], window
    short = total <= window

    if return_timestamps is None:
        return_timestamps = getattr(cfg, "return_timestamps", None)
    if not short:
        if return_timestamps is False:
            raise InvalidInputError(f"the input has {total} frames (more than 30 s): long-form "
                                    "transcription needs timestamps; pass return_timestamps=True or "
                                    "cut the audio into 30-s pieces")
        return_timestamps = True
    no_ts = getattr(cfg, "no_timestamps_token_id", None)
    if return_timestamps and no_ts is None:
        raise InvalidInputError("timestamps need generation_config.no_timestamps_token_id; this "
                                "model's generation_config.json lacks Whisper's fields")
    ts_begin = no_ts + 1 if no_ts is not None else conf.vocab_size + 1
    multilingual = is_multilingual if is_multilingual is not None else getattr(cfg, "is_multilingual", None)
    if multilingual is False and (task is not None or language is not None):
        raise InvalidInputError("this is an English-only Whisper: it takes no language= or task=; "
                                "use a multilingual checkpoint (e.g. whisper-base) to pick them")
    if task is not None and task not in TASKS:
        raise InvalidInputError(f"task must be one of {TASKS}, got {task!r}")
    if task is not None and not getattr(cfg, "task_to_id", None):
        raise InvalidInputError("this model's generation config has no task_to_id: task= cannot be used")
    if language is None:
        language = getattr(cfg, "language", None)
    if task is None:
        task = getattr(cfg, "task", None)

    encoder = model.get_encoder()
    with torch.no_grad():
        if input_features is not None:
            first = input_features[:, :, :window]
            if first.shape[-1] < window:
                first = torch.nn.functional.pad(first, (0, window - first.shape[-1]))
            first_states = encoder(first).last_hidden_state
        else:
            first_states = states
    rows = _init_tokens(model, cfg, first_states, batch, language, task, bool(return_timestamps))
    lengths = {len(r) for r in rows}
    if len(lengths) != 1:
        raise InvalidInputError("every input's prompt must have the same length")
    init = torch.tensor(rows, dtype=torch.long, device=first_states.device)
    begin = init.shape[1]

    procs: list = []
    suppress = getattr(cfg, "suppress_tokens", None)
    begin_suppress = getattr(cfg, "begin_suppress_tokens", None)
    if begin_suppress:
        procs.append(SuppressTokensAtBeginLogitsProcessor(begin_suppress, begin))
    if suppress:
        procs.append(SuppressTokensLogitsProcessor(suppress))
    if return_timestamps:
        eos = cfg.eos_token_id if cfg.eos_token_id is not None else cfg.bos_token_id
        eos = eos[0] if isinstance(eos, list) else eos
        procs.append(WhisperTimeStampLogitsProcessor(no_ts, eos, begin, getattr(cfg, "max_initial_timestamp_index", None)))
    procs += list(logits_processor or ())

    do_sample = temperature is not None and temperature > 0.0
    kwargs.pop("do_sample", None)
    num_beams = 1 if do_sample else kwargs.pop("num_beams", cfg.num_beams or 1)
    kwargs.pop("num_beams", None)
    max_new = kwargs.pop("max_new_tokens", cfg.max_new_tokens)
    max_length = kwargs.pop("max_length", cfg.max_length)
    if max_new is not None and max_new + begin > conf.max_target_positions:
        raise InvalidInputError(f"the prompt has {begin} tokens and max_new_tokens is {max_new}: more than "
                                f"the decoder's {conf.max_target_positions} positions; lower max_new_tokens")
    call = copy.deepcopy(cfg)
    call.suppress_tokens = []        # applied above, with Whisper's begin index
    call.begin_suppress_tokens = []
    call.forced_decoder_ids = None
    call.do_sample, call.num_beams = do_sample, num_beams
    call.temperature = temperature if do_sample else 1.0
    call.max_new_tokens = None

    if short:
        max_frames = torch.full((batch,), total, dtype=torch.long)
    elif batch > 1:
        if attention_mask is None:
            raise InvalidInputError("a batch of audio longer than 30 s needs the feature extractor's "
                                    "attention_mask (return_attention_mask=True): it gives each input's length")
        max_frames = attention_mask.sum(-1).cpu().long()
    else:
        max_frames = torch.full((batch,), total, dtype=torch.long)
    seek = torch.zeros(batch, dtype=torch.long)
    found: list[list[dict]] = [[] for _ in range(batch)]
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else cfg.eos_token_id
    eos_id = cfg.eos_token_id[0] if isinstance(cfg.eos_token_id, list) else cfg.eos_token_id
    while bool((seek < max_frames).any()):
        active = [i for i in range(batch) if seek[i] < max_frames[i]]
        frames = {i: int(min(max_frames[i] - seek[i], window)) for i in active}
        if short and input_features is None:
            enc = states[active]
        elif short and total == window and seek.eq(0).all():
            enc = first_states[active]
        else:
            pieces = []
            for i in active:
                piece = input_features[i:i + 1, :, int(seek[i]):int(seek[i]) + frames[i]]
                pieces.append(torch.nn.functional.pad(piece, (0, window - piece.shape[-1])))
            with torch.no_grad():
                enc = encoder(torch.cat(pieces)).last_hidden_state
        prompt = init[active]
        if max_new is None:
            # the reference's rule: the budget grows by the prompt, up to the decoder's positions
            max_length = min(max_length + min(conf.max_target_positions // 2 - 1, begin), conf.max_target_positions)
            call.max_length = max_length
        else:
            call.max_new_tokens, call.max_length = max_new, None
        out = generate(model, generation_config=call, logits_processor=procs, stopping_criteria=stopping_criteria,
                       decoder_input_ids=prompt, encoder_outputs=(enc,), **kwargs)
        for row, i in enumerate(active):
            seq = out[row, begin:]
            if len(seq) and int(seq[-1]) == pad:
                n = int((seq == pad).sum()) - (1 if pad == eos_id else 0)
                if n:
                    seq = seq[:-n]
            if len(seq) and int(seq[-1]) == eos_id:
                seq = seq[:-1]
            offset = float(seek[i]) * time_precision / stride
            segs, step = _segments(seq, ts_begin, offset, frames[i], time_precision, time_precision_features, stride)
            seek[i] += step
            found[i] += segs

    seqs = [torch.cat([s["tokens"] for s in segs]) if segs else torch.tensor([], dtype=torch.long) for segs in found]
    longest = max((len(s) for s in seqs), default=0)
    sequences = torch.stack([torch.nn.functional.pad(s, (0, longest - len(s)), value=pad) for s in seqs])
    if return_segments:   # with each input's prompt (its language token: the pipeline's return_language)
        return {"sequences": sequences, "segments": found, "prompt": init}
    return sequences
