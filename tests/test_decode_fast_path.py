"""The decoders' opt-in inference fast path (set_weight_packing: CpuLinear / CpuConv1D packing)
and generate() on it: the reference's numbers on the goldens, fallbacks when a projection is
replaced, weights changed in place, unchanged checkpoint names; generate() lean by default and
its results usable outside inference mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pretrained import AutoModelForCausalLM
from pretrained import layers
from pretrained.backends import build
from pretrained.backends import packed, set_weight_packing
from pretrained.backends.linear import CpuLinear
from pretrained.backends.packed import PackedWeights
from pretrained.models.gpt2 import GPT2Config, GPT2LMHeadModel
from pretrained.models.llama import LlamaConfig, LlamaForCausalLM
from pretrained.peft.lora import LoraLinear

FIX = Path(__file__).parent / "fixtures"
META = json.loads((FIX / "goldens" / "decoders" / "decoders.json").read_text())["models"]
FAMILY = sorted(n for n, m in META.items() if m["class"].split("For")[0] in
                ("Llama", "Mistral", "Qwen2", "Qwen3") and m["class"].endswith("CausalLM"))
GEN = json.loads((FIX / "goldens" / "generation" / "generate.json").read_text())["models"]
GREEDY = [(m, c["case"]) for m, cases in GEN.items() for c in cases
          if not c["kwargs"].get("do_sample") and len(c["input_ids"]) > 1]
needs_packing = pytest.mark.skipif(not packed.packing_available(),
                                   reason="oneDNN weight packing is not available in this torch build")


@pytest.fixture(autouse=True)
def pack_small_weights(monkeypatch):
    """The fixtures' weights are tiny: pack them anyway (production packs large ones only); and
    their inputs are a few rows, which the rows kernel would take: switch it off here, so these
    tests exercise the packed and plain paths (tests/test_rows.py covers the kernel)."""
    monkeypatch.setattr(packed, "PACKED_MIN_WEIGHT", 0)
    monkeypatch.setattr(build, "_lib", False)


def packed_caches(model: torch.nn.Module) -> dict[str, int]:
    """How many packed weights the modules hold, by attribute name ("_packed")."""
    found: dict[str, int] = {}
    for m in model.modules():
        for k, v in vars(m).items():
            if isinstance(v, PackedWeights) and v.weight is not None:
                found[k] = found.get(k, 0) + 1
    return found


def tiny_llama(**kw) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, **kw)
    return LlamaForCausalLM.from_config(cfg).eval()


def batch(b: int = 3, t: int = 6, vocab: int = 97) -> dict:
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[0, :2] = 0  # left padding
    return {"input_ids": torch.randint(1, vocab, (b, t), generator=g), "attention_mask": mask}


@needs_packing
@pytest.mark.parametrize("name", FAMILY)
def test_packed_llama_family_matches_reference_goldens(name):
    g = load_file(str(FIX / "goldens" / "decoders" / f"{name}.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(FIX / "models" / name)
    set_weight_packing(model)
    with torch.inference_mode():
        out = model(input_ids=g["input.input_ids"], attention_mask=g["input.attention_mask"])
    assert (out.logits - g["output.logits"]).abs().max().item() <= 1e-4
    found = packed_caches(model)
    n = model.config.num_hidden_layers
    assert found.get("_packed", 0) >= 7 * n  # q, k, v, o, gate, up, down (and lm_head)


@needs_packing
@pytest.mark.parametrize("model_name,case", GREEDY, ids=[f"{m}-{c}" for m, c in GREEDY])
def test_generate_on_packed_weights_equals_reference_tokens(model_name, case):
    c = next(x for x in GEN[model_name] if x["case"] == case)
    model = AutoModelForCausalLM.from_pretrained(FIX / "models" / model_name)
    set_weight_packing(model)
    out = model.generate(input_ids=torch.tensor(c["input_ids"]),
                         attention_mask=torch.tensor(c["attention_mask"]), **c["kwargs"])
    sequences = out if isinstance(out, torch.Tensor) else out.sequences
    assert sequences.tolist() == c["sequences"]
    if model.config.model_type in ("gpt2", "llama", "mistral", "qwen2", "qwen3"):
        assert packed_caches(model), "generate() ran on the packed weights"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_generate_is_lean_by_default_and_returns_ordinary_tensors(dtype):
    model = tiny_llama().to(dtype)
    out = model.generate(**batch(), max_new_tokens=4, do_sample=False,
                         return_dict_in_generate=True, output_scores=True)
    assert packed_caches(model) == {}  # packing is opt-in: no second copy of the weights
    assert not out.sequences.is_inference() and not out.scores[0].is_inference()
    out.sequences[:, -1] = 0  # may be modified in place ...
    loss = model(out.sequences, labels=out.sequences).loss  # ... and used with autograd
    loss.backward()
    assert model.model.embed_tokens.weight.grad is not None


@needs_packing
def test_single_float32_row_decodes_on_the_plain_kernels():
    model = tiny_llama()
    set_weight_packing(model)
    with torch.inference_mode():
        model(torch.tensor([[5]]))
    assert packed_caches(model) == {}  # MKL's matrix-vector kernel is faster for one row
    with torch.inference_mode():
        model(torch.tensor([[5, 6]]))
    assert packed_caches(model)


@needs_packing
def test_fused_paths_fall_back_when_a_projection_is_replaced():
    model = tiny_llama()
    inputs = batch()
    layer = model.model.layers[0]
    with torch.no_grad():  # LoRA with a non-zero update, so a skipped adapter would show
        layer.self_attn.k_proj = LoraLinear(layer.self_attn.k_proj, r=2, lora_alpha=2,
                                            init_lora_weights=False)
        layer.mlp.up_proj = LoraLinear(layer.mlp.up_proj, r=2, lora_alpha=2, init_lora_weights=False)
        layer.self_attn.o_proj = LoraLinear(layer.self_attn.o_proj, r=2, lora_alpha=2,
                                            init_lora_weights=False)
        want = model(**inputs).logits
    set_weight_packing(model)
    with torch.inference_mode():
        got = model(**inputs).logits
    assert (got - want).abs().max().item() <= 1e-5
    assert "_packed" in vars(layer.self_attn.k_proj.base_layer)  # under LoRA: packed base
    assert "_packed" in vars(model.model.layers[1].self_attn.k_proj)


@needs_packing
@pytest.mark.parametrize("make", [tiny_llama, lambda: GPT2LMHeadModel.from_config(
    GPT2Config(vocab_size=97, n_embd=64, n_layer=2, n_head=4, n_positions=32)).eval()])
def test_packed_weights_follow_in_place_updates(make):
    torch.manual_seed(0)
    model = make()
    inputs = batch()
    set_weight_packing(model)
    with torch.inference_mode():
        model(**inputs)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    with torch.inference_mode():
        got = model(**inputs).logits
    set_weight_packing(model, False)
    with torch.no_grad():
        want = model(**inputs).logits
    assert (got - want).abs().max().item() <= 1e-4


@needs_packing
def test_packing_leaves_checkpoint_names_shapes_and_files_unchanged(tmp_path):
    model = AutoModelForCausalLM.from_pretrained(FIX / "models" / "llama-gqa")
    before = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    set_weight_packing(model)
    with torch.inference_mode():
        model(**batch(vocab=model.config.vocab_size))
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == before
    model.save_pretrained(tmp_path)
    saved = load_file(str(tmp_path / "model.safetensors"))
    original = load_file(str(FIX / "models" / "llama-gqa" / "model.safetensors"))
    assert saved.keys() == original.keys()
    assert all(torch.equal(saved[k], original[k]) for k in saved)


@needs_packing
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_gpt2_close_to_plain(dtype):
    torch.manual_seed(0)
    model = GPT2LMHeadModel.from_config(GPT2Config(vocab_size=97, n_embd=64, n_layer=2, n_head=4,
                                                   n_positions=32)).eval().to(dtype)
    inputs = batch()
    with torch.no_grad():
        want = model(**inputs).logits.float()
    set_weight_packing(model)
    with torch.inference_mode():
        got = model(**inputs).logits.float()
    assert packed_caches(model).get("_packed", 0) >= 4 * 2  # c_attn, c_proj, c_fc, c_proj
    tol = 1e-5 if dtype == torch.float32 else 0.05 * want.abs().max().item()
    assert (got - want).abs().max().item() <= tol


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias", [False, True])
def test_one_row_runs_as_matrix_vector_product(dtype, bias, monkeypatch):
    """Without the rows kernel (tests/test_rows.py), a one-row input without autograd goes
    through torch.mv/addmv (the decode step at batch 1) and gives F.linear's numbers; several
    rows and autograd keep F.linear."""
    monkeypatch.setattr(build, "_lib", False)
    torch.manual_seed(0)
    lin = CpuLinear(96, 40, bias=bias).to(dtype)
    calls = []
    real_mv, real_addmv = torch.mv, torch.addmv
    monkeypatch.setattr(torch, "mv", lambda *a: calls.append("mv") or real_mv(*a))
    monkeypatch.setattr(torch, "addmv", lambda *a: calls.append("addmv") or real_addmv(*a))
    x = torch.randn(1, 1, 96, dtype=dtype)
    with torch.no_grad():
        y = lin(x)
        want = torch.nn.functional.linear(x, lin.weight, lin.bias)
    assert calls == ["addmv" if bias else "mv"]
    assert y.shape == (1, 1, 40) and y.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-2  # bfloat16: within an ulp of the output
    torch.testing.assert_close(y, want, atol=tol, rtol=tol)
    calls.clear()
    with torch.no_grad():
        lin(torch.randn(2, 1, 96, dtype=dtype))  # two rows: a matrix product
    y = lin(x)  # autograd on: F.linear, gradients flow
    assert calls == [] and y.requires_grad
