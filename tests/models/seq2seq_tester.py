"""The tests every encoder-decoder of the BART family gets (BART, Marian, mBART, Pegasus), driven by
the goldens of scripts/golden_seq2seq_models.py; each ``test_<arch>.py`` asks for them with
``globals().update(seq2seq_tests("<model_type>"))`` and adds what is its own.

Per architecture, besides what tester.py gives every architecture (float32 parity incl. padding
positions, the reference reading our save, our save loading back, bfloat16, fast paths equal to
the plain modules, LoRA all-linear):
- the encoder's output, the bare model's decoder output, a decoder attention mask and both losses
  (labels alone; labels with decoder inputs) against the reference;
- the generate() contract: get_encoder(), encoder_outputs as an output or a tuple, an
  EncoderDecoderCache decoded one token at a time equals the full forward, the cross-attention
  keys/values are projected once per generation, and generate() (greedy, beams) gives the
  reference's tokens;
- named errors for inputs the model cannot take.
"""

from __future__ import annotations

import copy
import inspect
import json

import pytest
import torch
from safetensors.torch import load_file

from tester import FIX, _max_diff, fixtures, load, names_for

from pretrained import auto
from pretrained.backends import plain
from pretrained.cache import DynamicCache, EncoderDecoderCache, StaticCache
from pretrained.errors import InvalidInputError
from pretrained.outputs import BaseModelOutput
from pretrained.peft import LoraConfig, PeftModel, get_peft_model

META = json.loads((FIX / "goldens" / "seq2seq" / "seq2seq.json").read_text())["models"]
TOL = 1e-4


def golden(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(FIX / "goldens" / "seq2seq" / f"{name}.safetensors"))


def inputs_of(g: dict) -> dict[str, torch.Tensor]:
    return {k[6:]: v for k, v in g.items() if k.startswith("input.")}


def is_lm(name: str) -> bool:
    return fixtures()[name]["class"].endswith(("ForConditionalGeneration", "MTModel"))


def base_class(model_type: str):
    return auto.model_module(model_type).MODEL_CLASSES["model"]


def diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (tuple(a.shape), tuple(b.shape))
    return (a.float() - b.float()).abs().max().item()


def example(model, rows: int, length: int = 6) -> dict:
    """Encoder and decoder ids within both vocabularies, the first row padded when rows > 1."""
    g = torch.Generator().manual_seed(3)
    vocab = min(model.config.vocab_size, model.get_decoder().embed_tokens.num_embeddings)
    ids = torch.randint(3, vocab - 1, (rows, length), generator=g)
    mask = torch.ones_like(ids)
    if rows > 1:
        mask[0, -2:] = 0
    dec = torch.randint(3, vocab - 1, (rows, 4), generator=g)
    return {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec}


