"""Text generation ("text-generation"): continue a prompt, or answer a chat.

Output shapes follow the reference:

* a string: ``[{"generated_text": prompt + continuation}]`` (one dict per returned sequence;
  ``return_full_text=False`` gives the continuation only, ``return_tensors=True`` the token ids);
* a chat (a list of ``{"role", "content"}`` dicts, rendered with the tokenizer's chat template
  and ``add_generation_prompt=True``): ``[{"generated_text": messages + [assistant reply]}]``;
  a chat ending with an assistant message is continued instead (``continue_final_message``);
* a list of strings or chats: a list of such lists.

Every generation parameter (``max_new_tokens``, ``do_sample``, ``temperature``, ``top_k``,
``top_p``, ``num_beams``, ``num_return_sequences``, ``streamer``, ``seed`` ...) is passed to
:func:`pretrained.generation.generate`. As in the reference, parameters that neither the call
nor the model's ``generation_config.json`` set default to ``max_new_tokens=256,
do_sample=True, temperature=0.7``. Batches (``batch_size``) are left-padded.

Example::

    >>> from pretrained import pipeline                                           # doctest: +SKIP
    >>> gen = pipeline("text-generation", model="path/to/SmolLM2-135M-Instruct")  # doctest: +SKIP
    >>> chat = [{"role": "user", "content": "What is the capital of France?"}]
    >>> gen(chat, do_sample=False)[0]["generated_text"][-1]                      # doctest: +SKIP
    {'role': 'assistant', 'content': 'The capital of France is Paris.'}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..errors import InvalidInputError
from ..generation.config import DEFAULTS, UNSUPPORTED
from .base import Pipeline

__all__ = ["TextGenerationPipeline"]

# Arguments of generate() that are not GenerationConfig fields.
_GENERATE_ARGS = {"generation_config", "streamer", "logits_processor", "stopping_criteria",
                  "generator", "seed"}
# The reference pipeline's defaults for parameters nobody set (sampling ones only when sampling).
_PIPELINE_DEFAULTS = {"max_new_tokens": 256, "do_sample": True, "temperature": 0.7}
_SAMPLING = {"temperature", "top_k", "top_p", "min_p"}


def _is_chat(item: Any) -> bool:
    return isinstance(item, (list, tuple)) and len(item) > 0 and all(isinstance(m, Mapping) for m in item)


class TextGenerationPipeline(Pipeline):
    """Generates text after a prompt (or a chat's next message) with a causal language model."""

    task = "text-generation"
    head = "causal-lm"
    padding_side = "left"  # decoder-only models continue from the last column

    def _split_parameters(self, params: dict[str, Any]) -> tuple[dict, dict, dict]:
        # Generation parameters are checked by generate() itself, before any forward pass.
        # (max_length also sets the tokenizer's truncation length: _sanitize_parameters has it.)
        params = dict(params)
        gen = {k: params.pop(k) for k in list(params) if k != "max_length"
               and (k in DEFAULTS or k in UNSUPPORTED or k in _GENERATE_ARGS)}
        pre, fwd, post = super()._split_parameters(params)
        return pre, {**fwd, **gen}, post

    def _sanitize_parameters(
        self,
        *,
        return_full_text: bool | None = None,
        return_tensors: bool | None = None,
        return_text: bool | None = None,
        clean_up_tokenization_spaces: bool | None = None,
        skip_special_tokens: bool | None = None,
        prefix: str | None = None,
        stop_sequence: str | Sequence[str] | None = None,
        continue_final_message: bool | None = None,
        add_special_tokens: bool | None = None,
        truncation: bool | str | None = None,
        padding: bool | str | None = None,
        max_length: int | None = None,
        tokenizer_encode_kwargs: dict | None = None,
        tools: list | None = None,
        documents: list | None = None,
    ) -> tuple[dict, dict, dict]:
        pre: dict[str, Any] = {}
        enc = {"add_special_tokens": add_special_tokens, "truncation": truncation, "padding": padding,
               "max_length": max_length}  # max_length is also generate()'s, as in the reference
        enc = {k: v for k, v in enc.items() if v is not None}
        enc.update(tokenizer_encode_kwargs or {})
        if enc:
            pre["tokenizer_kwargs"] = enc
        for key, value in (("prefix", prefix), ("continue_final_message", continue_final_message),
                           ("tools", tools), ("documents", documents)):
            if value is not None:
                pre[key] = value
        fwd: dict[str, Any] = {}
        if max_length is not None:
            fwd["max_length"] = max_length
        if stop_sequence is not None:
            fwd["stop_strings"] = [stop_sequence] if isinstance(stop_sequence, str) else list(stop_sequence)
        post: dict[str, Any] = {}
        if return_full_text is not None and (return_text is not None or return_tensors is not None):
            raise InvalidInputError("return_full_text cannot be combined with return_text or return_tensors")
        if return_text is not None and return_tensors is not None:
            raise InvalidInputError("return_text and return_tensors are mutually exclusive")
        if return_tensors:
            post["return_type"] = "tensors"
        elif return_full_text is not None:
            post["return_type"] = "full_text" if return_full_text else "new_text"
        for key, value in (("clean_up_tokenization_spaces", clean_up_tokenization_spaces),
                           ("skip_special_tokens", skip_special_tokens),
                           ("continue_final_message", continue_final_message)):
            if value is not None:
                post[key] = value
        return pre, fwd, post

    def _is_single(self, inputs: Any) -> bool:
        return isinstance(inputs, str) or _is_chat(inputs) or (
            isinstance(inputs, Mapping) and "messages" in inputs)

    def _input_help(self) -> str:
        return ("a string, a chat (a list of {'role', 'content'} dicts), a list of them, or an "
                "iterable of them")

    # --- preprocess -----------------------------------------------------------------------
    def preprocess(self, item: Any, prefix: str = "", continue_final_message: bool | None = None,
                   tools: list | None = None, documents: list | None = None,
                   tokenizer_kwargs: dict | None = None) -> list[dict[str, Any]]:
        kw = dict(tokenizer_kwargs or {})
        if isinstance(item, Mapping) and "messages" in item:
            item = item["messages"]
        if _is_chat(item):
            messages = [dict(m) for m in item]
            kw.pop("add_special_tokens", None)  # the template writes the special tokens
            if continue_final_message is None:
                continue_final_message = messages[-1].get("role") == "assistant"
            enc = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=not continue_final_message,
                continue_final_message=continue_final_message, return_dict=True, tools=tools,
                documents=documents, **kw)
            prompt: Any = messages
        elif isinstance(item, str):
            enc = self.tokenizer(prefix + item, **kw)
            prompt = item
        else:
            raise InvalidInputError(f"a text-generation input must be a string or a chat (a list of "
                                    f"{{'role', 'content'}} dicts), got {type(item).__name__}")
        ids = list(enc["input_ids"])
        mask = list(enc.get("attention_mask") or [1] * len(ids))
        return [{"input_ids": ids, "attention_mask": mask, "prompt": prompt}]

    # --- forward --------------------------------------------------------------------------
    def _generate_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's generation kwargs plus the pipeline defaults for what nobody set."""
        cfg = getattr(self.model, "generation_config", None)
        set_params = dict(cfg.to_diff_dict()) if cfg is not None else {}
        if kwargs.get("generation_config") is not None:
            set_params.update(kwargs["generation_config"].to_diff_dict())
        set_params.update(kwargs)
        added = {k: v for k, v in _PIPELINE_DEFAULTS.items() if k not in set_params
                 and not (k == "max_new_tokens" and "max_length" in set_params)}
        if self.tokenizer.pad_token_id is not None and "pad_token_id" not in set_params:
            added["pad_token_id"] = self.tokenizer.pad_token_id
        if not {**set_params, **added}.get("do_sample"):
            added = {k: v for k, v in added.items() if k not in _SAMPLING}
        out = {**kwargs, **added}
        if "stop_strings" in out and "tokenizer" not in out:
            out["tokenizer"] = self.tokenizer
        return out

    def _forward(self, batch: dict[str, torch.Tensor], **generate_kwargs: Any) -> dict[str, torch.Tensor]:
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        kwargs = self._generate_kwargs(generate_kwargs)
        width = ids.shape[1]
        if width == 0:  # an empty prompt: start from the bos token, as the reference does
            bos = getattr(getattr(self.model, "generation_config", None), "bos_token_id", None)
            bos = bos if bos is not None else getattr(self.model.config, "bos_token_id", None)
            if bos is None:
                raise InvalidInputError("the prompt is empty and the model has no bos_token_id to "
                                        "start from; pass some text")
            ids = torch.full((ids.shape[0], 1), bos, dtype=torch.long, device=ids.device)
            mask = None
        out = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        seq = out.sequences if not isinstance(out, torch.Tensor) else out
        b = ids.shape[0]
        return {"sequences": seq.reshape(b, seq.shape[0] // b, seq.shape[1]),
                "prompt_width": torch.full((b,), width, dtype=torch.long)}

    # --- postprocess ----------------------------------------------------------------------
    def postprocess(self, output: dict[str, Any], return_type: str = "full_text",
                    clean_up_tokenization_spaces: bool | None = None,
                    skip_special_tokens: bool | None = None,
                    continue_final_message: bool | None = None) -> list[dict[str, Any]]:
        prompt = output["prompt"]
        width = int(output["prompt_width"])
        skip = True if skip_special_tokens is None else skip_special_tokens
        records = []
        for seq in output["sequences"].tolist():
            if return_type == "tensors":
                records.append({"generated_token_ids": seq})
                continue
            text = self.tokenizer.decode(seq[width:], skip_special_tokens=skip,
                                         clean_up_tokenization_spaces=clean_up_tokenization_spaces)
            if return_type == "full_text":
                if isinstance(prompt, str):
                    text = prompt + text
                else:
                    cont = continue_final_message
                    if cont is None:
                        cont = prompt[-1].get("role") == "assistant"
                    if cont:  # the reply continues the last (assistant) message
                        last = dict(prompt[-1])
                        last["content"] = last["content"] + text
                        text = [*prompt[:-1], last]
                    else:
                        text = [*prompt, {"role": "assistant", "content": text}]
            records.append({"generated_text": text})
        return records
