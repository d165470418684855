"""Tokenizers: the chat-template sandbox (escapes blocked, resources limited), template errors
and helpers, and the docstring examples.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pretrained.errors import InvalidInputError, TemplateError
from pretrained.tokenization import AutoTokenizer
from tests.test_tokenization import FIX, MSGS, fresh, load


# --- chat templates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ messages.__class__.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os.system('touch /tmp/pretrained-pwned') }}",
        "{{ self.__init__.__globals__['__builtins__']['open']('/etc/passwd').read() }}",
        "{{ raise_exception.__globals__ }}",
        "{% set ns = namespace(_secret=1) %}{{ ns }}",
        "{{ ''['__class__'] }}",
    ],
)
def test_sandbox_blocks_escapes(template):
    before = Path("/tmp/pretrained-pwned").exists()
    with pytest.raises(TemplateError):
        load("gpt2_bpe").apply_chat_template(MSGS, chat_template=template, tokenize=False)
    assert Path("/tmp/pretrained-pwned").exists() == before


@pytest.mark.parametrize(
    "template",
    [
        "{% for i in range(10**9) %}x{% endfor %}",
        "{{ 'a' * 10**9 }}",
        "{{ [1] * 100000000 }}",
        "{{ 2 ** 100000000 }}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        # a value doubled 60 times through namespace with ~ or + (memory ran out before)
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
        "{% set ns = namespace(s=[1]) %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
        # loops over long text nested in each other (spun for hours before)
        "{% set t = 'x' * 100000 %}{% for a in t %}{% for b in t %}{% endfor %}{% endfor %}",
    ],
)
def test_sandbox_limits_resources(template):
    start = time.perf_counter()
    with pytest.raises(TemplateError):
        load("gpt2_bpe").apply_chat_template(MSGS, chat_template=template, tokenize=False)
    assert time.perf_counter() - start < 2.0


def test_template_errors_and_missing_template():
    tok = load("gpt2_bpe")
    with pytest.raises(TemplateError, match="no chat template"):
        load("bert_wordpiece").apply_chat_template(MSGS)
    with pytest.raises(TemplateError, match="custom failure"):
        tok.apply_chat_template(MSGS, chat_template="{{ raise_exception('custom failure') }}")
    with pytest.raises(TemplateError, match="syntax"):
        tok.apply_chat_template(MSGS, chat_template="{% for %}")
    with pytest.raises(TemplateError):
        tok.apply_chat_template(MSGS, add_generation_prompt=True, continue_final_message=True)
    with pytest.raises(InvalidInputError):
        tok.apply_chat_template([])


def test_template_helpers():
    tok = load("gpt2_bpe")
    t = (
        "{{ messages[0].content | tojson }}|{{ {'b': 1, 'a': '<é>'} | tojson(sort_keys=True) }}|"
        "{{ strftime_now('%Y') | length }}|{{ bos_token }}"
    )
    assert (
        tok.apply_chat_template(MSGS, chat_template=t, tokenize=False)
        == '"hi"|{"a": "<é>", "b": 1}|4|<|endoftext|>'
    )
    t2 = (
        "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
        "{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}{{ ns.n }}{{ extra }}"
    )
    assert tok.apply_chat_template(MSGS * 2, chat_template=t2, tokenize=False, extra="!") == "hihi2!"
    assert (
        tok.apply_chat_template(
            [{"role": "user", "content": "x", "tool_calls": None}],
            chat_template="{{ messages[0] | length }}",
            tokenize=False,
        )
        == "2"
    )


def test_chat_template_module_doctest():
    import doctest

    import pretrained.tokenization.chat_template as module

    result = doctest.testmod(module)
    assert result.attempted >= 1 and result.failed == 0


def test_tokenization_docstring_examples(monkeypatch):
    import doctest

    import pretrained.tokenization as module

    monkeypatch.chdir(FIX.parent.parent.parent)  # the examples use repo-relative fixture paths
    globs = {"tok": fresh("bert_wordpiece"), "gpt": fresh("gpt2_bpe"), "AutoTokenizer": AutoTokenizer}
    result = doctest.testmod(module, extraglobs=globs, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 25 and result.failed == 0
