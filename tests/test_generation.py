"""generate(): token-for-token parity with the reference on every tiny causal LM, sampling
reproducibility and supports, stopping, the generation config, and validation."""

import functools
import json
import logging
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pretrained import AutoModelForCausalLM
from pretrained.errors import InvalidInputError
from pretrained.generation import GenerationConfig, LogitsProcessor, StoppingCriteria, generate
from pretrained.models.gpt2 import GPT2Config, GPT2LMHeadModel
from pretrained.tokenization import AutoTokenizer

FIX = Path(__file__).parent / "fixtures"
GOLDENS = FIX / "goldens" / "generation"
GEN = json.loads((GOLDENS / "generate.json").read_text())
TENSORS = load_file(str(GOLDENS / "generate.safetensors"))
CASES = [(m, c["case"]) for m, cases in GEN["models"].items() for c in cases]
CHAT = "gpt2-tiny-chat"


@functools.lru_cache(maxsize=None)
def load(name: str):
    return AutoModelForCausalLM.from_pretrained(FIX / "models" / name)


def _case(model: str, case: str) -> dict:
    return next(c for c in GEN["models"][model] if c["case"] == case)


def _inputs(c: dict) -> dict:
    return {"input_ids": torch.tensor(c["input_ids"]), "attention_mask": torch.tensor(c["attention_mask"])}


# --- parity with the reference ---------------------------------------------------------------
def test_goldens_cover_every_architecture():
    types = {json.loads((FIX / "models" / m / "config.json").read_text())["model_type"] for m in GEN["models"]}
    assert {"gpt2", "llama", "mistral", "qwen2", "qwen3", "gpt_neox"} <= types


@pytest.mark.parametrize("model_name,case", CASES, ids=[f"{m}-{c}" for m, c in CASES])
def test_generate_matches_reference(model_name, case):
    c = _case(model_name, case)
    model = load(model_name)
    if c["seed"] is not None:
        torch.manual_seed(c["seed"])  # sampling draws from the global generator, like the reference
    out = model.generate(**_inputs(c), **c["kwargs"])
    if not c["kwargs"].get("return_dict_in_generate"):
        assert out.tolist() == c["sequences"]
        return
    assert out.sequences.tolist() == c["sequences"]
    key = f"{model_name}/{case}"
    for field in ("scores", "logits"):
        if f"{key}/{field}" in TENSORS:
            got = torch.stack(getattr(out, field)[:3], 1)
            want = TENSORS[f"{key}/{field}"]
            assert torch.equal(torch.isinf(got), torch.isinf(want))
            fin = torch.isfinite(want)
            torch.testing.assert_close(got[fin], want[fin], atol=1e-4, rtol=0)
    if f"{key}/sequences_scores" in TENSORS:
        torch.testing.assert_close(out.sequences_scores, TENSORS[f"{key}/sequences_scores"], atol=1e-4, rtol=0)
    if "beam_indices" in c:
        assert out.beam_indices.tolist() == c["beam_indices"]


def test_goldens_stop_early_and_pad():
    # The eos cases must really stop rows part-way (else they test nothing).
    c = _case(CHAT, "greedy_two_eos")
    assert any(row[-1] == 0 for row in c["sequences"])  # pad_token_id 0 after eos
    assert len(c["sequences"][0]) < len(c["input_ids"][0]) + c["kwargs"]["max_new_tokens"] + 1


# --- paths that must agree with each other -----------------------------------------------------
@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-gqa", "qwen3", "gpt_neox-parallel"])
def test_left_padded_batch_equals_one_by_one(name):
    c = _case(name, "greedy_batch")
    model = load(name)
    batch = model.generate(**_inputs(c), max_new_tokens=8, do_sample=False, eos_token_id=None)
    t = len(c["input_ids"][0])
    for row, mask in zip(range(len(c["input_ids"])), c["attention_mask"]):
        start = mask.index(1)
        alone = model.generate(torch.tensor([c["input_ids"][row][start:]]), max_new_tokens=8,
                               do_sample=False, eos_token_id=None)
        assert batch[row, t:].tolist() == alone[0, t - start:].tolist()


