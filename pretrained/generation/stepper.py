"""The model side of generation, shared by search.py (greedy, sampling) and beam.py: prefill the
prompt, then one step per new token through the KV cache."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InvalidInputError
from .prepare import Plan

__all__ = ["Stepper", "forward_inputs"]


#: What a module without ``forward_inputs`` is given: the tokens and their attention mask.
DEFAULT_FORWARD_INPUTS = frozenset({"input_ids", "attention_mask"})


def forward_inputs(model: torch.nn.Module) -> frozenset[str]:
    """The arguments ``model.forward`` takes, as its class declares them in ``forward_inputs``
    (see :class:`pretrained.modeling.PreTrainedModel`), not read from the signature of whatever
    ``forward`` is at the time (compiled, wrapped, or taking ``**kwargs``)."""
    declared = getattr(model, "forward_inputs", None)
    return declared if isinstance(declared, frozenset) else DEFAULT_FORWARD_INPUTS


class Stepper:
    """Runs the model for generation: :meth:`prefill` the prompt, then :meth:`step` once per new
    token. Attention mask and position ids are laid out once for the longest sequence and
    sliced (views) each step."""

    def __init__(self, model: torch.nn.Module, plan: Plan, rows: int) -> None:
        params = forward_inputs(model)
        cfg = plan.cfg
        self.model = model
        self.cached = bool(cfg.use_cache) and "past_key_values" in params
        self.cache = None
        self.encoder_decoder = plan.is_encoder_decoder
        if self.encoder_decoder:
            self._encode(plan, rows, params)
            return
        if self.cached and cfg.cache_implementation == "static":
            from ..cache import StaticCache

            self.cache = StaticCache(plan.max_length)
        self.extra: dict[str, Any] = {}
        if "use_cache" in params:
            self.extra["use_cache"] = self.cached
        if "logits_to_keep" in params:
            self.extra["logits_to_keep"] = 1
        self.with_positions = "position_ids" in params
        t, n, device = plan.prompt_length, plan.max_length, plan.input_ids.device
        mask = plan.attention_mask
        if mask is not None:
            mask = mask.repeat_interleave(rows // mask.shape[0], dim=0)
            self.mask: torch.Tensor | None = torch.ones(rows, n, dtype=torch.long, device=device)
            self.mask[:, :t] = mask
            # Left padding: each row counts positions from its first real token (padding gets 0).
            pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        else:
            self.mask = None
            pos = torch.arange(t, device=device).expand(rows, t)
        self.positions = torch.empty(rows, n, dtype=torch.long, device=device)
        self.positions[:, :t] = pos
        self.positions[:, t:] = pos[:, -1:] + torch.arange(1, n - t + 1, device=device)

    def _encode(self, plan: Plan, rows: int, params: frozenset[str]) -> None:
        """Encoder-decoder models: the encoder runs here, once; every decoder step reads its
        output (and the cross-attention keys/values the first step projects from it)."""
        if plan.cfg.cache_implementation == "static" and self.cached:
            raise InvalidInputError("cache_implementation='static' is not supported for "
                                    "encoder-decoder models; leave it unset")
        from ..outputs import BaseModelOutput

        mask = plan.encoder_attention_mask
        if plan.encoder_outputs is not None:
            out = plan.encoder_outputs
            states = out[0] if isinstance(out, (tuple, list)) else out.last_hidden_state
        else:
            states = self.model.get_encoder()(plan.encoder_input_ids, attention_mask=mask).last_hidden_state
        per_input = rows // states.shape[0]
        # beams / return sequences of one input read the same encoder output: repeated per row,
        # unless the model's cross-attention serves a row's group from one copy (then the cache
        # says how many rows share one)
        if per_input > 1 and self.cached and getattr(self.model, "encoder_output_per_input", False):
            from ..cache import EncoderDecoderCache

            self.cache = EncoderDecoderCache(sequences_per_input=per_input)
        elif per_input > 1:
            states = states.repeat_interleave(per_input, dim=0)
            mask = mask.repeat_interleave(per_input, dim=0) if mask is not None else None
        self.extra = {"encoder_outputs": BaseModelOutput(last_hidden_state=states),
                      "attention_mask": mask}
        if "use_cache" in params:
            self.extra["use_cache"] = self.cached
        self.mask = None
        self.with_positions = False

    def _run(self, ids: torch.Tensor, start: int, end: int, copy: bool = True) -> torch.Tensor:
        kw = dict(self.extra)
        if self.mask is not None:
            kw["attention_mask"] = self.mask[:, :end]
        if self.with_positions:
            kw["position_ids"] = self.positions[:, start:end]
        if self.cached:
            kw["past_key_values"] = self.cache
        # an encoder-decoder's new tokens are the decoder's (its encoder output is in extra)
        out = self.model(decoder_input_ids=ids, **kw) if self.encoder_decoder else self.model(ids, **kw)
        if self.cached:
            self.cache = out.past_key_values
        # float32 copy of the last position: processors never see the model's own buffer
        # (copy=False: the caller only reads them into new tensors, as beam search's log_softmax)
        return out.logits[:, -1].to(dtype=torch.float32, copy=copy)

    def prefill(self, ids: torch.Tensor, copy: bool = True) -> torch.Tensor:
        """Logits (rows, V) for the token after the prompt ``ids`` (rows, T): float32, a copy
        of the model's output unless ``copy=False`` (then a view where it is float32)."""
        return self._run(ids, 0, ids.shape[1], copy)

    def step(self, seq: torch.Tensor, copy: bool = True) -> torch.Tensor:
        """Logits for the token after ``seq`` (rows, L), whose last column is new (``copy`` as
        in :meth:`prefill`)."""
        n = seq.shape[1]
        if self.cached:
            return self._run(seq[:, -1:], n - 1, n, copy)
        return self._run(seq, 0, n, copy)

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep the cache rows ``rows`` (beam search)."""
        if self.cached:
            if not hasattr(self.cache, "reorder"):
                raise InvalidInputError(f"{type(self.cache).__name__} cannot be reordered for beam "
                                        "search; pass use_cache=False")
            if self.encoder_decoder:  # beams stay within their input: cross keys/values stay
                self.cache.reorder(rows, cross=False)
            else:
                self.cache.reorder(rows)
