"""Everything ``generate()`` settles before the first forward pass: the merged config, every
check on parameters and inputs, lengths, special tokens, logits processors and stopping criteria.

Priority of a parameter, as in the reference: the call's keyword arguments, then the
``generation_config`` passed in, then ``model.generation_config``, then :data:`config.DEFAULTS`.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InvalidInputError
from .config import DEFAULTS, UNSUPPORTED, GenerationConfig, check_value
from .logits import (
    EncoderNoRepeatNGramLogitsProcessor, ForcedBOSTokenLogitsProcessor,
    ForcedEOSTokenLogitsProcessor, LogitsProcessorList, MinLengthLogitsProcessor, MinPLogitsWarper,
    NoBadWordsLogitsProcessor, NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor,
    SuppressTokensAtBeginLogitsProcessor, SuppressTokensLogitsProcessor, TemperatureLogitsWarper,
    TopKLogitsWarper, TopPLogitsWarper,
)
from .stopping import EosTokenCriteria, MaxTimeCriteria, StoppingCriteriaList, StopStringCriteria

logger = logging.getLogger("pretrained")
_warned: set[str] = set()

_SAMPLING_ONLY = {"temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff",
                  "eta_cutoff", "top_h"}
_BEAM_ONLY = {"length_penalty", "early_stopping", "num_beam_groups", "diversity_penalty",
              "constraints", "force_words_ids"}
# Flags that do nothing in greedy / single-beam mode, with the value that means "unset"
# (the reference warns about these once).
_NO_EFFECT_GREEDY = (("temperature", 1.0), ("top_p", 1.0), ("top_k", 50), ("min_p", None))
_NO_EFFECT_SINGLE_BEAM = (("early_stopping", False), ("length_penalty", 1.0))
_STRUCTURAL = ("max_length", "min_length", "do_sample", "num_beams", "use_cache", "early_stopping",
               "length_penalty", "num_return_sequences", "output_scores", "output_logits",
               "return_dict_in_generate")


def warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)


@dataclass
class Plan:
    """A validated generate() call."""

    cfg: GenerationConfig
    input_ids: torch.Tensor  # (B, T), not yet expanded for beams / return sequences
    attention_mask: torch.Tensor | None  # (B, T), None when nothing is padded
    prompt_length: int
    max_length: int
    eos: torch.Tensor | None  # (n_eos,)
    pad: int | None
    num_beams: int
    do_sample: bool
    expand: int  # rows per input: max(num_beams, num_return_sequences)
    processors: LogitsProcessorList
    criteria: StoppingCriteriaList
    # encoder-decoder models: input_ids above are the decoder's (start token first); the
    # encoder's inputs, or its output when the caller passed encoder_outputs
    encoder_input_ids: torch.Tensor | None = None
    encoder_attention_mask: torch.Tensor | None = None
    encoder_outputs: Any = None

    @property
    def is_encoder_decoder(self) -> bool:
        return self.encoder_input_ids is not None or self.encoder_outputs is not None


def merge_config(model: Any, generation_config: GenerationConfig | None,
                 kwargs: dict[str, Any]) -> tuple[GenerationConfig, set[str], bool]:
    """The call's config with every field filled; the fields the caller set; and whether
    ``max_length`` is the global default (then it counts new tokens, as in the reference)."""
    if generation_config is not None and not isinstance(generation_config, GenerationConfig):
        raise InvalidInputError(f"generation_config must be a GenerationConfig, got "
                                f"{type(generation_config).__name__}")
    base = getattr(model, "generation_config", None)
    if not isinstance(base, GenerationConfig):
        base = GenerationConfig.from_model_config(model.config)
    cfg = copy.deepcopy(generation_config) if generation_config is not None else GenerationConfig()
    user_set = set(kwargs) | (set(generation_config.to_diff_dict()) if generation_config else set())
    default_max = "max_length" not in user_set and base.max_length is None
    for name in (*DEFAULTS, *UNSUPPORTED):
        if getattr(cfg, name) is None:
            setattr(cfg, name, getattr(base, name))
        if getattr(cfg, name) is None and DEFAULTS.get(name) is not None:
            setattr(cfg, name, DEFAULTS[name])
    unknown = cfg.update(**kwargs)
    for name in _STRUCTURAL:  # None passed for these means "the default", not "off"
        if getattr(cfg, name) is None:
            setattr(cfg, name, DEFAULTS[name])
    if unknown:
        raise InvalidInputError(
            f"generate() got unexpected argument(s) {sorted(unknown)}: not generation parameters "
            "(see GenerationConfig) nor inputs (input_ids, attention_mask); check the spelling")
    return cfg, user_set, default_max


def check_config(cfg: GenerationConfig, user_set: set[str]) -> None:
    """Raise for an invalid value that this call sets or uses; warn once about set values that
    do nothing in the chosen mode."""
    for name in ("do_sample", "num_beams"):  # these two decide what else is used
        _raise_if_invalid(cfg, name, user_set)
    sampling, beams = cfg.do_sample, cfg.num_beams > 1
    for name in (*DEFAULTS, *UNSUPPORTED):
        used = (sampling or name not in _SAMPLING_ONLY) and (beams or name not in _BEAM_ONLY)
        if used or name in user_set:
            _raise_if_invalid(cfg, name, user_set)
    n = cfg.num_return_sequences
    if beams and n > cfg.num_beams:
        raise InvalidInputError(f"num_return_sequences={n} is more than num_beams={cfg.num_beams}: "
                                "beam search returns at most num_beams sequences; raise num_beams")
    if not beams and not sampling and n > 1:
        raise InvalidInputError(f"num_return_sequences={n} with greedy decoding would return {n} "
                                "identical sequences; use do_sample=True or num_beams >= "
                                f"{n}, or num_return_sequences=1")

    def should_warn(outer: str, inner: str) -> bool:  # the reference's rule
        return not (outer in user_set and inner not in user_set)

    if not sampling:
        for name, unset in _NO_EFFECT_GREEDY:
            value = getattr(cfg, name)
            if value is not None and value != unset and should_warn("do_sample", name):
                warn_once(f"generate(): {name}={value!r} has no effect without do_sample=True "
                          f"(greedy or beam search decoding); set do_sample=True or unset {name}")
    if not beams:
        for name, unset in _NO_EFFECT_SINGLE_BEAM:
            value = getattr(cfg, name)
            if value is not None and value != unset and should_warn("num_beams", name):
                warn_once(f"generate(): {name}={value!r} only applies to beam search; set "
                          f"num_beams > 1 or unset {name}")


def _raise_if_invalid(cfg: GenerationConfig, name: str, user_set: set[str]) -> None:
    why = check_value(name, getattr(cfg, name))
    if why:
        where = "" if name in user_set else " (from the model's generation_config.json)"
        raise InvalidInputError(f"{name}={getattr(cfg, name)!r}{where} {why}")


def check_inputs(model: Any, inputs: Any, input_ids: Any, attention_mask: Any) -> tuple[torch.Tensor, Any]:
    """(B, T) integer ids inside the vocabulary and a matching 0/1 mask, or a clear error."""
    if inputs is not None and input_ids is not None:
        raise InvalidInputError("pass the prompt once: either generate(inputs) or generate(input_ids=...)")
    ids = input_ids if input_ids is not None else inputs
    if ids is None:
        raise InvalidInputError("generate() needs input_ids (B, T): tokenize the prompt with "
                                "return_tensors='pt' and pass **encoding")
    if not isinstance(ids, torch.Tensor):
        raise InvalidInputError(f"input_ids must be a torch.Tensor, got {type(ids).__name__}; "
                                "tokenize with return_tensors='pt'")
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    if ids.dim() != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
        raise InvalidInputError(f"input_ids must have shape (batch, length) with both > 0, got "
                                f"{tuple(ids.shape)}; the prompt is empty")
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise InvalidInputError(f"input_ids must hold integer token ids, got {ids.dtype}")
    device = next((p.device for p in model.parameters()), ids.device)
    ids = ids.to(device=device, dtype=torch.long)  # prompts may come from the CPU
    vocab = model.config.vocab_size
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= vocab:
        raise InvalidInputError(f"input_ids holds token id {lo if lo < 0 else hi}, outside this model's "
                                f"vocabulary [0, {vocab}); was it made by another tokenizer?")
    mask = attention_mask
    if mask is not None:
        if not isinstance(mask, torch.Tensor):
            raise InvalidInputError(f"attention_mask must be a torch.Tensor, got {type(mask).__name__}")
        if mask.dim() == 1 and ids.shape[0] == 1:
            mask = mask.unsqueeze(0)
        if tuple(mask.shape) != tuple(ids.shape):
            raise InvalidInputError(f"attention_mask has shape {tuple(mask.shape)} but input_ids has "
                                    f"shape {tuple(ids.shape)}; pass the mask the tokenizer returned")
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise InvalidInputError("attention_mask must hold only 0 (padding) and 1 (token)")
        empty = (mask.sum(-1) == 0).nonzero().flatten().tolist()
        if empty:
            raise InvalidInputError(f"attention_mask rows {empty} are all padding: those prompts are empty")
        mask = mask.to(device=ids.device, dtype=torch.long)
    return ids, mask


def prepare(model: Any, inputs: Any, input_ids: Any, attention_mask: Any,
            generation_config: GenerationConfig | None, logits_processor: Any, stopping_criteria: Any,
            streamer: Any, tokenizer: Any, kwargs: dict[str, Any],
            decoder_input_ids: Any = None, encoder_outputs: Any = None) -> Plan:
    cfg, user_set, default_max = merge_config(model, generation_config, kwargs)
    check_config(cfg, user_set)
    enc_dec = bool(getattr(model.config, "is_encoder_decoder", False))
    if not enc_dec and (decoder_input_ids is not None or encoder_outputs is not None):
        raise InvalidInputError(f"decoder_input_ids / encoder_outputs are for encoder-decoder models; "
                                f"{type(model).__name__} is decoder-only: pass the prompt as input_ids")
    encoder_ids = encoder_mask = None
    if enc_dec:
        if encoder_outputs is not None and inputs is None and input_ids is None:
            states = encoder_outputs[0] if isinstance(encoder_outputs, (tuple, list)) \
                else encoder_outputs.last_hidden_state
            encoder_mask = attention_mask
            b = states.shape[0]
        else:
            encoder_ids, encoder_mask = check_inputs(model, inputs, input_ids, attention_mask)
            b = encoder_ids.shape[0]
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        ids = _decoder_start(cfg, user_set, decoder_input_ids, b, model.config.vocab_size, device)
        mask = None
    else:
        ids, mask = check_inputs(model, inputs, input_ids, attention_mask)
    b, t = ids.shape
    vocab = model.config.vocab_size

    # Lengths.
    positions = getattr(model.config, "max_position_embeddings", None)
    context = _context_length(model.config)
    if cfg.max_new_tokens is not None:
        if "max_length" in user_set and "max_new_tokens" in user_set:
            warn_once("generate(): both max_new_tokens and max_length are set; max_new_tokens wins")
        max_length = t + cfg.max_new_tokens
    elif default_max:
        warn_once(f"generate(): no max_new_tokens given, so at most {cfg.max_length} new tokens "
                  "(the default); pass max_new_tokens to choose")
        max_length = cfg.max_length + t
        if positions is not None:  # the reference's clamp
            max_length = min(max_length, positions)
    else:
        max_length = cfg.max_length
    if context is not None and max_length > context:
        raise InvalidInputError(
            f"This model's maximum context length is {context} tokens, however you requested "
            f"{max_length} tokens ({t} in the prompt + {max_length - t} new); lower max_new_tokens "
            "or shorten the prompt")
    if t >= max_length:
        if default_max and positions is not None and t >= positions:
            raise InvalidInputError(f"This model's maximum context length is {positions} tokens, however "
                                    f"the prompt has {t} tokens; shorten the prompt")
        raise InvalidInputError(f"the prompt has {t} tokens but max_length is {max_length}, so nothing "
                                "can be generated; pass max_new_tokens=N instead, or shorten the prompt")
    min_length = cfg.min_new_tokens + t if cfg.min_new_tokens is not None else cfg.min_length
    asked_min = sorted(user_set & {"min_length", "min_new_tokens"})
    asked_max = sorted(user_set & {"max_length", "max_new_tokens"})
    if min_length > max_length and asked_min and asked_max:
        # both bounds chosen and contradictory: the reference silently stops at the maximum
        # without the end token; only a model's own min_length is left to that (bart-large-cnn's
        # 56 with a short max_new_tokens is an ordinary call)
        raise InvalidInputError(
            f"{'/'.join(asked_max)} gives at most {max_length} tokens but {'/'.join(asked_min)} asks "
            f"for at least {min_length}: no output can satisfy both; raise the maximum or lower the "
            "minimum")

    # Special tokens.
    eos_list = None if cfg.eos_token_id is None else (
        cfg.eos_token_id if isinstance(cfg.eos_token_id, list) else [cfg.eos_token_id])
    if eos_list:
        bad = [i for i in eos_list if i >= vocab]
        if bad:
            where = "" if "eos_token_id" in user_set else " (from the model's generation config)"
            raise InvalidInputError(f"eos_token_id {bad}{where} outside this model's vocabulary "
                                    f"[0, {vocab}); pass eos_token_id= the eos id(s) of this model's "
                                    "tokenizer")
    eos = torch.tensor(eos_list, dtype=torch.long, device=ids.device) if eos_list else None
    pad = cfg.pad_token_id
    if pad is None and eos is not None:
        if attention_mask is None and b > 1:
            warn_once("generate(): the attention mask and the pad token id were not set with a "
                      "batched input; pass the tokenizer's attention_mask for reliable results")
        pad = eos_list[0]
    if pad is not None and eos is not None and pad >= vocab:
        raise InvalidInputError(f"pad_token_id={pad} is outside this model's vocabulary [0, {vocab}); "
                                "finished sequences are fed to the model padded with it")
    for name in ("forced_bos_token_id", "forced_eos_token_id"):
        value = getattr(cfg, name)
        if value is not None and any(i >= vocab for i in (value if isinstance(value, list) else [value])):
            raise InvalidInputError(f"{name}={value!r} is outside this model's vocabulary [0, {vocab})")
    if cfg.bad_words_ids is not None:
        too_big = sorted({i for w in cfg.bad_words_ids for i in w if i >= vocab})
        if too_big:
            raise InvalidInputError(f"bad_words_ids hold token ids {too_big} outside this model's "
                                    f"vocabulary [0, {vocab})")
    if cfg.stop_strings is not None and tokenizer is None:
        raise InvalidInputError("stop_strings need the model's tokenizer to read the generated text: "
                                "pass tokenizer=... to generate()")

    # Attention mask: inferred from padding when not given (as the reference); dropped when all ones.
    # (for an encoder-decoder, the encoder's: its input is the one that may be padded)
    if encoder_ids is not None:
        encoder_mask = _padding_mask(encoder_ids, encoder_mask, pad, eos_list)
    elif not enc_dec:
        mask = _padding_mask(ids, mask, pad, eos_list)
        if mask is not None and b > 1 and bool((mask[:, -1] == 0).any()):
            warn_once("generate(): right padding detected in a decoder-only model; results will "
                      "be wrong. Tokenize with padding_side='left'")

    beams = cfg.num_beams
    if streamer is not None:
        if beams > 1:
            raise InvalidInputError("streamer cannot be used with beam search; use num_beams=1")
        from .streaming import TextStreamer

        if isinstance(streamer, TextStreamer) and b * cfg.num_return_sequences > 1:
            raise InvalidInputError("TextStreamer streams one sequence: pass a batch of one prompt "
                                    "and num_return_sequences=1")
    expand = max(beams, cfg.num_return_sequences)
    if cfg.cache_implementation == "static" and not cfg.use_cache:
        warn_once("generate(): cache_implementation='static' has no effect with use_cache=False")

    procs = _processors(cfg, min_length, eos, mask, expand, logits_processor, max_length, encoder_ids, t)
    criteria = StoppingCriteriaList()
    if cfg.max_time is not None:
        criteria.append(MaxTimeCriteria(cfg.max_time))
    if cfg.stop_strings is not None:
        criteria.append(StopStringCriteria(tokenizer, cfg.stop_strings))
    if eos is not None:
        criteria.append(EosTokenCriteria(eos))
    for extra in stopping_criteria or ():
        criteria.append(extra)
    return Plan(cfg=cfg, input_ids=ids, attention_mask=mask, prompt_length=t, max_length=max_length,
                eos=eos, pad=pad, num_beams=beams, do_sample=bool(cfg.do_sample), expand=expand,
                processors=procs, criteria=criteria, encoder_input_ids=encoder_ids,
                encoder_attention_mask=encoder_mask,
                encoder_outputs=encoder_outputs if encoder_ids is None and enc_dec else None)


def _padding_mask(ids: torch.Tensor, mask: torch.Tensor | None, pad: int | None,
                  eos_list: list | None) -> torch.Tensor | None:
    """The mask given, else the one the padding implies (the pad id, unless it is also an eos
    id); None when it masks nothing."""
    if mask is None and pad is not None and bool((ids == pad).any()) and (
            not eos_list or pad not in eos_list):
        mask = (ids != pad).long()
    return None if mask is not None and bool(mask.all()) else mask


def _decoder_start(cfg: GenerationConfig, user_set: set[str], decoder_input_ids: Any, b: int,
                   vocab: int, device: torch.device) -> torch.Tensor:
    """The decoder's first tokens: ``decoder_input_ids`` (with the start token put in front
    when missing, as the reference does), else the start token alone, (B, T_dec)."""
    start = cfg.decoder_start_token_id if cfg.decoder_start_token_id is not None else cfg.bos_token_id
    if start is None:
        raise InvalidInputError("this encoder-decoder model has no decoder_start_token_id (nor "
                                "bos_token_id) in its config or generation_config; pass "
                                "decoder_start_token_id= (T5, Marian: the pad id; BART: the eos id)")
    if isinstance(start, list) or not isinstance(start, int) or not 0 <= start < vocab:
        where = "" if "decoder_start_token_id" in user_set else " (from the model's config)"
        raise InvalidInputError(f"decoder_start_token_id={start!r}{where} must be one token id in "
                                f"[0, {vocab})")
    first = torch.full((b, 1), start, dtype=torch.long, device=device)
    if decoder_input_ids is None:
        return first
    if not isinstance(decoder_input_ids, torch.Tensor) or decoder_input_ids.is_floating_point():
        raise InvalidInputError("decoder_input_ids must be a tensor of token ids (B, T)")
    dec = decoder_input_ids.to(device=device, dtype=torch.long)
    if dec.dim() == 1:
        dec = dec.unsqueeze(0)
    if dec.dim() != 2 or dec.shape[0] != b:
        raise InvalidInputError(f"decoder_input_ids has shape {tuple(decoder_input_ids.shape)}; "
                                f"expected ({b}, T): one row per input")
    if dec.shape[1] == 0:
        return first
    if int(dec.min()) < 0 or int(dec.max()) >= vocab:
        raise InvalidInputError(f"decoder_input_ids hold ids outside this model's vocabulary [0, {vocab})")
    if not bool((dec[:, 0] == start).all()):
        dec = torch.cat([first, dec], dim=1)
    return dec


def _context_length(config: Any) -> int | None:
    """The most tokens the model can attend over, or None when it has no hard limit."""
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None)
    if isinstance(rope, dict) and (rope.get("rope_type") or rope.get("type")) == "dynamic":
        return None  # dynamic RoPE stretches past max_position_embeddings by design
    return getattr(config, "max_position_embeddings", None)


def _processors(cfg: GenerationConfig, min_length: int, eos: torch.Tensor | None,
                mask: torch.Tensor | None, expand: int, custom: Any, max_length: int,
                encoder_ids: torch.Tensor | None, prompt_length: int) -> LogitsProcessorList:
    """The reference's processors, in its order; the caller's processors replace a built-in one
    of the same type or come after them, before the sampling warpers."""
    procs = LogitsProcessorList()
    if cfg.repetition_penalty is not None and cfg.repetition_penalty != 1.0:
        skip = None
        if mask is not None:  # left padding is not part of the text
            skip = (mask != 0).int().argmax(dim=1).repeat_interleave(expand)
        procs.append(RepetitionPenaltyLogitsProcessor(cfg.repetition_penalty, prompt_ignore_length=skip))
    if cfg.no_repeat_ngram_size:
        procs.append(NoRepeatNGramLogitsProcessor(cfg.no_repeat_ngram_size))
    if cfg.encoder_no_repeat_ngram_size:
        if encoder_ids is None:
            raise InvalidInputError("encoder_no_repeat_ngram_size needs the encoder's input_ids "
                                    "(an encoder-decoder model, called with input_ids)")
        procs.append(EncoderNoRepeatNGramLogitsProcessor(cfg.encoder_no_repeat_ngram_size, encoder_ids))
    if cfg.bad_words_ids is not None:
        procs.append(NoBadWordsLogitsProcessor(cfg.bad_words_ids, eos))
    # min_new_tokens is folded into min_length (prompt + min_new_tokens), which bans the same
    # eos ids at the same steps as the reference's two processors together.
    if eos is not None and min_length and min_length > 0:
        procs.append(MinLengthLogitsProcessor(min_length, eos))
    if cfg.forced_bos_token_id is not None:
        procs.append(ForcedBOSTokenLogitsProcessor(cfg.forced_bos_token_id))
    if cfg.forced_eos_token_id is not None:
        procs.append(ForcedEOSTokenLogitsProcessor(max_length, cfg.forced_eos_token_id))
    if cfg.suppress_tokens:
        procs.append(SuppressTokensLogitsProcessor(cfg.suppress_tokens))
    if cfg.begin_suppress_tokens:
        # the reference's first generated position: after the prompt (one later when a forced
        # first token takes a one-token prompt's first step)
        begin = prompt_length if prompt_length > 1 or cfg.forced_bos_token_id is None else prompt_length + 1
        procs.append(SuppressTokensAtBeginLogitsProcessor(cfg.begin_suppress_tokens, begin))
    for extra in custom or ():
        same = [i for i, p in enumerate(procs) if type(p) is type(extra)]
        if same:
            procs[same[0]] = extra
        else:
            procs.append(extra)
    if cfg.do_sample:
        keep = 1 if cfg.num_beams == 1 else (eos.numel() + 1 if eos is not None else 2)
        if cfg.temperature is not None and cfg.temperature != 1.0:
            procs.append(TemperatureLogitsWarper(cfg.temperature))
        if cfg.top_k:
            procs.append(TopKLogitsWarper(cfg.top_k, min_tokens_to_keep=keep))
        if cfg.top_p is not None and cfg.top_p < 1.0:
            procs.append(TopPLogitsWarper(cfg.top_p, min_tokens_to_keep=keep))
        if cfg.min_p is not None:
            procs.append(MinPLogitsWarper(cfg.min_p, min_tokens_to_keep=keep))
    return procs


__all__ = ["Plan", "prepare", "merge_config", "check_config", "check_inputs", "warn_once"]
