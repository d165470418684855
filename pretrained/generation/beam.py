"""Beam search (and beam sampling), step for step the reference's vectorised algorithm.

Per prompt, ``num_beams`` running hypotheses are extended each step by their best
``k = max(2, 1 + n_eos) * num_beams`` continuations (so enough stay alive when some end); those
that hit a stopping criterion join the finished set, scored ``sum log p / new_len ** length_penalty``,
and the best ``num_beams`` that did not stop keep running. Search ends when no running beam can
beat the finished ones (``early_stopping``), every beam stops, or ``max_length`` is reached.

Ties and the ``-1e9`` masks follow the reference's arithmetic exactly, so the same log-probs give
the same beams.
"""

from __future__ import annotations

import torch

from .prepare import Plan
from .outputs import GenerateBeamDecoderOnlyOutput
from .stepper import Stepper

_MASKED = -1.0e9


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows ``idx`` (B, k) along dim 1 of ``x`` (B, n, ...)."""
    while idx.dim() < x.dim():
        idx = idx.unsqueeze(-1)
    return torch.take_along_dim(x, idx, dim=1)


def beam_search(model: torch.nn.Module, plan: Plan,
                generator: torch.Generator | None) -> torch.Tensor | GenerateBeamDecoderOnlyOutput:
    cfg = plan.cfg
    nb = plan.num_beams
    lp = cfg.length_penalty
    early = cfg.early_stopping
    n_return = cfg.num_return_sequences
    max_length, t = plan.max_length, plan.prompt_length
    ids = plan.input_ids.repeat_interleave(nb, dim=0)  # (B*nb, T)
    device = ids.device
    b = plan.input_ids.shape[0]
    n_eos = plan.eos.numel() if plan.eos is not None else 0
    k = max(2, 1 + n_eos) * nb
    top_nb = torch.zeros(k, dtype=torch.bool, device=device)
    top_nb[:nb] = True
    # As the reference: pad (if non-zero) else the first eos fills the tail of short finished beams.
    fill = (plan.pad if plan.pad else int(plan.eos[0])) if plan.eos is not None else -1

    running = torch.full((b, nb, max_length), fill, dtype=torch.long, device=device)
    running[:, :, :t] = ids.view(b, nb, t)
    finished = running.clone()
    running_scores = torch.zeros(b, nb, dtype=torch.float, device=device)
    running_scores[:, 1:] = _MASKED  # only the first beam is live at the start
    finished_scores = torch.full((b, nb), _MASKED, dtype=torch.float, device=device)
    is_finished = torch.zeros(b, nb, dtype=torch.bool, device=device)
    can_improve = torch.ones(b, 1, dtype=torch.bool, device=device)
    running_origin = torch.full((b, nb, max_length - t), -1, dtype=torch.int32, device=device)
    finished_origin = running_origin.clone()
    offsets = torch.arange(b, device=device).view(-1, 1) * nb

    keep_scores = cfg.return_dict_in_generate and cfg.output_scores
    keep_logits = cfg.return_dict_in_generate and cfg.output_logits
    scores_out: list[torch.Tensor] = []
    logits_out: list[torch.Tensor] = []
    stepper = Stepper(model, plan, b * nb)
    flat = ids
    # no copy of the logits: log_softmax below reads them into a new tensor (4 MB a step saved
    # at 32 beams x 32k tokens)
    logits = stepper.prefill(ids, copy=False)
    cur = t
    while True:
        log_probs = torch.log_softmax(logits, dim=-1)
        log_probs = plan.processors(flat, log_probs)
        if keep_logits:
            logits_out.append(logits.clone())
        if keep_scores:
            scores_out.append(log_probs.clone())
        v = log_probs.shape[-1]
        total = (log_probs.view(b, nb, v) + running_scores[:, :, None]).reshape(b, nb * v)

        # Best k continuations over all beams (or k sampled without replacement).
        if plan.do_sample:
            picked = torch.multinomial(torch.softmax(total, dim=-1), num_samples=k, generator=generator)
            cand_scores = torch.gather(total, 1, picked)
            cand_scores, order = cand_scores.sort(dim=-1, descending=True)
            picked = picked.gather(-1, order)
        else:
            cand_scores, picked = torch.topk(total, k=k)
        parent = picked // v
        cand_origin = _gather(running_origin, parent)
        cand = _gather(running, parent)
        cand[:, :, cur] = picked % v
        cand_origin[:, :, cur - t] = parent + offsets

        hits = plan.criteria(cand[:, :, :cur + 1].reshape(b * k, cur + 1),
                             tuple(scores_out) if keep_scores else None).view(b, k)
        if cur + 1 >= max_length:
            hits = torch.ones_like(hits)

        # Continue with the best nb candidates that did not stop.
        live_scores = cand_scores + hits.to(torch.float32) * _MASKED
        best = torch.topk(live_scores, k=nb)[1]
        running = _gather(cand, best)
        running_scores = _gather(live_scores, best)
        running_origin = _gather(cand_origin, best)

        # Candidates among the top nb that stopped may enter the finished set.
        just_done = hits & top_nb[None, :]
        done_scores = cand_scores / ((cur + 1 - t) ** lp)
        full = torch.all(is_finished, dim=-1, keepdim=True) & (early is True)
        done_scores += full.to(torch.float32) * _MASKED
        done_scores += (~can_improve).to(torch.float32) * _MASKED
        done_scores += (~just_done) * _MASKED
        pool_scores = torch.cat((finished_scores, done_scores), dim=1)
        keep = torch.topk(pool_scores, k=nb)[1]
        finished = _gather(torch.cat((finished, cand), dim=1), keep)
        finished_scores = _gather(pool_scores, keep)
        finished_origin = _gather(torch.cat((finished_origin, cand_origin), dim=1), keep)
        is_finished = _gather(torch.cat((is_finished, just_done), dim=1), keep)

        stepper.reorder(running_origin[..., cur - t].reshape(-1))
        cur += 1

        # Could a running beam still beat the worst finished one?
        if early == "never" and lp > 0.0:
            best_len = max_length - t
        else:
            best_len = cur - t
        best_running = running_scores[:, :1] / (best_len ** lp)
        worst_done = torch.where(is_finished, torch.min(finished_scores, dim=1, keepdim=True)[0], _MASKED)
        can_improve = can_improve & torch.any(best_running > worst_done, dim=-1, keepdim=True)
        all_done = bool(torch.all(is_finished)) and early is True
        if not bool(torch.any(can_improve)) or all_done or bool(torch.all(hits)):
            break
        flat = running[:, :, :cur].reshape(b * nb, cur)
        logits = stepper.step(flat, copy=False)

    sequences = finished[:, :n_return].reshape(b * n_return, max_length)
    seq_scores = finished_scores[:, :n_return].reshape(-1)
    origin = finished_origin[:, :n_return].reshape(b * n_return, max_length - t)
    generated = int((origin + 1).bool().sum(dim=1).max())
    sequences = sequences[:, :t + generated]
    origin = origin[:, :generated]
    if not cfg.return_dict_in_generate:
        return sequences
    return GenerateBeamDecoderOnlyOutput(
        sequences=sequences, sequences_scores=seq_scores if cfg.output_scores else None,
        scores=tuple(scores_out) if keep_scores else None,
        logits=tuple(logits_out) if keep_logits else None, beam_indices=origin, cache=stepper.cache)


__all__ = ["beam_search"]
