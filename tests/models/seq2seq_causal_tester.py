"""The tests every BART-family decoder gets as a decoder-only LM (BartForCausalLM,
MarianForCausalLM, MBartForCausalLM, PegasusForCausalLM), driven by the ``*-causal`` goldens of
scripts/golden_seq2seq_models.py (build_causal); each ``test_<arch>.py`` asks for them with
``globals().update(seq2seq_causal_tests("<model_type>"))``.

- float32 parity with the reference (padding positions included), without and with
  ``encoder_hidden_states`` (cross-attention), and both losses (labels not shifted, as 5.x);
- the reference reads our save (recorded), our save loads back bit for bit and holds only
  ``model.decoder.*`` (lm_head is tied, fixed sinusoidal tables are not written);
- AutoModelForCausalLM picks the class; the config says decoder-only;
- generate() gives the reference's tokens (greedy, 3 beams) from a left-padded prompt, and
  the same without a cache and with a static one; a cached decode one token at a time equals
  the full forward (DynamicCache, StaticCache, EncoderDecoderCache with encoder states);
- bfloat16, the fast paths against the plain modules, a training step, ``logits_to_keep``.
"""

from __future__ import annotations

import copy
import inspect

import pytest
import torch
from safetensors.torch import load_file

from seq2seq_tester import META, TOL, diff, golden, inputs_of, is_causal
from tester import FIX, fixtures, load, names_for

from pretrained import AutoModelForCausalLM, auto
from pretrained.backends import plain
from pretrained.cache import DynamicCache, EncoderDecoderCache, StaticCache


def cross_of(g: dict) -> dict[str, torch.Tensor]:
    return {k[6:]: v for k, v in g.items() if k.startswith("cross.") and k != "cross.logits"}


