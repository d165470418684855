"""generate(): greedy decoding and multinomial sampling (beam search lives in beam.py).

The prompt goes through the model once (prefill), then one token per step through the KV
cache. Models whose ``forward_inputs`` lack ``past_key_values`` (and ``use_cache=False``) re-run
the whole sequence each step instead; both paths give the same tokens.

Example::

    >>> import torch
    >>> from pretrained.models.gpt2 import GPT2Config, GPT2LMHeadModel
    >>> cfg = GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0)
    >>> model = GPT2LMHeadModel.from_config(cfg)
    >>> out = model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=4, do_sample=False,
    ...                      eos_token_id=None)
    >>> out.shape
    torch.Size([1, 7])
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InvalidInputError
from .config import GenerationConfig
from .outputs import GenerateBeamDecoderOnlyOutput, GenerateDecoderOnlyOutput
from .prepare import Plan, prepare
from .stepper import Stepper


def generate(
    model: torch.nn.Module,
    inputs: torch.Tensor | None = None,
    generation_config: GenerationConfig | None = None,
    logits_processor: list | None = None,
    stopping_criteria: list | None = None,
    streamer: Any = None,
    *,
    input_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    token_type_ids: torch.Tensor | None = None,
    tokenizer: Any = None,
    decoder_input_ids: torch.Tensor | None = None,
    encoder_outputs: Any = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    **kwargs: Any,
) -> torch.Tensor | GenerateDecoderOnlyOutput | GenerateBeamDecoderOnlyOutput:
    """Continue each prompt of ``input_ids`` (B, T); returns (B * num_return_sequences, T + new)
    token ids, or an output object with ``return_dict_in_generate=True``.

    Keyword arguments are :class:`GenerationConfig` fields (``max_new_tokens``, ``do_sample``,
    ``temperature``, ``top_k``, ``top_p``, ``min_p``, ``num_beams``, ``repetition_penalty``,
    ``eos_token_id``, ``stop_strings`` ...). Batches must be left-padded with their
    ``attention_mask``. Sampling draws from ``generator`` (or a fresh one seeded with ``seed``),
    else from torch's global generator (``torch.manual_seed``). ``tokenizer`` is needed for
    ``stop_strings``. Every parameter is checked before the first forward pass.

    Speed on CPU (opt-in, see benchmarks/RESULTS_generate.md): ``set_weight_packing(model)``
    (``pretrained.layers``) runs bfloat16 and batched decoding on pre-packed oneDNN weights with
    fused projections, ~1.3-2x faster, for a second copy of the weights in memory;
    ``model.forward = torch.compile(model.forward)`` with ``cache_implementation="static"``
    removes most per-step overhead, once compiled (tens of seconds).

    Example::

        >>> out = model.generate(**tok(["Hello"], return_tensors="pt"), max_new_tokens=20)  # doctest: +SKIP
        >>> tok.decode(out[0])                                                             # doctest: +SKIP
    """
    try:
        if token_type_ids is not None and bool(token_type_ids.any()):
            raise InvalidInputError("generate() does not take token_type_ids for decoder-only "
                                    "models; drop them from the tokenizer's output")
        if seed is not None and generator is not None:
            raise InvalidInputError("pass either seed= or generator=, not both")
        with torch.no_grad():
            plan = prepare(model, inputs, input_ids, attention_mask, generation_config,
                           logits_processor, stopping_criteria, streamer, tokenizer, kwargs,
                           decoder_input_ids, encoder_outputs)
        if seed is not None:
            generator = torch.Generator(device=plan.input_ids.device).manual_seed(seed)
        # inference_mode: less bookkeeping per op than no_grad (~3% of a CPU decode step)
        with torch.inference_mode():
            if plan.num_beams > 1:
                from .beam import beam_search

                out = beam_search(model, plan, generator)
            else:
                out = _decode(model, plan, streamer, generator)
        return _usable(out)
    except BaseException as e:
        fail = getattr(streamer, "fail", None)
        if callable(fail):  # a thread reading the streamer sees the error instead of waiting
            fail(e)
        raise


def _usable(out: Any) -> Any:
    """Copies of the result made outside inference mode, so that callers may modify them or
    feed them to autograd (inference tensors refuse both)."""
    def fix(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return x.clone() if x.is_inference() else x
        if isinstance(x, tuple):
            return tuple(fix(t) for t in x)
        return x

    if isinstance(out, torch.Tensor):
        return fix(out)
    for name in ("sequences", "sequences_scores", "scores", "logits", "beam_indices"):
        if getattr(out, name, None) is not None:
            setattr(out, name, fix(getattr(out, name)))
    return out


def _decode(model: torch.nn.Module, plan: Plan, streamer: Any,
            generator: torch.Generator | None) -> torch.Tensor | GenerateDecoderOnlyOutput:
    """Greedy decoding (argmax) or multinomial sampling, one token per step."""
    cfg = plan.cfg
    ids = plan.input_ids
    if plan.expand > 1:
        ids = ids.repeat_interleave(plan.expand, dim=0)
    rows, t = ids.shape
    seq = torch.empty(rows, plan.max_length, dtype=torch.long, device=ids.device)
    seq[:, :t] = ids
    keep_scores = cfg.return_dict_in_generate and cfg.output_scores
    keep_logits = cfg.return_dict_in_generate and cfg.output_logits
    scores_out: list[torch.Tensor] = []
    logits_out: list[torch.Tensor] = []
    pad = torch.tensor(plan.pad if plan.pad is not None else 0, device=ids.device)
    unfinished = torch.ones(rows, dtype=torch.bool, device=ids.device)
    procs, criteria = plan.processors, plan.criteria
    stepper = Stepper(model, plan, rows)
    if streamer is not None:
        streamer.put(ids.cpu())
    logits = stepper.prefill(ids)
    length = t
    for cur in range(t, plan.max_length):
        scores = procs(seq[:, :cur], logits) if procs else logits
        if keep_scores:
            scores_out.append(scores)
        if keep_logits:
            logits_out.append(logits)
        if plan.do_sample:
            probs = torch.softmax(scores, dim=-1)
            nxt = torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
        else:
            nxt = torch.argmax(scores, dim=-1)
        if plan.eos is not None:  # finished rows continue with padding
            nxt = torch.where(unfinished, nxt, pad)
        seq[:, cur] = nxt
        length = cur + 1
        if streamer is not None:
            streamer.put(nxt.cpu())
        if criteria:
            unfinished &= ~criteria(seq[:, :length], tuple(scores_out) if keep_scores else None)
            if not bool(unfinished.any()):
                break
        if length == plan.max_length:
            break
        logits = stepper.step(seq[:, :length])
    if streamer is not None:
        streamer.end()
    sequences = seq[:, :length]
    if not cfg.return_dict_in_generate:
        return sequences
    return GenerateDecoderOnlyOutput(
        sequences=sequences, scores=tuple(scores_out) if keep_scores else None,
        logits=tuple(logits_out) if keep_logits else None, cache=stepper.cache)


__all__ = ["generate", "GenerateDecoderOnlyOutput", "GenerateBeamDecoderOnlyOutput", "Stepper"]
