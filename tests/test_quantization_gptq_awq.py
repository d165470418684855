"""GPTQ and AWQ checkpoints: codes read from the packed layouts against an unpack written here
bit by bit (not the library's), logits against the reference's on the weights they stand for
(scripts/golden_gptq_awq.py; AWQ folders packed by AutoAWQ's own writers), pack -> unpack round
trips, save/load byte equality, the int4/int8 backend against the plain math, and refusals."""

import copy
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pretrained import AutoModelForCausalLM
from pretrained.backends import accelerate, plain
from pretrained.backends.group_quant import CpuGroupQuantLinear
from pretrained.errors import CheckpointCorruptError, CheckpointError, InvalidInputError, UnsupportedOptionError
from pretrained.quantization import AwqConfig, GPTQConfig, GroupQuantLinear, quantization_config_from_dict
from pretrained.quantization.packing import pack_gptq

FIX = Path(__file__).parent / "fixtures"
MODELS = FIX / "models"
GOLD = FIX / "goldens" / "gptq_awq"
META = json.loads((GOLD / "gptq_awq.json").read_text())
LOGITS = load_file(str(GOLD / "gptq_awq.safetensors"))
IDS = LOGITS["input_ids"]
CASES = sorted(META["cases"])
LAYERS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def load(case: str, **kw):
    return AutoModelForCausalLM.from_pretrained(MODELS / case, torch_dtype=kw.pop("torch_dtype", torch.float32), **kw)


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits.float()


# --- an independent unpack: Python integers, one bit field at a time ---------------------------
def stream(words: list[int]) -> int:
    """32-bit words (signed) -> one little-endian integer."""
    return sum((w & 0xFFFFFFFF) << (32 * k) for k, w in enumerate(words))


def field(value: int, index: int, bits: int) -> int:
    return (value >> (bits * index)) & ((1 << bits) - 1)


NIBBLE_OF_OUTPUT = {0: 0, 1: 4, 2: 1, 3: 5, 4: 2, 5: 6, 6: 3, 7: 7}   # AWQ GEMM: output j -> nibble


