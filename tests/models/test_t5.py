"""T5 ('t5', v1.0 and v1.1 / flan-t5): parity with the reference's goldens (scripts/golden_t5.py),
round trips, bfloat16, encoder-decoder generate() (greedy, beams, forced tokens, n-gram bans),
the cross-attention cache, the backend seam and LoRA."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pretrained import AutoModelForSeq2SeqLM
from pretrained.backends import plain
from pretrained.cache import EncoderDecoderCache
from pretrained.errors import ConfigError, InvalidInputError
from pretrained.models.t5 import (T5Config, T5EncoderModel, T5ForConditionalGeneration, T5Model,
                                  relative_position_bucket)
from pretrained.peft import LoraConfig, PeftModel, get_peft_model

FIX = Path(__file__).resolve().parent.parent / "fixtures"
META = json.loads((FIX / "goldens" / "t5" / "t5.json").read_text())["models"]
NAMES = sorted(META)


def golden(name: str) -> dict:
    return load_file(str(FIX / "goldens" / "t5" / f"{name}.safetensors"))


def load(name: str, cls=T5ForConditionalGeneration, **kw):
    return cls.from_pretrained(FIX / "models" / name, **kw)


def encoder_inputs(g: dict) -> dict:
    return {"input_ids": g["input.input_ids"], "attention_mask": g["input.attention_mask"]}


@pytest.mark.parametrize("name", NAMES)
def test_float32_parity_with_the_reference(name):
    g = golden(name)
    model = AutoModelForSeq2SeqLM.from_pretrained(FIX / "models" / name)
    assert type(model) is T5ForConditionalGeneration and not model.training
    with torch.no_grad():
        out = model(**encoder_inputs(g), decoder_input_ids=g["input.decoder_input_ids"])
        assert (out.logits - g["output.logits"]).abs().max() <= 1e-4
        assert (out.encoder_last_hidden_state - g["output.encoder_last_hidden_state"]).abs().max() <= 1e-4
        loss = model(**encoder_inputs(g), labels=g["input.labels"]).loss
        assert abs(loss.item() - META[name]["loss"]) <= 1e-4
        base = load(name, T5Model)(**encoder_inputs(g), decoder_input_ids=g["input.decoder_input_ids"])
        assert (base.last_hidden_state - g["output.base_last_hidden_state"]).abs().max() <= 1e-4
        only = load(name, T5EncoderModel)(**encoder_inputs(g))
        assert (only.last_hidden_state - g["output.encoder_only_last_hidden_state"]).abs().max() <= 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_reads_our_save(name):
    assert META[name]["roundtrip_max_abs_diff"] <= 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_within_its_rounding(name):
    g = golden(name)
    model = load(name, torch_dtype=torch.bfloat16)
    with torch.no_grad():
        out = model(**encoder_inputs(g), decoder_input_ids=g["input.decoder_input_ids"]).logits.float()
    scale = g["output.logits"].abs().max().item()
    assert (out - g["output.logits"]).abs().max() <= 0.06 * scale + 0.02
    assert (out - g["bf16.logits"]).abs().max() <= 0.06 * scale + 0.02


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", sorted(next(iter(META.values()))["generate"]))
def test_generate_equals_the_reference(name, case):
    g = golden(name)
    model = load(name)
    out = model.generate(**encoder_inputs(g), do_sample=False, **META[name]["generate"][case])
    assert torch.equal(out, g[f"gen.{case}"])


def test_our_save_loads_back_bit_for_bit_and_keeps_an_untied_head(tmp_path):
    for name in NAMES:
        model = load(name)
        model.save_pretrained(tmp_path / name)
        back = load(name) if False else T5ForConditionalGeneration.from_pretrained(tmp_path / name)
        assert model.state_dict().keys() == back.state_dict().keys()
        assert all(torch.equal(a, back.state_dict()[k]) for k, a in model.state_dict().items())
    # a v1.1 head stored apart under a config that says tied (the reference 5.x writes those)
    model = load("t5-v1_1-tiny")
    with torch.no_grad():
        model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.shared.weight))
    assert model.lm_head.weight is not model.shared.weight
    model.save_pretrained(tmp_path / "untied")
    back = T5ForConditionalGeneration.from_pretrained(tmp_path / "untied")
    assert back.lm_head.weight is not back.shared.weight
    assert torch.equal(back.lm_head.weight, model.lm_head.weight)
    assert torch.equal(back.shared.weight, model.shared.weight)


def test_v1_1_configs_of_both_reference_generations_scale_as_written():
    # 4.x wrote tie_word_embeddings=false for v1.1; 5.x writes scale_decoder_outputs=false
    assert not T5Config(tie_word_embeddings=False).scales_decoder_outputs
    assert not T5Config(scale_decoder_outputs=False).scales_decoder_outputs
    assert T5Config().scales_decoder_outputs
    cfg = T5Config(feed_forward_proj="gated-gelu")
    assert cfg.is_gated_act and cfg.dense_act_fn == "gelu_new"
    with pytest.raises(ConfigError, match="gated-<activation>"):
        T5Config(feed_forward_proj="gelu-gated")


def test_relative_position_buckets_by_hand():
    rel = torch.tensor([-20, -9, -3, -1, 0, 1, 3, 9, 20])
    # 8 buckets, distance 16: bidirectional uses 4 per side: exact 0, 1, then log-spaced 2, 3
    assert relative_position_bucket(rel, True, 8, 16).tolist() == [3, 3, 2, 1, 0, 5, 6, 7, 7]
    # one direction (decoder): future keys share bucket 0
    assert relative_position_bucket(rel, False, 8, 16).tolist() == [7, 6, 3, 1, 0, 0, 0, 0, 0]


def test_cached_decoding_one_token_at_a_time_equals_the_full_forward():
    g = golden("t5-v1_1-tiny")
    model = load("t5-v1_1-tiny")
    dec = g["input.decoder_input_ids"]
    with torch.no_grad():
        full = model(**encoder_inputs(g), decoder_input_ids=dec).logits
        enc = model.get_encoder()(**encoder_inputs(g))
        cache = EncoderDecoderCache()
        steps = []
        for i in range(dec.shape[1]):
            out = model(encoder_outputs=enc, attention_mask=g["input.attention_mask"],
                        decoder_input_ids=dec[:, i:i + 1], past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            steps.append(out.logits)
    assert (torch.cat(steps, dim=1) - full).abs().max() <= 1e-5
    assert cache.get_seq_length() == dec.shape[1]


def test_generate_runs_the_encoder_once_and_projects_cross_keys_once():
    g = golden("t5-tiny")
    model = load("t5-tiny")
    calls = {"encoder": 0, "cross_k": 0}
    model.get_encoder().register_forward_hook(lambda *a: calls.__setitem__("encoder", calls["encoder"] + 1))
    cross_k = model.decoder.block[0].layer[1].EncDecAttention.k
    cross_k.register_forward_hook(lambda *a: calls.__setitem__("cross_k", calls["cross_k"] + 1))
    out = model.generate(**encoder_inputs(g), max_new_tokens=6, num_beams=3, min_length=7)
    assert out.shape[1] == 7
    assert calls == {"encoder": 1, "cross_k": 1}


def test_beams_share_their_inputs_cross_attention_keys(monkeypatch):
    """The beams of one input read one copy of its encoder output: cross keys/values are
    projected and stored once per input, not once per beam, with the tokens and scores of the
    per-beam copies (the reference's layout; the goldens' beam cases compare the tokens)."""
    g = golden("t5-tiny")
    model = load("t5-tiny")
    seen = []
    original = EncoderDecoderCache.set_cross

    def spy(self, layer_idx, k, v):
        seen.append((self.sequences_per_input, k.shape[0]))
        return original(self, layer_idx, k, v)

    monkeypatch.setattr(EncoderDecoderCache, "set_cross", spy)
    kw = dict(max_new_tokens=6, num_beams=3, num_return_sequences=2, return_dict_in_generate=True,
              output_scores=True)
    shared = model.generate(**encoder_inputs(g), **kw)
    rows = encoder_inputs(g)["input_ids"].shape[0]
    assert seen and all(s == (3, rows) for s in seen)
    monkeypatch.setattr(T5ForConditionalGeneration, "encoder_output_per_input", False)
    seen.clear()
    per_beam = model.generate(**encoder_inputs(g), **kw)
    assert seen and all(s == (1, 3 * rows) for s in seen)
    assert torch.equal(shared.sequences, per_beam.sequences)
    assert (shared.sequences_scores - per_beam.sequences_scores).abs().max() <= 1e-5
    # the decoder's rows must be the encoder's times the cache's rows per input
    with pytest.raises(InvalidInputError, match="rows"):
        model(encoder_outputs=(torch.zeros(2, 4, model.config.d_model),),
              decoder_input_ids=torch.zeros(3, 1, dtype=torch.long),
              past_key_values=EncoderDecoderCache(sequences_per_input=2), use_cache=True)


def test_generate_without_the_cache_gives_the_same_tokens():
    g = golden("t5-tiny")
    model = load("t5-tiny")
    for kw in ({"max_new_tokens": 8}, {"max_new_tokens": 8, "num_beams": 3}):
        assert torch.equal(model.generate(**encoder_inputs(g), **kw),
                           model.generate(**encoder_inputs(g), use_cache=False, **kw))


def test_generate_errors_name_the_fix():
    g = golden("t5-tiny")
    model = load("t5-tiny")
    with pytest.raises(InvalidInputError, match="decoder_input_ids"):
        model(**encoder_inputs(g))
    with pytest.raises(InvalidInputError, match="static"):
        model.generate(**encoder_inputs(g), max_new_tokens=3, cache_implementation="static")
    with pytest.raises(InvalidInputError, match="forced_bos_token_id"):
        model.generate(**encoder_inputs(g), max_new_tokens=3, forced_bos_token_id=10_000)
    with pytest.raises(InvalidInputError, match="vocabulary"):
        model.generate(input_ids=torch.tensor([[5, 10_000]]), max_new_tokens=3)
    with pytest.raises(InvalidInputError, match="no output can satisfy both"):   # issue 15
        model.generate(**encoder_inputs(g), min_length=10, max_length=5)
    no_start = load("t5-tiny")
    no_start.config.decoder_start_token_id = None
    no_start.generation_config.decoder_start_token_id = None
    with pytest.raises(InvalidInputError, match="decoder_start_token_id"):
        no_start.generate(**encoder_inputs(g), max_new_tokens=3)


def test_labels_make_the_decoder_inputs_and_ignore_minus_100():
    g = golden("t5-tiny")
    model = load("t5-tiny")
    labels = g["input.labels"]
    dec = model.prepare_decoder_input_ids_from_labels(labels)
    assert dec[:, 0].eq(0).all() and torch.equal(dec[:2, 1:], labels[:2, :-1])
    assert dec[2].tolist() == [0, *labels[2, :3].tolist(), 0]  # -100 becomes the pad id (0)


def test_fast_paths_give_the_plain_modules_numbers():
    g = golden("t5-v1_1-tiny")
    model = load("t5-v1_1-tiny")
    kinds = {type(m).__name__ for m in model.modules()}
    assert "CpuLinear" in kinds and "Linear" not in kinds
    reference = copy.deepcopy(model)
    assert plain(reference) > 0
    for rows in (1, 2, 1):
        batch = {k: v[:rows] for k, v in encoder_inputs(g).items()}
        dec = g["input.decoder_input_ids"][:rows]
        with torch.no_grad():
            got = model(**batch, decoder_input_ids=dec).logits
            want = reference(**batch, decoder_input_ids=dec).logits
        assert (got - want).abs().max() <= 1e-5
    assert torch.equal(model.generate(**encoder_inputs(g), max_new_tokens=6, num_beams=2),
                       reference.generate(**encoder_inputs(g), max_new_tokens=6, num_beams=2))


def test_lora_all_linear_trains_saves_reloads_and_merges(tmp_path):
    torch.manual_seed(0)
    g = golden("t5-tiny")
    model = load("t5-tiny")
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                            task_type="SEQ_2_SEQ_LM"))
    peft.train()
    peft(**encoder_inputs(g), labels=g["input.labels"]).loss.backward()
    trainable = [p for p in peft.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)
    with torch.no_grad():
        for p in trainable:
            p.add_(torch.randn_like(p) * 0.05)
    peft.eval()
    batch = dict(encoder_inputs(g), decoder_input_ids=g["input.decoder_input_ids"])
    with torch.no_grad():
        got = peft(**batch).logits
        reference = copy.deepcopy(peft)
        plain(reference)
        assert (got - reference(**batch).logits).abs().max() <= 1e-5
    peft.save_pretrained(tmp_path / "adapter")
    again = PeftModel.from_pretrained(load("t5-tiny"), tmp_path / "adapter")
    with torch.no_grad():
        assert (again(**batch).logits - got).abs().max() <= 1e-5
        merged = again.merge_and_unload()
        assert (merged(**batch).logits - got).abs().max() <= 1e-4
    assert peft.generate(**encoder_inputs(g), max_new_tokens=4).shape == (3, 5)


HEADS = json.loads((FIX / "goldens" / "t5" / "t5.json").read_text())["heads"]


@pytest.mark.parametrize("name", sorted(HEADS))
def test_task_heads_equal_the_reference(name):
    from pretrained import auto

    g = golden(name)
    cls = next(c for c in auto.model_module("t5").MODEL_CLASSES.values()
               if c.__name__ == HEADS[name]["class"])
    model = cls.from_pretrained(FIX / "models" / name)
    enc = encoder_inputs(g)
    with torch.no_grad():
        out = model(**enc)
        for key in ("logits", "start_logits", "end_logits"):
            if f"output.{key}" in g:
                assert (getattr(out, key) - g[f"output.{key}"]).abs().max() <= 1e-4
        labels = g["input.labels"]
        if "start_logits" in HEADS[name]["class"] or name.endswith("qa"):
            loss = model(**enc, start_positions=labels[:, 0], end_positions=labels[:, 1]).loss
        else:
            loss = model(**enc, labels=labels).loss
    assert abs(loss.item() - HEADS[name]["loss"]) <= 1e-4


def test_the_sequence_classifier_needs_one_eos_count_per_row():
    from pretrained.models.t5 import T5ForSequenceClassification

    g = golden("t5-tiny-seqcls")
    model = T5ForSequenceClassification.from_pretrained(FIX / "models" / "t5-tiny-seqcls")
    ids = g["input.input_ids"].clone()
    ids[0, 2] = 1   # a second eos in the first row only
    with pytest.raises(InvalidInputError, match="same number"):
        model(input_ids=ids, attention_mask=g["input.attention_mask"])


def test_a_model_from_a_config_has_a_generation_config():
    model = T5ForConditionalGeneration.from_config(T5Config(vocab_size=40, d_model=16, d_kv=4, d_ff=24,
                                                            num_layers=1, num_heads=2, num_beams=3))
    assert model.generation_config.decoder_start_token_id == 0
    assert model.generation_config.num_beams == 3   # a legacy field of the config