def seq2seq_causal_tests(model_type: str) -> dict:
    names = [n for n in names_for(model_type) if is_causal(n)]
    assert names, f"no causal-LM fixtures of type {model_type!r}"
    first = names[0]
    cls = auto.model_module(model_type).MODEL_CLASSES["causal-lm"]

    @pytest.mark.parametrize("name", names)
    def test_causal_lm_float32_parity_with_the_reference(name):
        g = golden(name)
        model = load(name)
        assert type(model) is cls and type(model).__name__ == fixtures()[name]["class"]
        assert model.dtype == torch.float32 and not model.training
        assert model.config.is_decoder and not model.config.is_encoder_decoder
        with torch.no_grad():
            out = model(**inputs_of(g))
            assert diff(out.logits, g["output.logits"]) <= TOL   # padding positions included
            assert isinstance(out.past_key_values, DynamicCache)
            crossed = model(**inputs_of(g), **cross_of(g))
            assert diff(crossed.logits, g["cross.logits"]) <= TOL
            assert isinstance(crossed.past_key_values, EncoderDecoderCache)

    @pytest.mark.parametrize("name", names)
    def test_causal_lm_losses_match_the_reference(name):
        g = golden(name)
        model = load(name)
        losses = META[name]["losses"]
        with torch.no_grad():
            got = model(**inputs_of(g), labels=g["label.labels"]).loss.item()
            assert abs(got - losses["labels"]) <= TOL
            got = model(**inputs_of(g), **cross_of(g), labels=g["label.labels"]).loss.item()
            assert abs(got - losses["labels_cross"]) <= TOL

    @pytest.mark.parametrize("name", names)
    def test_causal_lm_save_round_trips(name, tmp_path):
        assert META[name]["roundtrip_max_abs_diff"] <= TOL   # the reference read our save
        model = load(name)
        model.save_pretrained(tmp_path)
        keys = set(load_file(str(tmp_path / "model.safetensors")))
        assert keys and all(k.startswith("model.decoder.") for k in keys)
        assert not any("embed_positions" in k for k in keys) or model.arch.learned_positions
        back = AutoModelForCausalLM.from_pretrained(tmp_path)
        assert type(back) is cls and not back.config.is_encoder_decoder
        assert back.lm_head.weight is back.model.decoder.embed_tokens.weight
        assert model.state_dict().keys() == back.state_dict().keys()
        assert all(torch.equal(a, back.state_dict()[k]) for k, a in model.state_dict().items())

    @pytest.mark.parametrize("name", names)
    @pytest.mark.parametrize("case", ["greedy", "beams"])
    def test_causal_lm_generate_gives_the_references_tokens(name, case):
        g = golden(name)
        model = AutoModelForCausalLM.from_pretrained(FIX / "models" / name)
        kw = {"num_beams": 3} if case == "beams" else {}
        out = model.generate(**inputs_of(g), max_new_tokens=8, do_sample=False, **kw)
        assert out.tolist() == META[name]["generate"][case]

    def test_causal_lm_generate_without_a_cache_and_with_a_static_one():
        g = golden(first)
        model = load(first)
        want = META[first]["generate"]["greedy"]
        for kw in ({"use_cache": False}, {"cache_implementation": "static"}):
            out = model.generate(**inputs_of(g), max_new_tokens=8, do_sample=False, **kw)
            assert out.tolist() == want, kw

    @pytest.mark.parametrize("cache_kind", ["dynamic", "static", "cross"])
    def test_causal_lm_cached_decode_equals_the_full_forward(cache_kind):
        g = golden(first)
        model = load(first)
        inputs = inputs_of(g)
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        extra = cross_of(g) if cache_kind == "cross" else {}
        with torch.no_grad():
            full = model(**inputs, **extra, use_cache=False).logits
            cache = {"dynamic": DynamicCache, "static": lambda: StaticCache(ids.shape[1] + 2),
                     "cross": EncoderDecoderCache}[cache_kind]()
            got = []
            for i in range(2, ids.shape[1] + 1):
                step = ids[:, :2] if i == 2 else ids[:, i - 1:i]
                out = model(step, attention_mask=mask[:, :i], past_key_values=cache, **extra)
                assert out.past_key_values is cache and cache.get_seq_length() == i
                got.append(out.logits)
        assert diff(torch.cat(got, 1), full) <= TOL

    def test_causal_lm_declares_what_generate_may_pass():
        takes = set(inspect.signature(cls.forward).parameters) - {"self"}
        assert cls.forward_inputs == takes
        assert {"past_key_values", "use_cache", "logits_to_keep", "encoder_hidden_states"} <= takes
        assert "position_ids" not in takes   # the decoder counts positions from the cache, as the reference
        g = golden(first)
        model = load(first)
        with torch.no_grad():
            last = model(**inputs_of(g), logits_to_keep=1).logits
        assert diff(last, g["output.logits"][:, -1:]) <= TOL

    def test_causal_lm_bfloat16_within_its_rounding():
        g = golden(first)
        model = load(first, torch_dtype=torch.bfloat16)
        assert model.dtype == torch.bfloat16
        with torch.no_grad():
            out = model(**inputs_of(g)).logits
        scale = g["output.logits"].abs().max().item()
        assert diff(out, g["output.logits"]) <= 0.06 * scale + 0.02
        assert diff(out, g["bf16.logits"]) <= 0.06 * scale + 0.02

    def test_causal_lm_fast_paths_give_the_plain_modules_numbers_and_it_trains():
        g = golden(first)
        model = load(first)
        kinds = {type(m).__name__ for m in model.modules()}
        assert "CpuLinear" in kinds and "Linear" not in kinds
        reference = copy.deepcopy(model)
        assert plain(reference) > 0
        inputs = inputs_of(g)
        for rows in (1, 2, 1):
            batch = {k: v[:rows] for k, v in inputs.items()}
            with torch.no_grad():
                assert diff(model(**batch).logits, reference(**batch).logits) <= 1e-5
        model.train()
        out = model(**inputs, **cross_of(g), labels=g["label.labels"])
        assert out.past_key_values is None   # training keeps no cache
        out.loss.backward()   # with encoder states, so the cross-attention learns too
        assert all(p.grad is not None for p in model.parameters())

    def test_causal_lm_a_fresh_model_ties_its_head_and_leaves_the_encoder_out():
        config = load(first).config.__class__.from_dict(
            {k: v for k, v in load(first).config.to_dict().items() if k not in ("is_decoder", "is_encoder_decoder")})
        assert config.is_encoder_decoder
        model = cls.from_config(config).eval()
        assert config.is_decoder and not config.is_encoder_decoder   # set on the config given, as the reference
        assert model.lm_head.weight is model.model.decoder.embed_tokens.weight
        assert model.get_input_embeddings() is model.get_decoder().embed_tokens
        assert not any(k.startswith(("model.encoder", "model.shared")) for k in model.state_dict())
        with torch.no_grad():
            assert torch.isfinite(model(torch.tensor([[5, 6, 7]])).logits).all()

    return {k: v for k, v in locals().items() if k.startswith("test_")}