def slow_codes(tensors: dict, qc: dict, n_in: int, n_out: int):
    """(q[o][i], zero[g][o], scale[g][o], g_idx[i]) as nested lists, read from the published layout."""
    bits, gs = qc["bits"], qc["group_size"]
    groups = 1 if gs == -1 else -(-n_in // gs)
    qw, qz = tensors["qweight"].tolist(), tensors["qzeros"].tolist()
    if qc["quant_method"] == "gptq":
        cols = [stream([row[o] for row in qw]) for o in range(n_out)]        # along the input
        q = [[field(cols[o], i, bits) for i in range(n_in)] for o in range(n_out)]
        one = 1 if qc["checkpoint_format"] == "gptq" else 0
        z = [[field(stream(qz[g]), o, bits) + one for o in range(n_out)] for g in range(groups)]
        s = tensors["scales"].float().tolist()
        g_idx = tensors["g_idx"].tolist()
    elif qc["version"] == "gemm":
        q = [[(qw[i][o // 8] & 0xFFFFFFFF) >> (4 * NIBBLE_OF_OUTPUT[o % 8]) & 15 for i in range(n_in)]
             for o in range(n_out)]
        z = [[(qz[g][o // 8] & 0xFFFFFFFF) >> (4 * NIBBLE_OF_OUTPUT[o % 8]) & 15 for o in range(n_out)]
             for g in range(groups)]
        s = tensors["scales"].float().tolist()
        g_idx = [i // gs for i in range(n_in)]
    else:   # gemv: along the input in plain order; zeros and scales per output row, padded
        q = [[(qw[o][i // 8] & 0xFFFFFFFF) >> (4 * (i % 8)) & 15 for i in range(n_in)] for o in range(n_out)]
        z = [[(qz[o][g // 8] & 0xFFFFFFFF) >> (4 * (g % 8)) & 15 for o in range(n_out)] for g in range(groups)]
        sc = tensors["scales"].float().tolist()
        s = [[sc[o][g] for o in range(n_out)] for g in range(groups)]
        g_idx = [i // gs for i in range(n_in)]
    return q, z, s, g_idx


@pytest.mark.parametrize("case", CASES)
def test_codes_equal_an_independent_unpack(case):
    qc = META["cases"][case]["quantization_config"]
    raw = load_file(str(MODELS / case / "model.safetensors"))
    model = load(case)
    plain(model)
    for name in LAYERS:
        layer = model.model.layers[0].get_submodule(name)
        assert isinstance(layer, GroupQuantLinear)
        key = f"model.layers.0.{name}."
        tensors = {k[len(key):]: v for k, v in raw.items() if k.startswith(key)}
        q, z, s, g_idx = slow_codes(tensors, qc, layer.in_features, layer.out_features)
        got_q, got_z, got_s, got_g = layer.codes()
        assert got_q.tolist() == q and got_z.tolist() == z and got_g.tolist() == g_idx
        assert got_s.float().tolist() == s
        # the dequantized weight, one value at a time for a few
        w = layer.dequantize()
        for o, i in ((0, 0), (3, 17), (layer.out_features - 1, layer.in_features - 1)):
            g = g_idx[i]
            assert w[o, i].item() == pytest.approx(s[g][o] * (q[o][i] - z[g][o]), abs=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_logits_equal_the_reference_plain_and_fast(case):
    model = load(case)
    fast = logits(model)                       # swapped in by from_pretrained
    assert type(model.model.layers[0].mlp.up_proj) is CpuGroupQuantLinear
    assert (fast - LOGITS[f"{case}.logits"]).abs().max() < 1e-5
    plain(model)
    assert (logits(model) - LOGITS[f"{case}.logits"]).abs().max() < 1e-5


@pytest.mark.parametrize("case,kind", [("gptq-llama-4bit", "_int4"), ("gptq-llama-4bit-actorder-v2", "_int4"),
                                       ("awq-llama-gemm", "_int4"), ("awq-llama-gemv", "_int4"),
                                       ("gptq-llama-8bit-actorder", "_int8"), ("gptq-llama-3bit", "qweight"),
                                       ("gptq-llama-2bit-onegroup", "qweight")])
def test_backend_converts_4_and_8_bit_and_keeps_the_layout(case, kind, tmp_path):
    model = load(case)
    layer = model.model.layers[0].mlp.down_proj
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logits(model)
    assert kind in layer._buffers and ("qweight" in layer._buffers) == (kind == "qweight")
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    # save after the conversion: the very tensors of the checkpoint, and its config
    model.save_pretrained(tmp_path)
    raw, saved = load_file(str(MODELS / case / "model.safetensors")), load_file(str(tmp_path / "model.safetensors"))
    for k, v in raw.items():
        assert torch.equal(saved[k].to(v.dtype) if v.is_floating_point() else saved[k], v), k
    qc = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert {k: qc[k] for k in META["cases"][case]["quantization_config"]} == META["cases"][case]["quantization_config"]
    again = load(tmp_path)
    assert (logits(again) - LOGITS[f"{case}.logits"]).abs().max() < 1e-5


@pytest.mark.parametrize("case", ["gptq-llama-4bit-actorder-v2", "awq-llama-gemm", "gptq-llama-8bit-actorder"])
def test_fast_path_in_bfloat16_within_its_rounding(case):
    model = load(case, torch_dtype=torch.bfloat16)
    x = torch.randn(3, 5, 64, dtype=torch.bfloat16)
    for name in ("self_attn.q_proj", "mlp.down_proj"):
        layer = model.model.layers[0].get_submodule(name)
        xi = x if layer.in_features == 64 else torch.randn(3, 5, layer.in_features, dtype=torch.bfloat16)
        exact = xi.double() @ layer.dequantize(torch.float64).t()
        with torch.no_grad():
            got = layer(xi).double()
        assert "qweight" not in layer._buffers
        # bfloat16 keeps 8 bits: the error is a few units of its rounding of the output's scale
        assert (got - exact).abs().max() <= 2 ** -7 * exact.abs().max() * 2


def test_pickle_deepcopy_move_and_plain_after_conversion():
    model = load("gptq-llama-4bit")
    want = logits(model)
    for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert (logits(other) - want).abs().max() < 1e-6
    model.to(torch.float64)   # a cast goes back to qweight first; the next call converts again
    assert "qweight" in model.model.layers[0].mlp.up_proj._buffers
    assert (logits(model.float()) - want).abs().max() < 1e-6
    assert plain(model) > 0 and (logits(model) - want).abs().max() < 1e-6
    assert accelerate(model) > 0


@pytest.mark.parametrize("bits,fmt,n_in,gs", [(2, "gptq", 64, 16), (3, "gptq", 96, 32), (3, "gptq_v2", 96, -1),
                                              (4, "gptq", 72, 24), (8, "gptq_v2", 40, 8), (4, "gemm", 64, 16),
                                              (4, "gemv", 128, 32), (4, "gemv", 256, 128)])
def test_pack_unpack_round_trip(bits, fmt, n_in, gs):
    gen = torch.Generator().manual_seed(bits * 1000 + n_in)
    out = 48
    groups = 1 if gs == -1 else -(-n_in // gs)
    q = torch.randint(0, 2 ** bits, (out, n_in), dtype=torch.uint8, generator=gen)
    low = 1 if fmt == "gptq" else 0   # v1 cannot store a zero of 0
    zeros = torch.randint(low, 2 ** bits, (groups, out), dtype=torch.int32, generator=gen)
    scales = (torch.rand(groups, out, generator=gen) + 0.01).half()
    g_idx = torch.randperm(n_in, generator=gen) // (n_in if gs == -1 else gs) if fmt.startswith("gptq") else None
    m = GroupQuantLinear.from_codes(q, zeros, scales, g_idx, None, bits=bits, group_size=gs, fmt=fmt)
    got_q, got_z, got_s, got_g = m.codes()
    assert torch.equal(got_q, q) and torch.equal(got_z, zeros) and torch.equal(got_s, scales)
    if g_idx is not None:
        assert torch.equal(got_g.long(), g_idx.long())
    # and read back through the checkpoint path (the state_dict is the checkpoint's tensors)
    again = GroupQuantLinear.from_checkpoint(m.state_dict(), None, in_features=n_in, out_features=out, bits=bits,
                                             group_size=gs, fmt=fmt)
    assert torch.equal(again.dequantize(), m.dequantize())


def test_v1_cannot_hold_a_zero_of_zero():
    with pytest.raises(ValueError, match="gptq_v2"):
        pack_gptq(torch.zeros(8, 32, dtype=torch.uint8), torch.zeros(1, 8, dtype=torch.int32), 4, v1=True)


def test_memory_footprint_is_the_packed_bytes():
    model = load("gptq-llama-4bit")
    layer = model.model.layers[0].mlp.up_proj
    packed = layer.qweight.numel() * 4
    assert packed == 64 * 128 // 2
    before = model.get_memory_footprint()
    logits(model)
    assert model.get_memory_footprint() == before   # int4pack: the same bytes as qweight


def test_lora_trains_over_gptq_layers():
    from pretrained.peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(load("gptq-llama-4bit"))
    logits(model)   # converted first: training must go back to the plain math
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"],
                                            init_lora_weights=False))
    out = peft(input_ids=IDS, labels=IDS)
    out.loss.backward()
    grads = [p.grad for n, p in peft.named_parameters() if "lora_" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


# --- configs and refusals -------------------------------------------------------------------
def copy_with_config(tmp_path, case: str, change) -> Path:
    dest = tmp_path / case
    shutil.copytree(MODELS / case, dest)
    config = json.loads((dest / "config.json").read_text())
    change(config)
    (dest / "config.json").write_text(json.dumps(config))
    return dest


def test_config_dicts():
    g = quantization_config_from_dict({"quant_method": "gptq", "bits": 3, "group_size": -1, "desc_act": True,
                                       "static_groups": False, "checkpoint_format": "gptq_v2"})
    assert isinstance(g, GPTQConfig) and not g.v1 and g.to_dict()["static_groups"] is False
    assert g.to_dict()["checkpoint_format"] == "gptq_v2" and g.act_group_aware is False
    a = quantization_config_from_dict({"quant_method": "awq", "bits": 4, "version": "GEMM", "zero_point": True})
    assert isinstance(a, AwqConfig) and a.to_dict()["version"] == "gemm" and "format" not in a.to_dict()
    assert AwqConfig.from_dict(a.to_dict()) == a


@pytest.mark.parametrize("data,error,match", [
    ({"quant_method": "gptq", "bits": 5}, InvalidInputError, "bits=5"),
    ({"quant_method": "gptq", "bits": 4, "group_size": 0}, InvalidInputError, "group_size=0"),
    ({"quant_method": "gptq", "bits": 4, "checkpoint_format": "marlin"}, UnsupportedOptionError, "marlin"),
    ({"quant_method": "gptq", "bits": 4, "backend": "exllama_v2"}, UnsupportedOptionError, "GPU kernel"),
    ({"quant_method": "awq", "bits": 4, "version": "gemv_fast"}, UnsupportedOptionError, "gemv_fast"),
    ({"quant_method": "awq", "bits": 4, "zero_point": False}, UnsupportedOptionError, "zero_point=False"),
    ({"quant_method": "awq", "bits": 3}, InvalidInputError, "bits=3"),
])
def test_config_refusals(data, error, match):
    with pytest.raises(error, match=match):
        quantization_config_from_dict(data)


def test_gptq_config_on_a_float_checkpoint_is_refused():
    with pytest.raises(UnsupportedOptionError, match="pretrained quantize"):
        AutoModelForCausalLM.from_pretrained(MODELS / "bnb-llama-float", quantization_config=GPTQConfig(bits=4))


def test_asking_for_another_method_than_saved_is_refused():
    with pytest.raises(InvalidInputError, match="saved quantized"):
        load("gptq-llama-4bit", quantization_config=AwqConfig(bits=4))


def test_wrong_bits_or_group_size_is_named(tmp_path):
    dest = copy_with_config(tmp_path, "gptq-llama-4bit", lambda c: c["quantization_config"].update(bits=8))
    with pytest.raises(CheckpointCorruptError, match="does not match the weights"):
        load(dest)
    dest = copy_with_config(tmp_path / "b", "awq-llama-gemm", lambda c: c["quantization_config"].update(group_size=64))
    with pytest.raises(CheckpointCorruptError, match="does not match the weights"):
        load(dest)


def test_packed_tensors_without_a_config_or_a_config_without_tensors(tmp_path):
    dest = copy_with_config(tmp_path, "gptq-llama-4bit", lambda c: c.pop("quantization_config"))
    with pytest.raises(CheckpointError, match="no quantization_config.*quant_method 'gptq'"):
        load(dest)
    dest = copy_with_config(tmp_path / "b", "bnb-llama-float", lambda c: c.update(
        quantization_config={"quant_method": "awq", "bits": 4, "group_size": 32}))
    with pytest.raises(CheckpointCorruptError, match="no '<layer>.qweight'"):
        load(dest)


@pytest.mark.parametrize("case", ["gptq-llama-4bit", "gptq-llama-4bit-actorder-v2", "awq-llama-gemv"])
def test_prefill_rows_take_a_dense_product_with_the_same_numbers(case):
    from pretrained.backends import group_quant

    model = load(case)
    x = torch.randn(2, group_quant.DENSE_ROWS, 64)     # 64 rows: above the threshold
    for name, dense in (("self_attn.q_proj", True), ("self_attn.k_proj", False), ("mlp.up_proj", True)):
        layer = model.model.layers[0].get_submodule(name)
        want = x @ layer.dequantize().t()
        with torch.no_grad():
            few, many = layer(x[:1, :4]), layer(x)
        # out a multiple of 64: the int4pack layout read back (checked against the codes); else the op
        assert layer.__dict__["_gq_dense"] is dense
        assert (many - want).abs().max() < 1e-4 and (few - want[:1, :4]).abs().max() < 1e-4


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc (Linux)")
def test_a_loaded_group_checkpoint_is_no_longer_mapped(tmp_path):
    # every tensor is copied out of the memory-mapped file, so the mapping (and the pages read to
    # load it) goes with the checkpoint
    import gc

    folder = tmp_path / "gptq"
    shutil.copytree(MODELS / CASES[0], folder)
    model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
    gc.collect()
    files = [p.name for p in folder.glob("*.safetensors")]
    assert files and not any(str(folder / f) in Path("/proc/self/maps").read_text() for f in files)
    with torch.no_grad():
        assert torch.isfinite(model(IDS).logits).all()
