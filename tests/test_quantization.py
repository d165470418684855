"""8-bit and 4-bit loading: quantize-on-load against the reference (transformers + bitsandbytes,
goldens from scripts/golden_bnb.py), the saved bytes equal to what the reference saves, the
reference's saved folders read here, round trips, the backend seam, memory, refusals."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pretrained import AutoModelForCausalLM, BitsAndBytesConfig
from pretrained.backends import accelerate, plain
from pretrained.backends.quantized import CpuLinear4bit, CpuLinear8bit
from pretrained.errors import CheckpointError, InvalidInputError, UnsupportedOptionError
from pretrained.quantization import Linear4bit, Linear8bit, set_llm_int8

FIX = Path(__file__).parent / "fixtures"
MODELS = FIX / "models"
GOLD = FIX / "goldens" / "bnb"
META = json.loads((GOLD / "bnb.json").read_text())
LOGITS = load_file(str(GOLD / "models.safetensors"))
IDS = LOGITS["input_ids"]
FLOAT = MODELS / "bnb-llama-float"


def load(case: str, **kw):
    entry = META["cases"][case]
    dtype = {"auto": None, "bfloat16": torch.bfloat16}[entry["dtype"]]
    return AutoModelForCausalLM.from_pretrained(MODELS / entry["fixture"], torch_dtype=dtype,
                                                quantization_config=BitsAndBytesConfig(**entry["kwargs"]), **kw)


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits.float()


def sha(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()[:16]


def expected(case: str) -> torch.Tensor:
    return LOGITS.get(f"{case}.logits_dequant", LOGITS[f"{case}.logits"])


@pytest.mark.parametrize("case", sorted(c for c, e in META["cases"].items() if e["logits_are_golden"]))
def test_logits_equal_the_reference(case):
    model = load(case)   # 8-bit: LLM.int8() by default, the reference's algorithm
    # the backends (int8 x int8 kernels, fused decode step, norms) sum in their own order
    assert (logits(model) - expected(case)).abs().max() < 2e-6
    plain(model)   # the plain math: the reference's numbers (0.0 on the machine that made them)
    assert (logits(model) - expected(case)).abs().max() <= 1e-6


@pytest.mark.parametrize("case", sorted(META["cases"]))
def test_saved_tensors_are_the_references_bytes(case, tmp_path):
    entry = META["cases"][case]
    load(case).save_pretrained(tmp_path)
    saved = load_file(str(tmp_path / "model.safetensors"))
    assert {k: [str(t.dtype).replace("torch.", ""), list(t.shape), sha(t)] for k, t in saved.items()} == entry["tensors"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["quantization_config"] == entry["quantization_config"]
    assert (entry["roundtrip_max_abs_diff"], entry["roundtrip_tensors_equal"]) == (0.0, True)   # the reference read it


def test_which_layers_are_quantized():
    int8 = load("llama-int8")
    kinds = {n: type(m).__name__ for n, m in int8.named_modules() if n.endswith(("proj", "lm_head"))}
    assert kinds.pop("lm_head") == "CpuLinear" and set(kinds.values()) == {"CpuLinear8bit"} and len(kinds) == 7
    # skip modules given: they replace the default, so lm_head is int8; "mlp" matches names that
    # start or end with it, not "model.layers.0.mlp.up_proj" (the reference's bytes say the same)
    skip = load("llama-int8-skip")
    kinds = {n: type(m).__name__ for n, m in skip.named_modules() if n.endswith(("proj", "lm_head"))}
    assert kinds["lm_head"] == "CpuLinear8bit" and kinds["model.layers.0.mlp.up_proj"] == "CpuLinear8bit"
    up = AutoModelForCausalLM.from_pretrained(FLOAT, quantization_config=BitsAndBytesConfig(
        load_in_8bit=True, llm_int8_skip_modules=["up_proj", r"model\.layers\.0\.self_attn\.[qk]_proj"]))
    kinds = {n: type(m).__name__ for n, m in up.named_modules() if n.endswith(("proj", "lm_head"))}
    assert [n for n, k in kinds.items() if k == "CpuLinear"] == [
        "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.0.mlp.up_proj"]
    gpt2 = load("gpt2-nf4-dq")   # GPT-2's Conv1D layers too
    assert type(gpt2.transformer.h[0].attn.c_attn) is CpuLinear4bit and gpt2.is_loaded_in_4bit


@pytest.mark.parametrize("folder, case", [("bnb-llama-int8", "llama-int8"), ("bnb-llama-nf4-dq", "llama-nf4-dq")])
def test_reference_saved_folder_loads(folder, case, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(MODELS / folder)
    assert {type(m) for m in model.modules()} & {CpuLinear8bit, CpuLinear4bit}
    assert (logits(model) - expected(case)).abs().max() < 2e-6   # int8: LLM.int8(), the default
    model.save_pretrained(tmp_path)   # and saving it again writes the same file
    a, b = load_file(str(tmp_path / "model.safetensors")), load_file(str(MODELS / folder / "model.safetensors"))
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_gpt2_4bit_matches_an_independent_dequantization():
    # the reference's CPU numbers are not a golden for this narrow model (see golden_bnb.py); here
    # every 4-bit layer is replaced by a float linear holding our slow dequantization of its bytes
    from tests.test_quantization_formats import slow_dequant_4bit
    from pretrained.quantization.formats import code_4bit

    model = load("gpt2-nf4-dq")
    want_model = load("gpt2-nf4-dq")
    for name, m in list(want_model.named_modules()):
        if isinstance(m, Linear4bit):
            n = m.in_features * m.out_features
            w = slow_dequant_4bit(m.weight, m.block_absmax().tolist(), code_4bit("nf4").tolist(), n, 64)
            lin = torch.nn.Linear(m.in_features, m.out_features)
            lin.weight.data = torch.tensor(w).view(m.out_features, m.in_features)
            lin.bias.data = m.bias.data
            parent, _, child = name.rpartition(".")
            setattr(want_model.get_submodule(parent), child, lin)
    assert (logits(model) - logits(want_model)).abs().max() < 1e-5


def test_round_trip_and_llm_int8_default(tmp_path):
    model = load("llama-int8")
    assert all(m.llm_int8 for m in model.modules() if isinstance(m, Linear8bit))
    default = logits(model)
    # the default is bitsandbytes' LLM.int8(): the reference's logits (the weight-only way was
    # 0.0387 from them, bnb.json's ours_weight_only_max_abs_diff)
    assert (default - expected("llama-int8")).abs().max() < 2e-6
    model.save_pretrained(tmp_path)
    back = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert torch.equal(logits(back), default) and back.is_loaded_in_8bit
    # weight-only on request (set_llm_int8(model, False)) is nearer the float model than LLM.int8()
    # (activations in int8), and no longer the reference's numbers
    full = logits(AutoModelForCausalLM.from_pretrained(FLOAT))
    assert set_llm_int8(model, False) == 7
    weight_only = logits(model)
    assert (weight_only - full).abs().max() < (default - full).abs().max()
    assert (weight_only - full).abs().max() < 0.02 * full.abs().max()
    assert (weight_only - expected("llama-int8")).abs().max() > 1e-3
    assert set_llm_int8(model, True) == 7 and torch.equal(logits(model), default)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("swap", ["backends", "plain"])
def test_8bit_training_numbers_are_the_references(mode, swap):
    # bitsandbytes on the CPU: LLM.int8() in eval mode, weight-only in training mode (its
    # MatMul8bitFp); the input's gradient through the dequantized weight either way (LLM.int8()'s
    # own autograd would differentiate its row maxima: ~107 off on gradients of ~43)
    model = load("llama-int8").train(mode == "train")
    if swap == "plain":
        plain(model)
    embeds = model.get_input_embeddings()(IDS).detach().requires_grad_()
    out = model(inputs_embeds=embeds).logits
    (out.float() * LOGITS["llama-int8.grad_weights"]).sum().backward()
    want = LOGITS[f"llama-int8.{mode}.embeds_grad"]
    assert (embeds.grad - want).abs().max() <= 1e-6 * want.abs().max()
    if mode == "train":
        assert (out - LOGITS["llama-int8.train.logits"]).abs().max() < 2e-6


def test_backend_swap_computes_the_plain_numbers():
    for case in ("llama-int8", "llama-nf4-dq", "llama-fp4-dq-bf16"):
        model = load(case)
        fast = logits(model)
        layer = model.model.layers[0].mlp.down_proj
        fast_w = layer.dequantize()
        assert plain(model) >= 7 and not any(type(m) in (CpuLinear8bit, CpuLinear4bit) for m in model.modules())
        assert torch.equal(layer.dequantize(), fast_w)   # the byte table: the very same products
        # the whole model: int8 scales after the sum instead of on each weight, and the other
        # swapped modules (rows kernels, norms) round differently too
        assert (logits(model) - fast).abs().max() < 1e-5
        assert accelerate(model) >= 7 and torch.equal(logits(model), fast)


def test_int8_fast_path_in_bfloat16():
    lin = torch.nn.Linear(64, 48)
    q = Linear8bit.from_float(lin.weight, lin.bias, llm_int8=False).to(torch.bfloat16)   # weight-only
    assert q.SCB.dtype == torch.float32 and q.bias.dtype == torch.bfloat16
    x = torch.randn(3, 5, 64, dtype=torch.bfloat16)
    slow = q(x)
    accelerate(torch.nn.Sequential(q))
    assert type(q) is CpuLinear8bit
    fast = q(x)
    assert fast.dtype == torch.bfloat16 and (fast.float() - slow.float()).abs().max() < 0.02 * slow.abs().max()


@pytest.mark.parametrize("rows", [1, 2, 16])
def test_int8_fast_path_in_float32_equals_the_int8_product(rows):
    # one row goes through torch's int8 op, several through the widened codes: both are
    # sum(x * q) * SCB / 127 plus the bias, checked against that formula in float64
    lin = torch.nn.Linear(96, 40)
    q = Linear8bit.from_float(lin.weight, lin.bias, llm_int8=False)   # weight-only
    x = torch.randn(rows, 96)
    accelerate(torch.nn.Sequential(q))
    assert type(q) is CpuLinear8bit
    expected = (x.double() @ q.weight.double().T) * (q.SCB.double() / 127.0) + q.bias.double()
    assert (q(x).double() - expected).abs().max() < 1e-5


def mapped_files() -> str:
    import gc

    gc.collect()
    return Path("/proc/self/maps").read_text() if Path("/proc/self/maps").exists() else ""


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("kwargs", [{"load_in_8bit": True}, {"load_in_4bit": True}])
def test_quantizing_while_loading_leaves_the_checkpoint_unmapped(tmp_path, kwargs):
    # the float32 file's pages, each read once to quantize, must not stay resident through
    # tensors that are still views of the mapping (the float embedding, norms, a float head)
    folder = tmp_path / "float"
    shutil.copytree(FLOAT, folder)
    model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32, **kwargs)
    assert str(folder / "model.safetensors") not in mapped_files()
    plain_model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
    assert str(folder / "model.safetensors") in mapped_files()   # the plain float load maps it lazily
    del plain_model
    assert model.model.embed_tokens.weight.dtype == torch.float32


def test_memory_footprint_counts_the_real_bytes():
    full = AutoModelForCausalLM.from_pretrained(FLOAT)
    linears = {n: m for n, m in full.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"}
    float_bytes = sum(m.weight.numel() * 4 for m in linears.values())
    int8_bytes = sum(m.weight.numel() + m.out_features * 4 for m in linears.values())   # codes + SCB
    assert load("llama-int8").get_memory_footprint() == full.get_memory_footprint() - float_bytes + int8_bytes
    # nf4 + double quant: half a byte a weight, one uint8 absmax per 64, the tables per layer
    nf4 = sum(m.weight.numel() // 2 + m.weight.numel() // 64 + 16 * 4 + -(-m.weight.numel() // 64 // 256) * 4
              + 256 * 4 for m in linears.values())
    assert load("llama-nf4-dq").get_memory_footprint() == full.get_memory_footprint() - float_bytes + nf4


def test_casting_keeps_statistics_in_float32():
    model = load("llama-nf4-dq").to(torch.bfloat16)
    layer = model.model.layers[0].mlp.up_proj
    assert layer.absmax.dtype == torch.uint8 and layer.nested_absmax.dtype == torch.float32
    assert layer.quant_map.dtype == torch.float32 and model.model.norm.weight.dtype == torch.bfloat16


# --- refusals ----------------------------------------------------------------------------------
def copy_with_config(tmp_path, folder: str, change) -> Path:
    dest = tmp_path / folder
    shutil.copytree(MODELS / folder, dest)
    config = json.loads((dest / "config.json").read_text())
    change(config)
    (dest / "config.json").write_text(json.dumps(config))
    return dest


def test_quantized_tensors_without_a_config_saying_how(tmp_path):
    for folder in ("bnb-llama-int8", "bnb-llama-nf4-dq"):
        dest = copy_with_config(tmp_path, folder, lambda c: c.pop("quantization_config"))
        with pytest.raises(CheckpointError, match="no quantization_config"):
            AutoModelForCausalLM.from_pretrained(dest)


@pytest.mark.parametrize("method", ["aqlm", "hqq"])
def test_other_methods_refused(tmp_path, method):
    dest = copy_with_config(tmp_path, "bnb-llama-float", lambda c: c.update(
        quantization_config={"quant_method": method, "bits": 4, "group_size": 128}))
    with pytest.raises(UnsupportedOptionError, match=f"quant_method='{method}' \\(not implemented yet\\).*bitsandbytes"):
        AutoModelForCausalLM.from_pretrained(dest)


def test_conflicting_and_cuda_only_options():
    with pytest.raises(InvalidInputError, match="choose one"):
        AutoModelForCausalLM.from_pretrained(FLOAT, load_in_8bit=True, load_in_4bit=True)
    with pytest.raises(InvalidInputError, match="not both"):
        AutoModelForCausalLM.from_pretrained(FLOAT, load_in_8bit=True,
                                             quantization_config=BitsAndBytesConfig(load_in_8bit=True))
    with pytest.raises(InvalidInputError, match="saved quantized as 'llm_int8'"):
        AutoModelForCausalLM.from_pretrained(MODELS / "bnb-llama-int8", load_in_4bit=True)
    with pytest.raises(UnsupportedOptionError, match="llm_int8_enable_fp32_cpu_offload"):
        AutoModelForCausalLM.from_pretrained(FLOAT, quantization_config=BitsAndBytesConfig(
            load_in_8bit=True, llm_int8_enable_fp32_cpu_offload=True))


def test_load_in_8bit_shortcut_and_4bit_compute_dtype():
    m8 = AutoModelForCausalLM.from_pretrained(FLOAT, load_in_8bit=True)
    assert m8.is_loaded_in_8bit and m8.config.quantization_config["load_in_8bit"] is True
    m4 = AutoModelForCausalLM.from_pretrained(FLOAT, quantization_config=BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16))
    layer = m4.model.layers[0].self_attn.q_proj
    assert layer.compute_dtype is torch.bfloat16 and logits(m4).dtype == torch.float32
    # computed in bfloat16: near the float32-compute model, not equal to it
    f32 = logits(AutoModelForCausalLM.from_pretrained(FLOAT, quantization_config=BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4")))
    diff = (logits(m4) - f32).abs().max()
    assert 0 < diff < 0.05 * f32.abs().max()


def test_float_weights_are_quantized_one_at_a_time(monkeypatch):
    """Quantize-on-load streams: when a layer's float weight is read, no earlier one is alive."""
    import gc
    import weakref

    from pretrained.io.loading import Checkpoint

    alive, most = [], []
    real_get = Checkpoint.get

    def get(self, key):
        t = real_get(self, key)
        if key.endswith("proj.weight"):
            gc.collect()
            most.append(sum(r() is not None for r in alive))
            alive.append(weakref.ref(t))
        return t

    monkeypatch.setattr(Checkpoint, "get", get)
    model = AutoModelForCausalLM.from_pretrained(FLOAT, load_in_4bit=True)
    assert len(most) == 7 and max(most) == 0 and isinstance(model.model.layers[0].mlp.up_proj, Linear4bit)


def test_quant_storage_round_trip(tmp_path):
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_quant_storage="bfloat16")
    model = AutoModelForCausalLM.from_pretrained(FLOAT, quantization_config=q)
    model.save_pretrained(tmp_path)
    saved = load_file(str(tmp_path / "model.safetensors"))
    w = saved["model.layers.0.mlp.up_proj.weight"]
    assert w.dtype == torch.bfloat16 and w.numel() * 2 == 64 * 128 // 2   # the same bytes, viewed
    back = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert torch.equal(logits(back), logits(model))
    assert back.model.layers[0].mlp.up_proj.quant_storage is torch.bfloat16
