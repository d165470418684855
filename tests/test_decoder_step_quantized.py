"""The fused Llama decode step (``backends.decoder`` over ``decoder.c``) on bitsandbytes-quantized
linears (issue 13): LLM.int8() rows (``int8_rows``) and NF4 / FP4 codes (``bnb_linear``), float32
and bfloat16 steps, against the same layers run as modules (the plain ``DecoderLayers``); every
instruction-set variant; and where it steps aside (weight-only int8 in bfloat16, QLoRA, 4-bit
layers the kernel cannot take) or rebuilds its plan (statistics written in place, a new threshold).

The linears are the modules' own kernel calls; their inputs differ from the modules' by float
rounding (the step's norms, attention and SiLU sum in another order), and LLM.int8() rounds its
activations to float16 and to a per-row int8 grid, so a last-bit difference can move a value
across a grid step: int8 steps are compared within that way's own error (0 on these fixtures on
the default variant), 4-bit ones as the float steps are. Expected values are the modules'."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pretrained import AutoModelForCausalLM, BitsAndBytesConfig
from pretrained.backends import build
from pretrained.backends import decoder as dec
from pretrained.backends.quantized import CpuLinear4bit, CpuLinear8bit
from tests.test_decoder_step import _close, _decode, _one_step, _padded

pytestmark = pytest.mark.skipif(not build.available(),
                                reason="no C kernels on this machine: " + build.describe())

FIX = Path(__file__).parent / "fixtures" / "models"
TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2}
INT8_TOL = {torch.float32: 1e-3, torch.bfloat16: 1e-2}


@pytest.fixture
def calls(monkeypatch):
    """One entry per decode step that reached the C call (probes excluded): whether it ran."""
    seen = []
    real = dec._step

    def spy(plan, specs, n_layers, *args):
        y = real(plan, specs, n_layers, *args)
        if specs is plan.specs:
            seen.append(y is not None)
        return y

    monkeypatch.setattr(dec, "_step", spy)
    return seen


@pytest.fixture(params=list(build.VARIANTS))
def variant(request, monkeypatch):
    """Each instruction-set variant's library in turn (PRETRAINED_KERNELS=avx2 ... amx)."""
    name = request.param
    if name not in build.runnable():
        pytest.skip(f"this CPU cannot run {name}")
    try:
        lib = build.load_variant(name)
    except build.KernelsUnavailable as e:
        pytest.skip(str(e))
    monkeypatch.setattr(build, "_lib", lib)
    monkeypatch.setattr(build, "_bf16", lib.bf16)
    monkeypatch.setattr(build, "_tiles", lib.tiles)
    return name


def _load(name: str, dtype: torch.dtype = torch.float32, **quant):
    kw = {} if dtype == torch.float32 else {"torch_dtype": dtype}
    if quant:
        kw["quantization_config"] = BitsAndBytesConfig(**quant)
    return AutoModelForCausalLM.from_pretrained(FIX / name, **kw).eval()


def _fused_runs(dtype: torch.dtype) -> bool:
    return dtype == torch.float32 or build._bf16