@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-gqa"])
def test_cache_no_cache_and_static_cache_agree(name):
    c = _case(name, "greedy_batch")
    model = load(name)
    kw = dict(max_new_tokens=10, do_sample=False)
    ref = model.generate(**_inputs(c), **kw)
    assert torch.equal(ref, model.generate(**_inputs(c), use_cache=False, **kw))
    assert torch.equal(ref, model.generate(**_inputs(c), cache_implementation="static", **kw))
    beams = model.generate(**_inputs(c), num_beams=3, **kw)
    assert torch.equal(beams, model.generate(**_inputs(c), num_beams=3, use_cache=False, **kw))


class _NoCacheLM(torch.nn.Module):
    """A model whose forward has no past_key_values: generate() must re-run the sequence."""

    forward_inputs = frozenset({"input_ids", "attention_mask", "position_ids"})

    def __init__(self, inner):
        super().__init__()
        self.inner, self.config, self.generation_config = inner, inner.config, inner.generation_config
        self.calls = []

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        self.calls.append(input_ids.shape[1])
        return self.inner(input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)


def test_model_without_cache_interface():
    c = _case("gpt2-tiny", "greedy_batch")
    wrapped = _NoCacheLM(load("gpt2-tiny"))
    out = generate(wrapped, **_inputs(c), max_new_tokens=5, do_sample=False, eos_token_id=None)
    assert out.tolist() == [r[:len(c["input_ids"][0]) + 5] for r in c["sequences"]]
    t = len(c["input_ids"][0])
    assert wrapped.calls == [t, t + 1, t + 2, t + 3, t + 4]  # the whole sequence each step


def _model_classes():
    import importlib
    import pkgutil

    import pretrained.models
    from pretrained.modeling import PreTrainedModel

    seen = {}
    for info in pkgutil.iter_modules(pretrained.models.__path__):
        module = importlib.import_module(f"pretrained.models.{info.name}")
        for obj in vars(module).values():
            if (isinstance(obj, type) and issubclass(obj, PreTrainedModel) and obj.__module__ == module.__name__
                    and obj.forward is not torch.nn.Module.forward):  # not the abstract bases
                seen[obj.__qualname__] = obj
    return sorted(seen.values(), key=lambda c: c.__qualname__)


def test_forward_inputs_are_what_forward_takes():
    """generate() reads a model's declared forward_inputs, not its signature: every declaration is
    true, and the causal LMs declare every argument they take."""
    import inspect

    from pretrained.peft.prefix import PrefixTuningModel

    classes = _model_classes()
    causal = [c for c in classes if c.__name__.endswith(("ForCausalLM", "LMHeadModel"))]
    assert {c.__name__ for c in causal} >= {"GPT2LMHeadModel", "LlamaForCausalLM", "MistralForCausalLM",
                                           "Qwen2ForCausalLM", "Qwen3ForCausalLM", "GPTNeoXForCausalLM"}
    for cls in [*classes, PrefixTuningModel]:
        takes = set(inspect.signature(cls.forward).parameters) - {"self"}
        assert cls.forward_inputs <= takes, cls.__name__
    for cls in [*causal, PrefixTuningModel]:
        takes = set(inspect.signature(cls.forward).parameters) - {"self"}
        assert cls.forward_inputs == takes, cls.__name__


def test_generate_uses_the_declared_inputs_not_the_signature():
    model = load("gpt2-tiny")
    ids = torch.tensor([[1, 2, 3]])
    ref = model.generate(ids, max_new_tokens=3, do_sample=False, eos_token_id=None)
    calls = []
    inner = model.forward

    def forward(input_ids, **kw):  # a wrapper whose signature hides the cache arguments
        calls.append((input_ids.shape[1], sorted(kw)))
        return inner(input_ids, **kw)

    model.forward = forward
    try:
        out = model.generate(ids, max_new_tokens=3, do_sample=False, eos_token_id=None)
    finally:
        del model.forward
    assert torch.equal(out, ref)
    assert [n for n, _ in calls] == [3, 1, 1]  # the cache is used: one token per step
    assert calls[0][1] == ["logits_to_keep", "past_key_values", "position_ids", "use_cache"]


