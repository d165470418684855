"""Chat templates: choosing a tokenizer's template and rendering chats with it (in the sandbox of
:mod:`pretrained.tokenization.chat_template`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidInputError, TemplateError


class ChatTemplateMixin:
    """Chat-template methods of :class:`~pretrained.tokenization.Tokenizer`."""

    def get_chat_template(self, chat_template: str | None = None, tools: list | None = None) -> str:
        """The template string to use (``chat_template`` may be a template or a template's name)."""
        if isinstance(self.chat_template, dict):
            templates = self.chat_template
            if chat_template is not None and chat_template in templates:
                return templates[chat_template]
            if chat_template is None:
                if tools is not None and "tool_use" in templates:
                    return templates["tool_use"]
                if "default" in templates:
                    return templates["default"]
                raise TemplateError(
                    f"this tokenizer has several chat templates and no 'default'; pass chat_template= one of "
                    f"{sorted(templates)}"
                )
            return chat_template
        if chat_template is not None:
            return chat_template
        if self.chat_template is None:
            raise TemplateError(
                "this tokenizer has no chat template (tokenizer_config.json has no 'chat_template' and there is "
                "no chat_template.jinja): pass chat_template='...' or set tok.chat_template"
            )
        return self.chat_template

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]] | Sequence[Sequence[Mapping[str, Any]]],
        *,
        chat_template: str | None = None,
        add_generation_prompt: bool = False,
        tokenize: bool = True,
        return_tensors: str | None = None,
        return_dict: bool = True,
        tools: list[dict] | None = None,
        documents: list[dict] | None = None,
        continue_final_message: bool | str = False,
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        **template_kwargs: Any,
    ) -> Any:
        """Render a chat (list of ``{"role", "content"}`` dicts, or a batch of chats) with the
        tokenizer's Jinja chat template, in a sandbox.

        With ``tokenize=False`` returns the text; otherwise, like the reference, a
        :class:`BatchEncoding` (``return_dict=True``, the default) or just the ids
        (``return_dict=False``). The rendered text is tokenized without adding special tokens (the
        template writes them). Template errors and sandbox violations raise :class:`TemplateError`.

        Example::

            >>> msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
            >>> print(gpt.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
            <|im_start|>system
            Be brief.<|im_end|>
            <|im_start|>user
            Hi!<|im_end|>
            <|im_start|>assistant
            <BLANKLINE>
            >>> ids = gpt.apply_chat_template(msgs, add_generation_prompt=True, return_dict=False)
            >>> gpt.decode(ids) == gpt.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            True
        """
        from .chat_template import render_chat

        template = self.get_chat_template(chat_template, tools)
        if not isinstance(messages, (list, tuple)) or len(messages) == 0:
            raise InvalidInputError(
                "messages must be a non-empty list of {'role': ..., 'content': ...} dicts"
            )
        first = messages[0]
        if isinstance(first, (list, tuple)) or hasattr(first, "messages"):
            conversations = [getattr(c, "messages", c) for c in messages]
            is_batched = True
        else:
            conversations = [messages]
            is_batched = False
        normalized = []
        for chat in conversations:
            chat_out = []
            for m in chat:
                if not isinstance(m, Mapping):
                    raise InvalidInputError(f"each chat message must be a dict, got {type(m).__name__}")
                chat_out.append({k: v for k, v in m.items() if v is not None})
            normalized.append(chat_out)
        context = {**self.special_tokens_map, **template_kwargs}
        rendered = render_chat(
            normalized,
            template,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message,
            tools=tools,
            documents=documents,
            **context,
        )
        text = rendered if is_batched else rendered[0]
        if not tokenize:
            return text
        out = self(
            text,
            add_special_tokens=False,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            return_tensors=return_tensors,
        )
        return out if return_dict else out["input_ids"]
