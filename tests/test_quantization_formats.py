"""The quantization number formats and BitsAndBytesConfig: against bitsandbytes' own
quantize/dequantize outputs (goldens from scripts/golden_bnb.py, bitsandbytes 0.50.2) and
against an independent element-by-element dequantization written here."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pretrained import BitsAndBytesConfig
from pretrained.errors import InvalidInputError, UnsupportedOptionError
from pretrained.quantization import formats as F
from pretrained.quantization.config import quantization_config_from_dict

GOLD = Path(__file__).parent / "fixtures" / "goldens" / "bnb"
BNB = load_file(str(GOLD / "formats.safetensors"))
META = json.loads((GOLD / "bnb.json").read_text())

# the NF4 values as the QLoRA paper prints them (appendix E), to 4 decimals
NF4_PAPER = [-1.0, -0.6962, -0.5251, -0.3949, -0.2844, -0.1848, -0.0911, 0.0,
             0.0796, 0.1609, 0.2461, 0.3379, 0.4407, 0.5626, 0.7230, 1.0]


def slow_dequant_4bit(packed: torch.Tensor, absmax: list[float], code: list[float], n: int, bs: int) -> list[float]:
    """One value at a time with Python ints: byte i holds values 2i (high nibble) and 2i+1."""
    out = []
    for i in range(n):
        byte = int(packed.reshape(-1)[i // 2])
        nib = byte >> 4 if i % 2 == 0 else byte & 15
        out.append(code[nib] * absmax[i // bs])
    return out


@pytest.mark.parametrize("qt", ["nf4", "fp4"])
@pytest.mark.parametrize("dq", [False, True])
def test_4bit_equals_bitsandbytes(qt, dq):
    w, tag = BNB["weight"], f"{qt}{'.dq' if dq else ''}"
    packed, absmax = F.quantize_4bit(w, 64, qt)
    assert torch.equal(packed, BNB[f"{tag}.packed"])
    if dq:
        codes, nested, offset = F.compress_absmax(absmax)
        assert torch.equal(codes, BNB[f"{tag}.absmax"]) and torch.equal(nested, BNB[f"{tag}.nested_absmax"])
        assert offset == BNB[f"{tag}.offset"].item()
        assert torch.equal(F.dynamic_map(), BNB[f"{tag}.nested_quant_map"])
        absmax = F.decompress_absmax(codes, nested, F.dynamic_map(), offset)
    else:
        assert torch.equal(absmax, BNB[f"{tag}.absmax"])
    ours = F.dequantize_4bit(packed, absmax, 64, qt, tuple(w.shape), torch.float32)
    assert torch.equal(ours, BNB[f"{tag}.dequant"])


@pytest.mark.parametrize("qt", ["nf4", "fp4"])
def test_4bit_dequant_against_independent_code(qt):
    w = BNB["weight"]
    packed, absmax = F.quantize_4bit(w, 64, qt)
    code = F.code_4bit(qt).tolist()
    want = slow_dequant_4bit(packed, absmax.tolist(), code, w.numel(), 64)
    got = F.dequantize_4bit(packed, absmax, 64, qt, tuple(w.shape), torch.float32).reshape(-1).tolist()
    assert got == pytest.approx(want, rel=1e-6, abs=0)
    # the nearest code: no other code value is closer to the scaled weight (ties aside)
    scaled = (w.reshape(-1) / absmax.repeat_interleave(64)[: w.numel()]).tolist()
    chosen = F.unpack_4bit(packed, w.numel()).tolist()
    assert all(abs(code[c] - s) <= min(abs(v - s) for v in code) + 1e-7 for c, s in zip(chosen, scaled))
    # and the absmax is each block's largest magnitude
    blocks = w.reshape(-1).abs().tolist()
    assert absmax.tolist() == pytest.approx([max(blocks[i:i + 64]) for i in range(0, len(blocks), 64)], rel=0)


def test_code_tables():
    assert F.code_4bit("nf4").tolist() == pytest.approx(NF4_PAPER, abs=6e-5)
    fp4 = F.code_4bit("fp4")
    assert fp4[:8].tolist() == pytest.approx([0, 0.0625 / 12, 8 / 12, 1, 4 / 12, 6 / 12, 2 / 12, 3 / 12])
    assert torch.equal(fp4[8:], -fp4[:8])
    dyn = F.dynamic_map()
    assert dyn.numel() == 256 and torch.equal(dyn, dyn.sort().values) and dyn[-1] == 1 and (dyn == 0).any()
    assert F.code_4bit("nf4") is not F.code_4bit("nf4")   # fresh tensors: safetensors refuses shared ones
    with pytest.raises(ValueError, match="nf4"):
        F.code_4bit("int4")


def test_int8_rows_equal_bitsandbytes():
    q, scb = F.quantize_rows_int8(BNB["weight"])
    assert torch.equal(q, BNB["int8.CB"]) and torch.equal(scb, BNB["int8.SCB"])
    # independent: each row's largest magnitude maps to +-127, and q * SCB / 127 is the weight
    w16 = BNB["weight"].half().float()
    assert torch.equal(q.abs().amax(dim=1), torch.full((37,), 127, dtype=torch.int8))
    back = F.dequantize_rows_int8(q, scb)
    assert ((back - w16).abs() <= scb.unsqueeze(1) / 127 / 2 + 1e-7).all()


def test_json_state_round_trip():
    info = {"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [3, 4]}
    t = F.pack_json(info)
    assert t.dtype == torch.uint8 and bytes(t.tolist()) == json.dumps(info).encode()
    assert F.unpack_json(t) == info
    with pytest.raises(ValueError):
        F.unpack_json(F.pack_json([1, 2]))   # type: ignore[arg-type]


# --- BitsAndBytesConfig ---------------------------------------------------------------------------
def test_config_dict_is_the_references():
    for entry in META["cases"].values():
        ref = entry["quantization_config"]
        ours = BitsAndBytesConfig(**entry["kwargs"]).to_dict()
        assert ours == ref
        assert BitsAndBytesConfig.from_dict(ref) == BitsAndBytesConfig(**entry["kwargs"])


def test_config_fields_and_defaults():
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype="bfloat16", bnb_4bit_quant_storage=torch.bfloat16)
    assert q.bnb_4bit_compute_dtype is torch.bfloat16 and q.bnb_4bit_quant_storage is torch.bfloat16
    assert q.quantization_method() == "fp4" and q.llm_int8_threshold == 6.0
    assert BitsAndBytesConfig(load_in_8bit=True).quantization_method() == "llm_int8"
    assert BitsAndBytesConfig().quantization_method() is None


@pytest.mark.parametrize("kwargs, match", [
    (dict(load_in_8bit=True, load_in_4bit=True), "choose one"),
    (dict(load_in_4bit=True, bnb_4bit_quant_type="int4"), "bnb_4bit_quant_type='int4'"),
    (dict(load_in_4bit="yes"), "load_in_4bit='yes'"),
    (dict(load_in_8bit=True, llm_int8_threshold=-1), "llm_int8_threshold=-1"),
    (dict(load_in_8bit=True, llm_int8_skip_modules="lm_head"), "llm_int8_skip_modules='lm_head'"),
    (dict(load_in_4bit=True, bnb_4bit_compute_dtype="int8"), "bnb_4bit_compute_dtype='int8'"),
    (dict(load_in_4bit=True, bnb_4bit_quant_storage="int4"), "bnb_4bit_quant_storage='int4'"),
    (dict(load_in_4bit=True, bnb_4bit_blocksize=32), "bnb_4bit_blocksize"),
])
def test_config_refuses_bad_values(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        BitsAndBytesConfig(**kwargs)


@pytest.mark.parametrize("method", ["aqlm", "hqq", "something"])
def test_other_quant_methods_refused_by_name(method):
    with pytest.raises(UnsupportedOptionError, match=rf"quant_method='{method}'.*'bitsandbytes'"):
        quantization_config_from_dict({"quant_method": method, "bits": 4})


def test_cpu_refusals():
    cpu = torch.device("cpu")
    with pytest.raises(UnsupportedOptionError, match="llm_int8_enable_fp32_cpu_offload"):
        BitsAndBytesConfig(load_in_8bit=True, llm_int8_enable_fp32_cpu_offload=True).check_device(cpu)
    with pytest.raises(UnsupportedOptionError, match="llm_int8_has_fp16_weight"):
        BitsAndBytesConfig(load_in_8bit=True, llm_int8_has_fp16_weight=True).check_device(cpu)
    with pytest.raises(InvalidInputError, match="neither load_in_8bit nor load_in_4bit"):
        BitsAndBytesConfig().check_device(cpu)