def test_cached_decode_feeds_one_token_and_keeps_one_logit():
    model = load("llama-gqa")
    seen = []
    hook = model.register_forward_hook(lambda m, a, kw, out: seen.append(
        (kw["input_ids"].shape[1] if "input_ids" in kw else a[0].shape[1], out.logits.shape[1])),
        with_kwargs=True)
    try:
        model.generate(torch.tensor([[5, 6, 7, 8]]), max_new_tokens=4, do_sample=False, eos_token_id=None)
    finally:
        hook.remove()
    assert seen == [(4, 1), (1, 1), (1, 1), (1, 1)]


# --- sampling ----------------------------------------------------------------------------------
def test_sampling_with_a_seed_is_reproducible():
    model = load(CHAT)
    ids = torch.tensor([[5, 9, 40, 7]])
    kw = dict(max_new_tokens=12, do_sample=True, top_k=0)
    a = model.generate(ids, seed=123, **kw)
    assert torch.equal(a, model.generate(ids, seed=123, **kw))
    assert not torch.equal(a, model.generate(ids, seed=124, **kw))
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(model.generate(ids, generator=g1, **kw), model.generate(ids, generator=g2, **kw))
    torch.manual_seed(5)
    b = model.generate(ids, **kw)
    torch.manual_seed(5)
    assert torch.equal(b, model.generate(ids, **kw))


def _sampled_runs(**kw):
    model = load(CHAT)
    ids = torch.tensor([[5, 9, 40, 7], [11, 3, 8, 90]])
    for seed in range(6):
        out = model.generate(ids, max_new_tokens=6, do_sample=True, seed=seed, return_dict_in_generate=True,
                             output_scores=True, output_logits=True, eos_token_id=None, **kw)
        for step, (scores, logits) in enumerate(zip(out.scores, out.logits)):
            yield out.sequences[:, 4 + step], scores, logits


def test_sampling_respects_top_k():
    for tokens, scores, logits in _sampled_runs(top_k=3):
        kept = torch.isfinite(scores)
        assert (kept.sum(-1) == 3).all()
        assert torch.equal(kept, torch.zeros_like(kept).scatter(1, logits.topk(3).indices, True))
        assert kept.gather(1, tokens[:, None]).all()


def test_sampling_respects_top_p():
    p = 0.6
    for tokens, scores, logits in _sampled_runs(top_p=p, top_k=0):
        kept = torch.isfinite(scores)
        probs = logits.softmax(-1)
        for row in range(probs.shape[0]):
            mass = probs[row][kept[row]]
            assert mass.sum() >= p - 1e-5  # enough mass kept
            assert mass.sum() - mass.min() < p + 1e-5  # and no token more than needed
            assert probs[row][~kept[row]].max() <= mass.min() + 1e-7  # the most likely ones
        assert kept.gather(1, tokens[:, None]).all()


def test_sampling_respects_min_p_and_temperature():
    for tokens, scores, logits in _sampled_runs(min_p=0.2, temperature=0.5, top_k=0):
        probs = (logits / 0.5).softmax(-1)
        kept = torch.isfinite(scores)
        assert torch.equal(kept, probs >= 0.2 * probs.max(-1, keepdim=True).values)
        assert kept.gather(1, tokens[:, None]).all()


def test_very_low_temperature_sampling_is_greedy():
    model = load(CHAT)
    ids = torch.tensor([[5, 9, 40, 7]])
    greedy = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert torch.equal(greedy, model.generate(ids, max_new_tokens=8, do_sample=True, temperature=1e-4, seed=0))


