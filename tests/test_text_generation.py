"""The text-generation pipeline against the reference's outputs, and its parameters."""

import functools
import json
from pathlib import Path

import pytest
import torch

from pretrained.errors import InvalidInputError
from pretrained.generation import TextIteratorStreamer
from pretrained.pipelines import pipeline
from pretrained.pipelines.text_generation import TextGenerationPipeline

FIX = Path(__file__).parent / "fixtures"
GOLDENS = json.loads((FIX / "goldens" / "generation" / "pipeline.json").read_text())
MODEL = FIX / "models" / GOLDENS["model"]


@functools.lru_cache(maxsize=None)
def pipe() -> TextGenerationPipeline:
    return pipeline("text-generation", model=str(MODEL))


@pytest.mark.parametrize("case", GOLDENS["cases"], ids=[c["case"] for c in GOLDENS["cases"]])
def test_pipeline_matches_reference(case):
    if case["seed"] is not None:
        torch.manual_seed(case["seed"])
    assert pipe()(case["inputs"], **case["kwargs"]) == case["output"]


def test_pipeline_class_and_padding():
    p = pipe()
    assert isinstance(p, TextGenerationPipeline) and p.task == "text-generation"
    assert p.padding_side == "left"


def test_chat_output_appends_the_assistant_message():
    chat = [{"role": "user", "content": "Hi there"}]
    out = pipe()(chat, do_sample=False, max_new_tokens=4)
    assert len(out) == 1 and out[0]["generated_text"][:-1] == chat
    reply = out[0]["generated_text"][-1]
    assert reply["role"] == "assistant" and isinstance(reply["content"], str)
    assert chat == [{"role": "user", "content": "Hi there"}]  # the input is not modified


def test_batched_equals_unbatched_and_keeps_order():
    prompts = ["a", "hello world", "the quick brown fox jumps", "hi"]
    kw = dict(do_sample=False, max_new_tokens=6)
    one = [pipe()(p, **kw) for p in prompts]
    assert pipe()(prompts, batch_size=3, **kw) == one
    assert pipe()(prompts, **kw) == one
    assert list(pipe()(iter(prompts), batch_size=2, **kw)) == one


def test_num_return_sequences_shape():
    out = pipe()(["hello", "world"], do_sample=True, num_return_sequences=3, max_new_tokens=3, seed=0)
    assert [len(o) for o in out] == [3, 3]


def test_pipeline_defaults_apply_only_where_unset(monkeypatch):
    p = pipe()
    seen = []
    real = p.model.generate

    def spy(**kwargs):
        seen.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(p.model, "generate", spy)
    p("hello")
    # generation_config.json sets max_new_tokens=8 and pad; the pipeline adds sampling at 0.7
    assert seen[-1]["do_sample"] is True and seen[-1]["temperature"] == 0.7
    assert "max_new_tokens" not in seen[-1]
    p("hello", do_sample=False)
    assert "temperature" not in seen[-1] and seen[-1]["do_sample"] is False
    p("hello", max_length=20)
    assert "max_new_tokens" not in seen[-1] and seen[-1]["max_length"] == 20


def test_init_parameters_apply_to_every_call():
    p = pipeline("text-generation", model=str(MODEL), do_sample=False, max_new_tokens=3,
                 return_full_text=False)
    out = p("hello world")
    assert out == pipe()("hello world", do_sample=False, max_new_tokens=3, return_full_text=False)
    ids = p("hello world", max_new_tokens=1, return_tensors=True)[0]["generated_token_ids"]
    assert len(ids) == len(p.tokenizer("hello world")["input_ids"]) + 1  # the call's value wins


def test_streaming_through_the_pipeline():
    p = pipe()
    streamer = TextIteratorStreamer(p.tokenizer, skip_prompt=True)
    out = p("hello world", do_sample=False, max_new_tokens=6, streamer=streamer, return_full_text=False)
    assert "".join(streamer) == out[0]["generated_text"]


@pytest.mark.parametrize("kwargs,needle", [
    ({"temprature": 0.5}, "temprature"),
    ({"do_sample": True, "top_p": 0.0}, "top_p"),
    ({"return_full_text": False, "return_tensors": True}, "return_full_text"),
])
def test_bad_parameters(kwargs, needle):
    with pytest.raises(InvalidInputError, match=needle):
        pipe()("hello", max_new_tokens=2, **kwargs)


@pytest.mark.parametrize("bad", [3, [1, 2], {"text": "x"}, [{"role": "user", "content": "x"}, "oops"]])
def test_bad_inputs(bad):
    with pytest.raises(InvalidInputError):
        pipe()(bad, max_new_tokens=2)


@pytest.mark.parametrize("how", ["file", "model_kwargs"])
def test_a_gguf_file_runs_with_its_own_tokenizer(how):
    """model= a .gguf file, or its folder with model_kwargs={'gguf_file': ...}: the model and the
    tokenizer both come from the file (the tokenizer used to fail: the folder has none)."""
    from pretrained import AutoModelForCausalLM, AutoTokenizer

    folder = FIX / "models" / "gguf-tiny"
    if how == "file":
        gen = pipeline("text-generation", model=folder / "llama-bpe.gguf")
    else:
        gen = pipeline("text-generation", model=folder, model_kwargs={"gguf_file": "llama-bpe.gguf"})
    tok = AutoTokenizer.from_pretrained(folder, gguf_file="llama-bpe.gguf")
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file="llama-bpe.gguf")
    ids = tok("hello world", return_tensors="pt")
    want = model.generate(**ids, max_new_tokens=4, do_sample=False)[0, ids["input_ids"].shape[1]:]
    got = gen("hello world", max_new_tokens=4, do_sample=False, return_full_text=False)
    assert got[0]["generated_text"] == tok.decode(want, skip_special_tokens=True)


@pytest.mark.slow
def test_text_generation_has_the_fetched_smollm2_as_its_default(caplog):
    """pipeline('text-generation') with no model: the real SmolLM2 the README's command fetches,
    said in one line."""
    import logging

    with caplog.at_level(logging.WARNING, logger="pretrained.pipelines"):
        gen = pipeline("text-generation")
    assert any("SmolLM2" in r.getMessage() for r in caplog.records)
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    out = gen(chat, max_new_tokens=12, do_sample=False)
    assert out[0]["generated_text"][-1]["content"] == "The capital of France is Paris."