def _check(model, dtype, calls, tol, steps: int = 4, b: int = 3):
    ids, mask = _padded(model.config.vocab_size, b=b)
    got, cache = _decode(model, ids, mask, steps, fused=True)
    want, ref_cache = _decode(model, ids, mask, steps, fused=False)
    assert calls == ([True] * steps if _fused_runs(dtype) else [])
    for a, w in zip(got, want):
        assert _close(a.float(), w.float(), tol)
    for i in range(len(cache)):
        for a, w in zip(cache.layer(i), ref_cache.layer(i)):
            assert _close(a.float(), w.float(), tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int8_checkpoint_equals_its_modules(dtype, calls):
    model = _load("bnb-llama-int8", dtype)
    assert any(type(m) is CpuLinear8bit for m in model.modules())
    _check(model, dtype, calls, INT8_TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("threshold", [6.0, 0.5, 0.0])
def test_int8_outlier_columns_and_biases(threshold, dtype, calls):
    """llama-bias-headdim (q/k/v biases) quantized at load; a threshold of 0.5 makes many
    outlier columns (multiplied in float32 by the kernel), 0 none; 16 sequences."""
    model = _load("llama-bias-headdim", dtype, load_in_8bit=True, llm_int8_threshold=threshold)
    assert sum(type(m) is CpuLinear8bit for m in model.modules()) == 14
    _check(model, dtype, calls, INT8_TOL[dtype], steps=3, b=16)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_nf4_double_quant_checkpoint_equals_its_modules(dtype, calls):
    """Compute dtype float32 (the checkpoint's): in a bfloat16 step the kernel widens the rows
    and rounds its float32 outputs to bfloat16, as the modules' casts do."""
    model = _load("bnb-llama-nf4-dq", dtype)
    assert any(type(m) is CpuLinear4bit and m.nested_offset is not None for m in model.modules())
    _check(model, dtype, calls, TOL[dtype])


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_4bit_quantized_at_load_equals_its_modules(quant_type, dtype, calls):
    model = _load("bnb-llama-float", dtype, load_in_4bit=True, bnb_4bit_quant_type=quant_type,
                  bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=quant_type == "fp4")
    _check(model, dtype, calls, TOL[dtype], b=16)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", ["int8", "nf4"])
def test_every_variant_equals_the_modules(kind, dtype, variant, calls):
    quant = {"load_in_8bit": True, "llm_int8_threshold": 0.5} if kind == "int8" else \
        {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True}
    model = _load("bnb-llama-float", dtype, **quant)
    _check(model, dtype, calls, (INT8_TOL if kind == "int8" else TOL)[dtype], steps=3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_weight_only_int8(dtype, calls):
    """set_llm_int8(model, False): float32 steps take the modules' int8 row kernel (float
    activations, no int8 grid), bfloat16 ones run the modules (torch's int8 op there)."""
    from pretrained.quantization import set_llm_int8

    model = _load("llama-bias-headdim", dtype, load_in_8bit=True)
    assert set_llm_int8(model, False) == 14
    ids, mask = _padded(model.config.vocab_size)
    got, _ = _decode(model, ids, mask, 3, fused=True)
    want, _ = _decode(model, ids, mask, 3, fused=False)
    assert calls == ([True] * 3 if dtype == torch.float32 else [])
    for a, w in zip(got, want):
        assert _close(a.float(), w.float(), TOL[dtype])


def test_4bit_layers_the_kernel_cannot_take_run_the_modules(calls):
    """llama-gqa's down_proj has 48 inputs (the 4-bit kernel needs a multiple of 32)."""
    model = _load("llama-gqa", load_in_4bit=True, bnb_4bit_quant_type="nf4")
    ids, mask = _padded(model.config.vocab_size)
    got, _ = _decode(model, ids, mask, 2, fused=True)
    want, _ = _decode(model, ids, mask, 2, fused=False)
    assert calls == []
    assert all(torch.equal(a, w) for a, w in zip(got, want))


def test_qlora_runs_the_modules(calls):
    from pretrained.peft import LoraConfig, get_peft_model

    model = _load("bnb-llama-nf4-dq")
    with torch.no_grad():
        _one_step(model)
    assert calls == [True]
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).eval()
    calls.clear()
    with torch.no_grad():
        _one_step(peft.base_model.model if hasattr(peft, "base_model") else peft)
    assert calls == []


def test_statistics_written_in_place_and_a_new_threshold_are_used(calls):
    """The plan reads SCB where it lies, watches the sources of what it copies (the double-quant
    absmax) and records the threshold: after each change the step equals the modules again."""
    for name, change in (("bnb-llama-int8", lambda m: m.SCB.mul_(1.5)),
                         ("bnb-llama-int8", lambda m: setattr(m, "threshold", 0.25)),
                         ("bnb-llama-nf4-dq", lambda m: m.nested_absmax.mul_(1.5))):
        model = _load(name)
        ids, mask = _padded(model.config.vocab_size)
        _decode(model, ids, mask, 1, fused=True)   # a plan built
        with torch.no_grad():
            for m in model.modules():
                if type(m) in (CpuLinear8bit, CpuLinear4bit):
                    change(m)
        calls.clear()
        got, _ = _decode(model, ids, mask, 2, fused=True)
        want, _ = _decode(model, ids, mask, 2, fused=False)
        assert calls == [True, True]
        for a, w in zip(got, want):
            assert _close(a, w, INT8_TOL[torch.float32])