# --- stopping -----------------------------------------------------------------------------------
@pytest.mark.parametrize("prompt", ["hello world", "the quick brown fox", "a"])
def test_stop_strings_stop_at_the_first_token_that_completes_them(prompt):
    model, tok = load(CHAT), AutoTokenizer.from_pretrained(FIX / "models" / CHAT)
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    t = ids.shape[1]
    full = model.generate(ids, max_new_tokens=10, do_sample=False, eos_token_id=None)[0, t:].tolist()
    text = tok.decode(full)
    stop = next(text[i:i + 2] for i in range(2, len(text) - 1)
                if all(c.isascii() and c.isprintable() for c in text[i:i + 2]) and text[i:i + 2].strip())
    expected = next(n for n in range(1, len(full) + 1) if stop in tok.decode(full[:n]))
    out = model.generate(ids, max_new_tokens=10, do_sample=False, eos_token_id=None,
                         stop_strings=["never-there", stop], tokenizer=tok)
    assert out[0, t:].tolist() == full[:expected]
    assert expected < len(full) or stop in text


def test_stop_string_in_the_prompt_does_not_stop():
    model, tok = load(CHAT), AutoTokenizer.from_pretrained(FIX / "models" / CHAT)
    ids = tok("hello world", return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=5, do_sample=False, eos_token_id=None,
                         stop_strings="hello", tokenizer=tok)
    assert out.shape[1] == ids.shape[1] + 5


def test_custom_stopping_criteria_and_processor():
    model = load("gpt2-tiny")

    class StopAfter3(StoppingCriteria):
        def __call__(self, input_ids, scores):
            return torch.full((input_ids.shape[0],), input_ids.shape[1] >= 6, dtype=torch.bool)

    class Force7(LogitsProcessor):
        def __call__(self, input_ids, scores):
            out = torch.full_like(scores, -math.inf)
            out[:, 7] = 0
            return out

    out = model.generate(torch.tensor([[3, 4, 5]]), max_new_tokens=10, do_sample=False,
                         stopping_criteria=[StopAfter3()], logits_processor=[Force7()])
    assert out.tolist() == [[3, 4, 5, 7, 7, 7]]


def test_return_dict_shapes():
    model = load("gpt2-tiny")
    out = model.generate(torch.tensor([[3, 4, 5], [6, 7, 8]]), max_new_tokens=4, do_sample=False,
                         eos_token_id=None, return_dict_in_generate=True, output_scores=True)
    assert out.sequences.shape == (2, 7) and len(out.scores) == 4 and out.scores[0].shape == (2, 128)
    assert out["sequences"] is out.sequences and out.past_key_values is out.cache
    beams = model.generate(torch.tensor([[3, 4, 5]]), max_new_tokens=4, num_beams=3, num_return_sequences=2,
                           return_dict_in_generate=True, output_scores=True, eos_token_id=None)
    assert beams.sequences.shape == (2, 7) and beams.sequences_scores.shape == (2,)
    assert beams.beam_indices.shape == (2, 4)


# --- generation config ----------------------------------------------------------------------------
def test_generation_config_loaded_and_overridable(tmp_path):
    model = load(CHAT)
    assert model.generation_config.max_new_tokens == 8 and model.generation_config.eos_token_id == 501
    ids = torch.tensor([[5, 9, 40, 7]])
    assert model.generate(ids, do_sample=False, eos_token_id=None).shape[1] == 4 + 8  # from the file
    assert model.generate(ids, do_sample=False, eos_token_id=None, max_new_tokens=3).shape[1] == 7
    cfg = GenerationConfig(max_new_tokens=2, do_sample=False, eos_token_id=None)
    assert model.generate(ids, generation_config=cfg).shape[1] == 6
    cfg.save_pretrained(tmp_path)
    assert GenerationConfig.from_pretrained(tmp_path) == cfg


def test_default_length_without_generation_config():
    model = GPT2LMHeadModel.from_config(GPT2Config(vocab_size=40, n_embd=16, n_layer=1, n_head=2,
                                                   n_positions=30, bos_token_id=1, eos_token_id=39))
    out = model.generate(torch.tensor([[1, 2, 3]]), do_sample=False, eos_token_id=None)
    assert out.shape[1] == 3 + 20  # the reference's default: 20 new tokens
    long = torch.tensor([list(range(1, 16))])
    assert model.generate(long, do_sample=False, eos_token_id=None).shape[1] == 30  # clamped


