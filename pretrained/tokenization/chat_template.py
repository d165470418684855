"""Rendering chat templates (Jinja) in a locked-down sandbox.

Chat templates ship with checkpoints from the hub, so they are untrusted code. They are rendered with
jinja2's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` (``trim_blocks`` and ``lstrip_blocks``
on, like the reference), plus these extra limits:

* touching an unsafe attribute (``''.__class__``, ``x.__globals__``, ...) raises at once, instead of
  quietly rendering as an empty string;
* ``range()`` is capped per call (100 000 items) and per render (1 000 000 items in all), so nested
  loops cannot spin for hours;
* ``'x' * n`` / ``[..] * n`` may build at most 1 000 000 items and ``a ** b`` needs ``b <= 1000``;
* the rendered text may be at most 20 000 000 characters, and so may any one string or list built
  with ``~`` or ``+`` (a value doubled in a loop stops there, not when memory runs out);
* one render may run at most 2 000 000 lines of template code (nested loops over long text stop
  in seconds, not hours).

Nothing a template does can reach Python internals, files or the network.

Every failure, including ``raise_exception(...)`` called by the template itself, surfaces as
:class:`pretrained.errors.TemplateError`.

The template sees ``messages``, ``tools``, ``documents``, ``add_generation_prompt``, the tokenizer's
named special tokens (``bos_token``, ``eos_token``, ...) and any extra keyword arguments; globals
``raise_exception``, ``strftime_now``, ``namespace``, ``dict``; and a ``tojson`` filter that does not
HTML-escape (``tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)``).

Example::

    >>> from pretrained.tokenization.chat_template import render_chat
    >>> render_chat([[{"role": "user", "content": "hi"}]],
    ...             "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}")
    ['<user>hi']
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

from ..errors import TemplateError

__all__ = ["render_chat", "compile_template", "MAX_RANGE_TOTAL", "MAX_SEQUENCE_REPEAT", "MAX_OUTPUT_CHARS"]

MAX_RANGE_ONE = 100_000
MAX_RANGE_TOTAL = 1_000_000
MAX_SEQUENCE_REPEAT = 1_000_000
MAX_POWER_EXPONENT = 1_000
MAX_OUTPUT_CHARS = 20_000_000
MAX_VALUE_CHARS = MAX_OUTPUT_CHARS   # one string or list built by ``~`` or ``+``
MAX_STEPS = 2_000_000   # lines of template code one render may run (about a second)

_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


class _Budget:
    """Per-render counter of the items ``range()`` may still produce."""

    def __init__(self) -> None:
        self.left = MAX_RANGE_TOTAL


# The budgets of the renders in progress, one stack per thread (renders are synchronous).
_local = threading.local()


def _current_budget() -> _Budget:
    stack = getattr(_local, "stack", None)
    if not stack:
        # Rendering outside render_chat (should not happen): give a fresh budget.
        return _Budget()
    return stack[-1]


@lru_cache(maxsize=1)
def _environment():
    import jinja2
    from jinja2 import nodes
    from jinja2.exceptions import SecurityError
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class _GenerationTag(Extension):
        """Accept ``{% generation %}...{% endgeneration %}`` blocks and render their body unchanged."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body).set_lineno(lineno)

    class _Generator(jinja2.compiler.CodeGenerator):
        """``a ~ b`` through :meth:`_Env.checked_join`, so a string doubled in a loop is stopped
        at :data:`MAX_VALUE_CHARS` instead of growing until memory runs out."""

        def visit_Concat(self, node, frame):
            self.write("environment.checked_join((")
            for arg in node.nodes:
                self.visit(arg, frame)
                self.write(", ")
            self.write("))")

    class _Env(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset(["*", "**", "+"])
        code_generator_class = _Generator

        @staticmethod
        def checked_join(values) -> str:
            out = "".join(map(str, values))
            if len(out) > MAX_VALUE_CHARS:
                raise SecurityError(f"the template built a string of more than {MAX_VALUE_CHARS} "
                                    "characters")
            return out

        def unsafe_undefined(self, obj, attribute):
            raise SecurityError(
                f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
            )

        def call_binop(self, context, operator, left, right):
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                        if len(seq) * max(n, 0) > MAX_SEQUENCE_REPEAT:
                            raise SecurityError(
                                f"repeating a sequence {n} times would build more than "
                                f"{MAX_SEQUENCE_REPEAT} items"
                            )
                return left * right
            if operator == "+" and isinstance(left, (str, list, tuple)) \
                    and isinstance(right, (str, list, tuple)) and len(left) + len(right) > MAX_VALUE_CHARS:
                raise SecurityError(f"the template built a value of more than {MAX_VALUE_CHARS} items")
            if operator == "**":
                if isinstance(right, (int, float)) and abs(right) > MAX_POWER_EXPONENT:
                    raise SecurityError(f"exponent {right} is larger than {MAX_POWER_EXPONENT}")
                return left**right
            return super().call_binop(context, operator, left, right)

    def raise_exception(message: Any) -> None:
        raise jinja2.exceptions.TemplateError(str(message))

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    def strftime_now(fmt: str) -> str:
        return datetime.now().strftime(fmt)

    def budget_range(*args):
        r = range(*args)
        if len(r) > MAX_RANGE_ONE:
            raise SecurityError(f"range() of {len(r)} items is larger than the limit of {MAX_RANGE_ONE}")
        budget = _current_budget()
        budget.left -= len(r)
        if budget.left < 0:
            raise SecurityError(f"the template asked range() for more than {MAX_RANGE_TOTAL} items in all")
        return r

    class _Dict:
        """``dict(...)`` for templates, without exposing the ``dict`` type itself."""

        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

        def fromkeys(self, *args, **kwargs):
            return dict.fromkeys(*args, **kwargs)

    class _Namespace(jinja2.utils.Namespace):
        """``namespace(...)`` that refuses underscore-prefixed names."""

        def __init__(*args, **kwargs):
            self, rest = args[0], args[1:]
            attrs = dict(*rest, **kwargs)
            for name in attrs:
                _Namespace._check(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            _Namespace._check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check(name):
            if isinstance(name, str) and name.startswith("_"):
                raise SecurityError(f"a namespace cannot hold the underscore-prefixed name {name!r}")

    env = _Env(trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, "jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    env.globals["range"] = budget_range
    env.globals["dict"] = _Dict()
    env.globals["namespace"] = _Namespace
    return env


@lru_cache(maxsize=64)
def compile_template(template: str):
    """Compile ``template`` in the sandbox (cached). Raises :class:`TemplateError` on syntax errors."""
    import jinja2

    if not isinstance(template, str):
        raise TemplateError(f"a chat template must be a string, got {type(template).__name__}")
    try:
        return _environment().from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"chat template has a syntax error at line {e.lineno}: {e.message}") from None
    except jinja2.TemplateError as e:
        raise TemplateError(f"chat template could not be compiled: {e}") from None


def plain_data(value: Any) -> Any:
    """Rebuild ``value`` from plain JSON-like types so templates never see live objects.

    Strings, numbers, booleans and ``None`` pass; subclasses of them are reduced to the base type;
    mappings, lists and tuples are copied recursively; anything else becomes a placeholder
    ``"<TypeName>"``.
    """
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {plain_data(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_data(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain_data(v) for v in value)
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        try:
            return plain_data(item())
        except Exception:
            pass
    return f"<{type(value).__name__}>"


def _render_one(compiled, context: dict) -> str:
    parts: list[str] = []
    size = 0
    with _step_budget():
        for chunk in compiled.generate(**context):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateError(f"the chat template produced more than {MAX_OUTPUT_CHARS} characters")
            parts.append(chunk)
    return "".join(parts)


class _step_budget:
    """Count the lines of template code a render runs (a trace function on the template's own
    frames only, so library code runs untraced) and stop it past :data:`MAX_STEPS`: loops over
    long strings nested in each other would otherwise spin for hours. The thread's previous
    trace function (a debugger, coverage) is put back afterwards."""

    def __enter__(self):
        import sys

        self.steps, self.previous = 0, sys.gettrace()
        sys.settrace(self._call)
        return self

    def __exit__(self, *exc) -> None:
        import sys

        sys.settrace(self.previous)

    def _call(self, frame, event, arg):
        return self._line if frame.f_code.co_filename == "<template>" else None

    def _line(self, frame, event, arg):
        if event == "line":
            self.steps += 1
            if self.steps > MAX_STEPS:
                raise TemplateError(f"the chat template ran more than {MAX_STEPS} steps; it loops "
                                    "over too much (nested loops over long text?)")
        return self._line


def render_chat(
    conversations: list[list[dict]],
    template: str,
    *,
    add_generation_prompt: bool = False,
    continue_final_message: bool | str = False,
    tools: list[dict] | None = None,
    documents: list[dict] | None = None,
    **template_kwargs: Any,
) -> list[str]:
    """Render each conversation with ``template``; returns one string per conversation.

    ``continue_final_message`` (``True`` or the name of the field to continue) leaves the last
    message open so a model continues it, like the reference does.
    """
    import jinja2

    if continue_final_message and add_generation_prompt:
        raise TemplateError(
            "continue_final_message and add_generation_prompt cannot both be set: the first continues the "
            "last message, the second starts a new assistant message"
        )
    compiled = compile_template(template)
    if tools is not None:
        for tool in tools:
            if not isinstance(tool, Mapping):
                raise TemplateError(
                    f"tools must be JSON-schema dicts, got {type(tool).__name__} (callables are not converted)"
                )
    if documents is not None:
        for doc in documents:
            if not isinstance(doc, Mapping):
                raise TemplateError("documents must be a list of dicts, e.g. {'title': ..., 'text': ...}")
    tools_data = plain_data(tools)
    documents_data = plain_data(documents)
    extra = plain_data(template_kwargs)

    rendered: list[str] = []
    for chat in conversations:
        chat = plain_data(chat)
        for message in chat:
            if not isinstance(message, dict):
                raise TemplateError(f"chat messages must be dicts, got {message!r}")
        field = None
        final_text = None
        if continue_final_message:
            if not chat:
                raise TemplateError("continue_final_message is set but the conversation is empty")
            field = continue_final_message if isinstance(continue_final_message, str) else "content"
            final_text = chat[-1].get(field)
            if not isinstance(final_text, str):
                raise TemplateError(
                    f"continue_final_message is set but the final message has no text {field!r}"
                )
            if field not in template:
                raise TemplateError(f"continue_final_message: the chat template never reads {field!r}")
            chat[-1][field] = final_text + _CONTINUE_TAG
        context = {
            **extra,
            "messages": chat,
            "tools": tools_data,
            "documents": documents_data,
            "add_generation_prompt": add_generation_prompt,
        }
        stack = getattr(_local, "stack", None)
        if stack is None:
            stack = _local.stack = []
        stack.append(_Budget())
        try:
            text = _render_one(compiled, context)
        except TemplateError:
            raise
        except jinja2.exceptions.SecurityError as e:
            raise TemplateError(f"chat template tried something the sandbox forbids: {e}") from None
        except jinja2.exceptions.TemplateError as e:
            raise TemplateError(f"chat template failed: {e}") from None
        except RecursionError:
            raise TemplateError("chat template recursed too deeply") from None
        except (MemoryError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:
            raise TemplateError(f"chat template failed: {type(e).__name__}: {e}") from None
        finally:
            stack.pop()
        if continue_final_message:
            tag = _CONTINUE_TAG.strip()
            if final_text.strip() not in text or tag not in text:
                raise TemplateError(
                    "continue_final_message is set but the final message does not appear in the rendered chat; "
                    "the template drops or rewrites part of it"
                )
            at = text.rindex(tag)
            if text[at : at + len(_CONTINUE_TAG)] == _CONTINUE_TAG:
                text = text[:at]
            else:
                text = text[:at].rstrip()
        rendered.append(text)
    return rendered
