"""Decoder architectures (llama, mistral, qwen2, qwen3, gpt_neox; GPT-2's cache): parity with the
reference on tiny checkpoints it saved (goldens from scripts/golden_decoders.py), cached decode
against the reference's cached decode, padding, save/load, tied weights and config errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import pretrained
from pretrained.errors import ConfigError, InvalidInputError
from pretrained.cache import DynamicCache, StaticCache

FIX = Path(__file__).parent / "fixtures"
META = json.loads((FIX / "goldens" / "decoders" / "decoders.json").read_text())["models"]
NAMES = sorted(n for n, m in META.items() if not m.get("decode_only"))
LM = [n for n in NAMES if META[n]["class"].endswith("CausalLM")]
DECODE = sorted(n for n in META if "SequenceClassification" not in META[n]["class"])
BF16 = [n for n in NAMES if "bf16.logits" in load_file(str(FIX / "goldens" / "decoders" / f"{n}.safetensors"))]
TOL = 1e-4


def golden(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(FIX / "goldens" / "decoders" / f"{name}.safetensors"))


def load(name: str, **kw):
    auto = (pretrained.AutoModelForSequenceClassification
            if META[name]["class"].endswith("SequenceClassification") else pretrained.AutoModelForCausalLM)
    return auto.from_pretrained(FIX / "models" / name, **kw)


def close(got: torch.Tensor, want: torch.Tensor, tol: float = TOL, what: str = "") -> None:
    assert got.shape == want.shape, (what, got.shape, want.shape)
    diff = (got.float() - want).abs().max().item()
    assert diff <= tol, f"{what}: max abs diff {diff:.2e} > {tol}"


@pytest.mark.parametrize("name", LM)
def test_position_ids_and_hidden_states_equal_reference(name):
    g = golden(name)
    with torch.no_grad():
        out = load(name)(input_ids=g["input.input_ids"], attention_mask=g["input.attention_mask"],
                         position_ids=g["input.position_ids"])
        close(out.logits, g["output.logits_pos"], what="logits with position_ids")
        out = load(name)(input_ids=g["input.input_ids"], attention_mask=g["input.attention_mask"],
                         output_hidden_states=True)
    close(torch.stack(out.hidden_states), g["output.hidden_states"], what="hidden_states")


@pytest.mark.parametrize("name", NAMES)
def test_loss_equals_reference(name):
    g = golden(name)
    with torch.no_grad():
        loss = load(name)(input_ids=g["input.input_ids"], attention_mask=g["input.attention_mask"],
                          labels=g["label.labels"]).loss
    assert abs(loss.item() - META[name]["loss"]) <= TOL


def _decode(model, g, cache):
    """Prefill + the recorded one-token steps, as scripts/golden_decoders.py ran them."""
    mask, pos = g["input.attention_mask"], g["input.position_ids"]
    with torch.no_grad():
        out = model(input_ids=g["input.input_ids"], attention_mask=mask, position_ids=pos,
                    past_key_values=cache, use_cache=True)
        yield "prefill", out.logits, out.past_key_values
        cache, step_pos, i = out.past_key_values, pos[:, -1:], 0
        while f"decode.step{i}.input_ids" in g:
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            step_pos = step_pos + 1
            out = model(input_ids=g[f"decode.step{i}.input_ids"], attention_mask=mask,
                        position_ids=step_pos, past_key_values=cache)
            assert out.past_key_values is cache
            yield f"step{i}", out.logits, cache
            i += 1


@pytest.mark.parametrize("kind", ["dynamic", "static"])
@pytest.mark.parametrize("name", DECODE)
def test_cached_decode_equals_reference_cached_decode(name, kind):
    g = golden(name)
    model = load(name)
    cache = None if kind == "dynamic" else StaticCache(max_length=g["input.input_ids"].shape[1] + 8)
    steps = 0
    for what, logits, c in _decode(model, g, cache):
        assert isinstance(c, DynamicCache if kind == "dynamic" else StaticCache)
        want = g["decode.prefill.logits"] if what == "prefill" and "decode.prefill.logits" in g \
            else g["output.logits_pos"] if what == "prefill" else g[f"decode.{what}.logits"]
        close(logits, want, what=what)
        steps += what != "prefill"
    assert steps == 3


@pytest.mark.parametrize("name", [n for n in LM if "dynamic" not in n])
def test_left_padded_batch_equals_one_by_one(name):
    """With positions counting real tokens, each row of a left-padded batch equals that
    sequence alone. (Not for "dynamic" RoPE: its frequencies depend on the batch's longest
    position, in the reference too.)"""
    g = golden(name)
    ids, mask, pos = g["input.input_ids"], g["input.attention_mask"], g["input.position_ids"]
    model = load(name)
    with torch.no_grad():
        batch = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        for i in range(ids.shape[0]):
            keep = mask[i].bool()
            alone = model(input_ids=ids[i:i + 1, keep]).logits[0]
            close(alone, batch[i, keep], what=f"row {i}")


@pytest.mark.parametrize("name", [n for n in LM if "packed.logits" in golden(n)])
def test_packed_sequences_equal_reference_and_are_kept_apart(name):
    """Positions that restart (several sequences in one row), no mask, no cache: each sequence
    sees only itself, as in the reference; with a cache the row is one sequence (reference too)."""
    g = golden(name)
    ids, pos = g["packed.input_ids"], g["packed.position_ids"]
    model = load(name)
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=pos, use_cache=False).logits
        close(packed, g["packed.logits"], what="packed")
        for start, end in ((0, 6), (6, 11), (11, 14)):
            alone = model(input_ids=ids[:, start:end], use_cache=False).logits[0]
            close(packed[0, start:end], alone, what=f"sequence at {start}")
        cached = model(input_ids=ids, position_ids=pos).logits[0]
    assert (cached[6:] - packed[0, 6:]).abs().max() > 1e-2


@pytest.mark.parametrize("name", BF16)
def test_bfloat16_close_to_reference_bfloat16(name):
    g = golden(name)
    model = load(name, torch_dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    with torch.no_grad():
        out = model(input_ids=g["input.input_ids"], attention_mask=g["input.attention_mask"])
    close(out.logits, g["bf16.logits"], 0.05 * g["output.logits"].abs().max().item(), "bf16")


@pytest.mark.parametrize("name", ["llama-mha-tied", "qwen3", "gpt_neox-sequential-legacy",
                                  "llama-linear-legacy", "llama-seqcls"])
def test_save_load_round_trip_is_exact(name, tmp_path):
    g = golden(name)
    model = load(name)
    model.save_pretrained(tmp_path)
    back = type(model).from_pretrained(tmp_path)
    a, b = model.state_dict(), back.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert back.config.rope_parameters == model.config.rope_parameters
    with torch.no_grad():
        out = back(input_ids=g["input.input_ids"], attention_mask=g["input.attention_mask"])
    close(out.logits, g["output.logits"], what="reloaded")


def test_legacy_rope_keys_are_read():
    cfg = pretrained.AutoConfig.from_pretrained(FIX / "models" / "llama-linear-legacy")
    assert cfg.rope_parameters["rope_type"] == "linear" and cfg.rope_parameters["factor"] == 2.0
    assert cfg.rope_parameters["rope_theta"] == 20000.0
    neox = pretrained.AutoConfig.from_pretrained(FIX / "models" / "gpt_neox-sequential-legacy")
    assert neox.rope_parameters["partial_rotary_factor"] == 1.0
    assert neox.rope_parameters["rope_theta"] == 1000
    fresh = pretrained.AutoConfig.from_pretrained(FIX / "models" / "gpt_neox-parallel")
    assert fresh.rope_parameters["partial_rotary_factor"] == 0.25


def test_tied_and_untied_embeddings(tmp_path):
    tied = load("llama-mha-tied")
    assert tied.lm_head.weight is tied.model.embed_tokens.weight
    untied = load("llama-gqa")
    assert not torch.equal(untied.lm_head.weight, untied.model.embed_tokens.weight)
    tied.save_pretrained(tmp_path / "t")
    untied.save_pretrained(tmp_path / "u")
    keys_t = set(safe_open(str(tmp_path / "t" / "model.safetensors"), "pt").keys())
    keys_u = set(safe_open(str(tmp_path / "u" / "model.safetensors"), "pt").keys())
    assert "lm_head.weight" not in keys_t and "lm_head.weight" in keys_u
    neox = load("gpt_neox-parallel")  # checkpoints name the head embed_out
    assert neox.embed_out.weight is not neox.gpt_neox.embed_in.weight


@pytest.mark.parametrize("name", ["llama-gqa", "gpt_neox-parallel"])
def test_cache_defaults_and_logits_to_keep(name):
    g = golden(name)
    ids, mask = g["input.input_ids"], g["input.attention_mask"]
    model = load(name)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask)
        assert isinstance(full.past_key_values, DynamicCache)
        assert full.past_key_values.get_seq_length() == ids.shape[1]
        assert model(input_ids=ids, use_cache=False).past_key_values is None
        last = model(input_ids=ids, attention_mask=mask, logits_to_keep=1, use_cache=False)
    assert last.logits.shape == (ids.shape[0], 1, 128)
    # the head runs on 2 rows here (the rows kernel) and on all rows above (BLAS): other sum orders
    torch.testing.assert_close(last.logits[:, 0], full.logits[:, -1], atol=1e-6, rtol=1e-6)
    model.train()
    assert model(input_ids=ids).past_key_values is None  # no cache while training


def test_bad_inputs_raise_clear_errors():
    model = load("llama-gqa")
    ids = torch.tensor([[5, 6, 7]])
    out = model(input_ids=ids)
    with pytest.raises(InvalidInputError, match="attention_mask has shape"):
        model(input_ids=torch.tensor([[8]]), attention_mask=torch.ones(1, 1),
              past_key_values=out.past_key_values)
    with pytest.raises(InvalidInputError, match="past_key_values must be"):
        model(input_ids=ids, past_key_values=((torch.zeros(1), torch.zeros(1)),))
    with pytest.raises(InvalidInputError, match="StaticCache is full"):
        model(input_ids=torch.tensor([[5, 6, 7, 8, 9]]), past_key_values=StaticCache(max_length=4))
    with pytest.raises(InvalidInputError, match="outside this model's vocabulary"):
        model(input_ids=torch.tensor([[500]]))
    with pytest.raises(InvalidInputError, match="exactly one of"):
        model()


LLAMA = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2)


@pytest.mark.parametrize("model_type, kwargs, match", [
    ("llama", dict(LLAMA, num_key_value_heads=3), "not a multiple of num_key_value_heads"),
    ("llama", dict(LLAMA, hidden_size=30), "not a multiple of num_attention_heads"),
    ("llama", dict(LLAMA, head_dim=7), "even"),
    ("llama", dict(LLAMA, num_hidden_layers=0), "num_hidden_layers must be > 0"),
    ("llama", dict(LLAMA, hidden_act="nope"), "activation"),
    ("llama", dict(LLAMA, rope_scaling={"type": "longrope", "factor": 2.0}), "not supported"),
    ("llama", dict(LLAMA, rope_parameters={"rope_type": "linear"}), "needs factor"),
    ("llama", dict(LLAMA, rope_parameters={"rope_type": "llama3", "factor": 8.0}), "low_freq_factor"),
    ("llama", dict(LLAMA, rope_theta=-1.0), "rope_theta"),
    ("llama", dict(LLAMA, num_key_value_heads="2"), "expected int"),
    ("qwen2", {k: v for k, v in LLAMA.items() if k != "num_key_value_heads"}, "num_key_value_heads 32"),
    ("qwen2", dict(LLAMA, layer_types=["full_attention"]), "layer_types lists 1 layers"),
    ("qwen2", dict(LLAMA, layer_types=["sliding_attention"] * 2), "use_sliding_window is false"),
    ("mistral", dict(LLAMA, sliding_window=0), "sliding_window"),
    ("gpt_neox", dict(vocab_size=64, hidden_size=30, num_attention_heads=4, num_hidden_layers=1,
                      intermediate_size=8), "not a multiple"),
    ("gpt_neox", dict(vocab_size=64, hidden_size=32, num_attention_heads=4, num_hidden_layers=1,
                      intermediate_size=8, rotary_pct=0.0), "rotary_pct"),
])
def test_bad_configs_raise_config_error(model_type, kwargs, match, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type, **kwargs}))
    with pytest.raises(ConfigError, match=match):
        pretrained.AutoModelForCausalLM.from_pretrained(tmp_path)


def test_every_decoder_type_is_registered():
    from pretrained import auto

    for mt in ("llama", "mistral", "qwen2", "qwen3", "gpt_neox"):
        assert mt in auto.supported_model_types()
        assert {"model", "causal-lm"} <= set(auto.model_module(mt).MODEL_CLASSES)