def _write_model(tmp_path, gen_cfg: dict):
    folder = tmp_path / "m"
    GPT2LMHeadModel.from_config(GPT2Config(vocab_size=40, n_embd=16, n_layer=1, n_head=2, eos_token_id=39,
                                           n_positions=30)).save_pretrained(folder)
    (folder / "generation_config.json").write_text(json.dumps(gen_cfg))
    return folder


def test_invalid_generation_config_file_loads_and_errors_only_when_used(tmp_path, caplog):
    folder = _write_model(tmp_path, {"top_p": 2, "do_sample": False, "max_new_tokens": 3})
    with caplog.at_level(logging.WARNING, logger="pretrained"):
        model = AutoModelForCausalLM.from_pretrained(folder)
    assert "top_p" in caplog.text
    assert model.generate(torch.tensor([[1, 2]])).shape == (1, 5)  # greedy: top_p unused
    with pytest.raises(InvalidInputError, match=r"top_p=2 \(from the model's generation_config.json\)"):
        model.generate(torch.tensor([[1, 2]]), do_sample=True)


def test_unreadable_generation_config_file_falls_back(tmp_path, caplog):
    folder = _write_model(tmp_path, {})
    (folder / "generation_config.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="pretrained"):
        model = AutoModelForCausalLM.from_pretrained(folder)
    assert "generation_config.json" in caplog.text
    assert model.generation_config.eos_token_id == model.config.eos_token_id


def test_no_effect_parameter_warns_once(caplog):
    model = load("gpt2-tiny")
    ids = torch.tensor([[3, 4]])
    with caplog.at_level(logging.WARNING, logger="pretrained"):
        model.generate(ids, max_new_tokens=2, temperature=0.31, do_sample=False)
        model.generate(ids, max_new_tokens=2, temperature=0.31, do_sample=False)
        model.generate(ids, max_new_tokens=2, length_penalty=0.37)
    assert caplog.text.count("temperature=0.31 has no effect") == 1
    assert "length_penalty=0.37 only applies to beam search" in caplog.text


# --- validation: every error before the first forward pass -------------------------------------------
BAD = [
    ({"do_sample": True, "temperature": 0.0}, "temperature"),
    ({"do_sample": True, "temperature": -1.0}, "temperature"),
    ({"do_sample": True, "temperature": float("nan")}, "temperature"),
    ({"do_sample": True, "temperature": float("inf")}, "temperature"),
    ({"do_sample": True, "top_p": 0.0}, "top_p"),
    ({"do_sample": True, "top_p": 1.5}, "top_p"),
    ({"top_p": 1.5}, "top_p"),  # set by the caller: an error even when greedy
    ({"do_sample": True, "top_k": -1}, "top_k"),
    ({"do_sample": True, "min_p": 1.5}, "min_p"),
    ({"repetition_penalty": 0.0}, "repetition_penalty"),
    ({"repetition_penalty": float("nan")}, "repetition_penalty"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_new_tokens": -3}, "max_new_tokens"),
    ({"num_beams": 0}, "num_beams"),
    ({"num_beams": 2, "num_return_sequences": 3}, "num_return_sequences"),
    ({"num_return_sequences": 2, "do_sample": False}, "num_return_sequences"),
    ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size"),
    ({"early_stopping": "sometimes", "num_beams": 2}, "early_stopping"),
    ({"eos_token_id": 500}, "eos_token_id"),
    ({"eos_token_id": [2, -1]}, "eos_token_id"),
    ({"bad_words_ids": [[1], []]}, "bad_words_ids"),
    ({"bad_words_ids": [[999]]}, "bad_words_ids"),
    ({"stop_strings": ""}, "stop_strings"),
    ({"stop_strings": ["ok", ""]}, "stop_strings"),
    ({"stop_strings": ["x"] * 100}, "stop_strings"),
    ({"stop_strings": ["x"]}, "tokenizer"),
    ({"max_new_tokens": 62}, "maximum context length is 64"),
    ({"max_length": 2}, "max_length"),
    ({"typical_p": 0.5, "do_sample": True}, "typical_p"),
    ({"tempreature": 0.5}, "tempreature"),
    ({"min_length": 10, "max_length": 6}, "min_length asks for at least 10"),
    ({"min_new_tokens": 5, "max_new_tokens": 2}, "no output can satisfy both"),
]


@pytest.mark.parametrize("kwargs,needle", BAD, ids=[n + "-" + str(i) for i, (_, n) in enumerate(BAD)])
def test_invalid_parameters_raise_before_forward(kwargs, needle):
    model = load("gpt2-tiny")
    calls = []
    hook = model.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(InvalidInputError) as err:
            model.generate(torch.tensor([[3, 4, 5]]), **kwargs)
    finally:
        hook.remove()
    assert needle in str(err.value)
    assert calls == []


def test_context_error_message():
    with pytest.raises(InvalidInputError, match=r"maximum context length is 64 tokens, however you requested "
                                                r"66 tokens \(6 in the prompt \+ 60 new\)"):
        load("gpt2-tiny").generate(torch.tensor([[3] * 6]), max_new_tokens=60)


@pytest.mark.parametrize("inputs,needle", [
    ({"input_ids": torch.zeros(1, 0, dtype=torch.long)}, "empty"),
    ({"input_ids": torch.tensor([[3, 128]])}, "128"),
    ({"input_ids": torch.tensor([[3, -1]])}, "-1"),
    ({"input_ids": torch.tensor([[0.5, 1.0]])}, "integer"),
    ({"input_ids": [[1, 2]]}, "torch.Tensor"),
    ({"input_ids": torch.tensor([[3, 4]]), "attention_mask": torch.ones(1, 3)}, "shape"),
    ({"input_ids": torch.tensor([[3, 4]]), "attention_mask": torch.tensor([[0, 0]])}, "all padding"),
    ({"input_ids": torch.tensor([[3, 4]]), "attention_mask": torch.tensor([[2, 1]])}, "only 0"),
    ({}, "input_ids"),
])
def test_invalid_inputs(inputs, needle):
    with pytest.raises(InvalidInputError, match=needle):
        load("gpt2-tiny").generate(**inputs, max_new_tokens=2)


def test_dynamic_rope_model_may_go_past_its_position_table():
    model = load("llama-dynamic")
    assert model.config.max_position_embeddings == 8
    assert model.generate(torch.tensor([[3, 4, 5]]), max_new_tokens=10, do_sample=False,
                          eos_token_id=None).shape == (1, 13)


def test_generation_config_object():
    cfg = GenerationConfig(max_new_tokens=5, top_p=0.9, custom_key="kept")
    assert cfg.temperature is None and cfg.custom_key == "kept"
    assert cfg.to_diff_dict() == {"max_new_tokens": 5, "top_p": 0.9, "custom_key": "kept"}
    assert cfg.update(top_k=3, nonsense=1) == {"nonsense": 1} and cfg.top_k == 3
    with pytest.raises(InvalidInputError, match="top_p"):
        GenerationConfig(top_p=0).validate()
    from_model = GenerationConfig.from_model_config(load("gpt2-small").config)
    assert (from_model.eos_token_id, from_model.pad_token_id) == (2, 0)


def test_conflicting_arguments():
    model = load("gpt2-tiny")
    ids = torch.tensor([[3, 4]])
    with pytest.raises(InvalidInputError, match="once"):
        model.generate(ids, input_ids=ids)
    with pytest.raises(InvalidInputError, match="seed"):
        model.generate(ids, seed=1, generator=torch.Generator(), do_sample=True)
    with pytest.raises(InvalidInputError, match="token_type_ids"):
        model.generate(ids, token_type_ids=torch.ones_like(ids))