def logits_of(model, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def is_causal(name: str) -> bool:
    """The decoder alone (XForCausalLM): seq2seq_causal_tester.py tests those."""
    return fixtures()[name]["class"].endswith("ForCausalLM")


def seq2seq_tests(model_type: str) -> dict:
    names = [n for n in names_for(model_type) if not is_causal(n)]
    assert names, f"no golden fixtures of type {model_type!r}"
    lms = [n for n in names if is_lm(n)]
    first = lms[0]

    @pytest.mark.parametrize("name", names)
    def test_float32_parity_with_the_reference(name):
        g = golden(name)
        model = load(name)
        assert type(model).__name__ == fixtures()[name]["class"]
        assert model.dtype == torch.float32 and not model.training
        expected = {k[7:]: v for k, v in g.items() if k.startswith("output.")}
        with torch.no_grad():
            out = model(**inputs_of(g))
            assert _max_diff(out, expected) <= TOL   # padding positions included
            base = base_class(model_type).from_pretrained(FIX / "models" / name)
            assert diff(base(**inputs_of(g)).last_hidden_state, g["base.last_hidden_state"]) <= TOL
            if "decmask.logits" in g:
                masked = model(**inputs_of(g), decoder_attention_mask=g["decmask.decoder_attention_mask"])
                assert diff(masked.logits, g["decmask.logits"]) <= TOL

    @pytest.mark.parametrize("name", names)
    def test_losses_match_the_reference(name):
        g = golden(name)
        model = load(name)
        losses = META[name]["losses"]
        inputs = inputs_of(g)
        labels = {k[6:]: v for k, v in g.items() if k.startswith("label.")}
        with torch.no_grad():
            if is_lm(name):
                enc = {k: inputs[k] for k in ("input_ids", "attention_mask")}
                assert abs(model(**enc, **labels).loss.item() - losses["labels_only"]) <= TOL
                got = model(**inputs, **labels).loss.item()
                assert abs(got - losses["labels_with_decoder_input_ids"]) <= TOL
                made = model.prepare_decoder_input_ids_from_labels(labels["labels"])
                assert made.tolist() == META[name]["decoder_input_ids_from_labels"]
            else:
                (want,) = losses.values()
                assert abs(model(**inputs, **labels).loss.item() - want) <= TOL

    @pytest.mark.parametrize("name", names)
    def test_the_reference_reads_our_save(name):
        assert META[name]["roundtrip_max_abs_diff"] <= TOL

    @pytest.mark.parametrize("name", names)
    def test_our_save_loads_back_bit_for_bit(name, tmp_path):
        model = load(name)
        model.save_pretrained(tmp_path)
        back = type(model).from_pretrained(tmp_path)
        assert model.state_dict().keys() == back.state_dict().keys()
        assert all(torch.equal(a, back.state_dict()[k]) for k, a in model.state_dict().items())
        assert not any("embed_positions" in k for k in load_file(str(tmp_path / "model.safetensors"))) \
            or model.arch.learned_positions   # the fixed tables are not written

    @pytest.mark.parametrize("name", lms)
    def test_bfloat16_within_its_rounding(name):
        g = golden(name)
        model = load(name, torch_dtype=torch.bfloat16)
        assert model.dtype == torch.bfloat16
        with torch.no_grad():
            out = model(**inputs_of(g))
        for prefix in ("output.", "bf16."):
            want = {k[len(prefix):]: v for k, v in g.items() if k.startswith(prefix)}
            scale = max(v.abs().max().item() for v in want.values())
            assert _max_diff(out, want) <= 0.06 * scale + 0.02

    def test_fast_paths_give_the_plain_modules_numbers():
        model = load(first)
        kinds = {type(m).__name__ for m in model.modules()}
        assert "CpuLinear" in kinds and "Linear" not in kinds
        reference = copy.deepcopy(model)
        assert plain(reference) > 0
        for rows in (1, 2, 1):   # the third call runs the sibling groups learnt in the first two
            batch = example(model, rows)
            assert diff(logits_of(model, batch), logits_of(reference, batch)) <= 1e-5

    def test_lora_all_linear_trains_saves_reloads_and_merges(tmp_path):
        torch.manual_seed(0)
        model = load(first)
        peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
        batch = example(model, 2)
        peft.train()
        peft(**batch, labels=batch["decoder_input_ids"]).loss.backward()
        trainable = [p for p in peft.parameters() if p.requires_grad]
        assert trainable and all(p.grad is not None for p in trainable)
        with torch.no_grad():
            for p in trainable:
                p.add_(torch.randn_like(p) * 0.05)   # a non-zero adapter: skipping it would show
        peft.eval()
        for rows in (1, 2):
            batch = example(model, rows)
            got = logits_of(peft, batch)
            reference = copy.deepcopy(peft)
            plain(reference)
            assert diff(got, logits_of(reference, batch)) <= 1e-5
        peft.save_pretrained(tmp_path / "adapter")
        again = PeftModel.from_pretrained(load(first), tmp_path / "adapter")
        assert diff(logits_of(again, batch), got) <= 1e-5
        merged = again.merge_and_unload()
        assert diff(logits_of(merged, batch), got) <= 1e-4

    # --- the generate() contract ---------------------------------------------------------------
    @pytest.mark.parametrize("name", lms)
    def test_encoder_alone_and_given_encoder_outputs(name):
        g = golden(name)
        model = load(name)
        inputs = inputs_of(g)
        enc = model.get_encoder()
        with torch.no_grad():
            out = enc(inputs["input_ids"], attention_mask=inputs["attention_mask"], output_hidden_states=True)
            assert isinstance(out, BaseModelOutput)
            assert diff(out.last_hidden_state, g["output.encoder_last_hidden_state"]) <= TOL
            assert len(out.hidden_states) == model.config.encoder_layers + 1
            assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
            rest = {k: v for k, v in inputs.items() if k != "input_ids"}
            for given in (out, (out.last_hidden_state,)):
                again = model(encoder_outputs=given, **rest)
                assert diff(again.logits, g["output.logits"]) <= TOL
            full = model(**inputs, output_hidden_states=True)
            assert len(full.decoder_hidden_states) == model.config.decoder_layers + 1
            assert torch.equal(full.decoder_hidden_states[-1], model.model(**inputs).last_hidden_state)

    @pytest.mark.parametrize("name", lms)
    @pytest.mark.parametrize("case", ["greedy", "beams"])
    def test_generate_gives_the_references_tokens(name, case):
        g = golden(name)
        model = load(name)
        kw = {"num_beams": 3} if case == "beams" else {}
        out = model.generate(input_ids=g["input.input_ids"], attention_mask=g["input.attention_mask"],
                             max_new_tokens=8, do_sample=False, **kw)
        assert out.tolist() == META[name]["generate"][case]

    @pytest.mark.parametrize("name", lms)
    @pytest.mark.parametrize("prefill", [1, 3])
    @pytest.mark.parametrize("static", [False, True])
    def test_cached_decode_equals_the_full_forward(name, prefill, static):
        g = golden(name)
        model = load(name)
        inputs = inputs_of(g)
        dec = inputs.pop("decoder_input_ids")
        with torch.no_grad():
            full = model(**inputs, decoder_input_ids=dec, use_cache=False).logits
            encoded = model.get_encoder()(inputs["input_ids"], attention_mask=inputs["attention_mask"])
            cache = EncoderDecoderCache(StaticCache(dec.shape[1] + 2) if static else None)
            steps = [dec[:, :prefill]] + [dec[:, i:i + 1] for i in range(prefill, dec.shape[1])]
            got, seen = [], 0
            for step in steps:
                out = model(encoder_outputs=encoded, attention_mask=inputs["attention_mask"],
                            decoder_input_ids=step, past_key_values=cache)
                assert out.past_key_values is cache
                seen += step.shape[1]
                assert cache.get_seq_length() == seen
                got.append(out.logits)
        assert diff(torch.cat(got, 1), full) <= TOL

    def test_cross_keys_and_values_are_projected_once():
        model = load(first)
        plain(model)   # count the module calls themselves
        calls = []
        for layer in model.get_decoder().layers:
            layer.encoder_attn.k_proj.register_forward_hook(lambda *a: calls.append("k"))
            layer.encoder_attn.v_proj.register_forward_hook(lambda *a: calls.append("v"))
        batch = example(model, 2)
        dec = batch.pop("decoder_input_ids")
        with torch.no_grad():
            encoded = model.get_encoder()(batch["input_ids"], attention_mask=batch["attention_mask"])
            cache = EncoderDecoderCache()
            for i in range(dec.shape[1]):
                model(encoder_outputs=encoded, attention_mask=batch["attention_mask"],
                      decoder_input_ids=dec[:, i:i + 1], past_key_values=cache)
        layers = model.config.decoder_layers
        assert calls.count("k") == layers and calls.count("v") == layers

    def test_use_cache_defaults():
        model = load(first)
        batch = example(model, 1)
        with torch.no_grad():
            assert isinstance(model(**batch).past_key_values, EncoderDecoderCache)   # eval
            assert model(**batch, use_cache=False).past_key_values is None
            assert model(**batch, labels=batch["decoder_input_ids"]).past_key_values is None
        model.train()
        assert model(**batch).past_key_values is None

    def test_forward_inputs_are_the_forward_arguments():
        for cls in auto.model_module(model_type).MODEL_CLASSES.values():
            takes = set(inspect.signature(cls.forward).parameters) - {"self"}
            assert cls.forward_inputs == takes, cls.__name__
        assert {"past_key_values", "encoder_outputs", "labels"} <= \
            auto.model_module(model_type).MODEL_CLASSES["seq2seq-lm"].forward_inputs

    def test_a_fresh_model_ties_its_embeddings_and_runs():
        config = load(first).config
        model = auto.model_module(model_type).MODEL_CLASSES["seq2seq-lm"].from_config(config).eval()
        if model.model.shares_embeddings(config):
            assert model.lm_head.weight is model.model.shared.weight is model.model.encoder.embed_tokens.weight
        assert model.lm_head.weight is model.model.decoder.embed_tokens.weight
        assert torch.count_nonzero(model.final_logits_bias) == 0
        assert torch.isfinite(logits_of(model, example(model, 2))).all()

    # --- named errors -------------------------------------------------------------------------
    def test_inputs_it_cannot_take_are_named_errors():
        model = load(first)
        limit = model.config.max_position_embeddings
        batch = example(model, 1)
        with torch.no_grad():
            with pytest.raises(InvalidInputError, match="truncation=True"):
                model(torch.full((1, limit + 1), 5), decoder_input_ids=batch["decoder_input_ids"])
            model(torch.full((1, limit), 5), decoder_input_ids=batch["decoder_input_ids"])
            with pytest.raises(InvalidInputError, match="max_position_embeddings"):
                model(batch["input_ids"], decoder_input_ids=torch.full((1, limit + 1), 5))
            vocab = model.get_decoder().embed_tokens.num_embeddings
            with pytest.raises(InvalidInputError, match=str(vocab)):
                model(batch["input_ids"], decoder_input_ids=torch.tensor([[vocab]]))
            with pytest.raises(InvalidInputError, match="EncoderDecoderCache"):
                model(**batch, past_key_values=DynamicCache())
            with pytest.raises(InvalidInputError, match="attention_mask has shape"):
                model(**{**batch, "attention_mask": batch["attention_mask"][:, :3]})
            with pytest.raises(InvalidInputError, match="decoder_input_ids has 2 rows"):
                model(batch["input_ids"], decoder_input_ids=torch.cat([batch["decoder_input_ids"]] * 2))
            with pytest.raises(InvalidInputError, match="input_ids"):
                model(decoder_input_ids=batch["decoder_input_ids"])
            if model_type in ("marian", "pegasus"):   # no denoising fallback: the ids must be given
                with pytest.raises(InvalidInputError, match="decoder_input_ids"):
                    model(batch["input_ids"])

    return {k: v for k, v in locals().items() if k.startswith("test_")}
