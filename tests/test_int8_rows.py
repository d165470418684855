"""LLM.int8() on int8 activations (pretrained/backends/int8_rows.c via bnb_linear.llm_int8_matmul),
on every instruction-set variant this CPU runs (and on AMX-INT8 tiles and off them where there
are tiles): the int32 sums against an integer product computed here from activations quantized
here (float16 rounding, row maxima, round half to even), the float outputs against the plain
math (:func:`llm_int8_linear`, itself checked against the reference's goldens in
test_quantization.py), outlier columns; the swapped :class:`CpuLinear8bit`; and BERT encoders of
int8 linears in one C call (``encoder_i8``) against the same layers run as modules, both ways
(LLM.int8() and weight-only), on every variant."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pretrained.backends import accelerate, build
from pretrained.backends import encoder as encoder_blocks
from pretrained.backends import rows as rk
from pretrained.backends.bnb_linear import llm_int8_matmul
from pretrained.backends.quantized import CpuLinear8bit
from pretrained.models.bert import BertConfig, BertForSequenceClassification
from pretrained.quantization import Linear8bit, set_llm_int8
from pretrained.quantization.int8 import llm_int8_linear

ROWS = (1, 2, 3, 4, 5, 8, 13, 16)
# (out, in): in a multiple of 64 (the tiles), of 32 only, neither; out with a block of 16 and a rest
SHAPES = [(7, 96), (33, 160), (45, 576), (40, 100), (35, 768), (16, 128)]


def _libs() -> list:
    libs = []
    for name in build.runnable():
        try:
            libs.append(build.load_variant(name))
        except build.KernelsUnavailable:
            pass
    return libs


LIBS = _libs()
pytestmark = pytest.mark.skipif(not LIBS, reason="no C kernels on this machine")


def _ways():
    """(library, tiles on) for every variant; the amx variant both with and without its tiles."""
    ways = []
    for lib in LIBS:
        for on in ((1, 0) if lib.int8_tiles(1) else (0,)):
            ways.append((lib, on))
        lib.int8_tiles(1)
    return ways


WAYS = _ways()


def _quantized_here(x: torch.Tensor) -> torch.Tensor:
    """The activations' int8 codes, no outliers: x to float16, per row 127 / max |x16| (as torch
    computes a scalar over a tensor: 127 * (1 / max)), times x16, rounded half to even."""
    x16 = x.to(torch.float16).to(torch.float64)
    inv = (1.0 / x16.abs().amax(dim=1).to(torch.float32)).to(torch.float32) * 127.0
    prod = (x16 * inv.to(torch.float64).unsqueeze(1)).to(torch.float32)   # one float32 rounding
    return torch.round(prod).to(torch.int64)


def _inputs(rows: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """Normal rows, and rows where float16 rounds differently: tiny values (float16 subnormals)
    and large ones (float16's top binade)."""
    x = torch.randn(rows, k, generator=gen)
    if rows > 2:
        x[1] *= 3e-6
        x[2] = x[2].sign() * (30000 + 35000 * torch.rand(k, generator=gen))
    return x


@pytest.mark.parametrize("shape", SHAPES)
def test_int32_sums_equal_an_integer_product(shape):
    out, k = shape
    gen = torch.Generator().manual_seed(out * k)
    w = torch.randint(-127, 128, (out, k), dtype=torch.int8, generator=gen)
    for lib, on in WAYS:
        lib.int8_tiles(on)
        for rows in ROWS:
            x = _inputs(rows, k, gen)
            got = llm_int8_matmul(x, w, None, None, 0.0, lib=lib)
            want = _quantized_here(x) @ w.to(torch.int64).t()
            assert got.dtype == torch.int32 and torch.equal(got.to(torch.int64), want), (lib.variant_name(), rows)
    for lib in LIBS:
        lib.int8_tiles(1)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("outliers", [0, 2, 40])
def test_outputs_equal_the_plain_math(shape, outliers):
    """Scaled as int8_mm_dequant from the exact sums (float32, in its order), outlier columns
    (|x16| >= 6, some rows only) summed in float32 from x: the plain math to float32 rounding."""
    out, k = shape
    gen = torch.Generator().manual_seed(out + k)
    m = Linear8bit.from_float(torch.randn(out, k, generator=gen), torch.randn(out, generator=gen))
    for rows in ROWS:
        x = torch.randn(rows, k, generator=gen) * 2
        if outliers:   # a few columns (some rows only), or more than the tiles sum 16 at a time
            x[0, 3], x[rows - 1, k - 1] = 9.0, -7.5
            x[rows // 2, torch.randperm(k, generator=gen)[:outliers - 2]] = 8.0
        want = llm_int8_linear(x, m.weight, m.SCB, m.bias, 6.0)
        scale = (x.abs() @ m.dequantize().abs().t() + m.bias.abs()).max()
        results = []
        for lib, on in WAYS:
            lib.int8_tiles(on)
            y = llm_int8_matmul(x, m.weight, m.SCB, m.bias, 6.0, lib=lib)
            assert (y - want).abs().max() <= 1e-6 * scale, (lib.variant_name(), on, rows)
            results.append(y)
        # the int32 sums are exact everywhere, and the scaling is the same code or the same
        # operations vectorised: every variant and the tiles give the very same numbers
        assert all(torch.equal(r, results[0]) for r in results)
    for lib in LIBS:
        lib.int8_tiles(1)


def test_kernel_declines_what_it_cannot_take():
    w = torch.zeros(4, 64, dtype=torch.int8)
    scb = torch.ones(4)
    assert llm_int8_matmul(torch.randn(17, 64), w, scb, None, 6.0) is None              # > 16 rows
    assert llm_int8_matmul(torch.randn(2, 64, dtype=torch.float16), w, scb, None, 6.0) is None
    assert llm_int8_matmul(torch.randn(2, 32), w, scb, None, 6.0) is None               # wrong in
    assert llm_int8_matmul(torch.randn(2, 64), w.float(), scb, None, 6.0) is None
    assert llm_int8_matmul(torch.randn(2, 64), w, scb, None, 1e-9) is None   # float16 0: all outliers


def test_swapped_module_takes_the_kernel_with_llm_int8():
    torch.manual_seed(0)
    lin = nn.Linear(96, 40)
    q = Linear8bit.from_float(lin.weight, lin.bias).eval()   # LLM.int8(): the default out of training
    assert q.llm_int8
    x = torch.randn(3, 5, 96) * 3
    slow = q(x)
    accelerate(nn.Sequential(q))
    assert type(q) is CpuLinear8bit
    fast = q(x)
    assert fast.shape == slow.shape and (fast - slow).abs().max() <= 1e-5
    many = torch.randn(3, 7, 96)   # 21 rows: the plain math
    assert torch.equal(q(many), llm_int8_linear(many, q.weight, q.SCB, q.bias, q.threshold))
    with torch.enable_grad():      # autograd through the input: the plain math
        g = x.clone().requires_grad_()
        q(g).sum().backward()
        assert g.grad is not None


def _int8_bert(layers: int = 2, hidden: int = 64, heads: int = 4, inter: int = 128, labels: int = 3):
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=120, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=inter, num_labels=labels)
    model = BertForSequenceClassification(cfg).eval()
    for name, mod in list(model.bert.encoder.named_modules()):
        if type(mod) is nn.Linear:
            parent, _, child = name.rpartition(".")
            setattr(model.bert.encoder.get_submodule(parent), child, Linear8bit.from_float(mod.weight, mod.bias))
    accelerate(model)
    return model.eval()


@pytest.fixture
def calls(monkeypatch):
    """One entry per forward that reached the encoder kernel: whether it ran there."""
    from pretrained.backends import build

    if not build.available():
        pytest.skip("the C kernels are off here (PRETRAINED_NO_KERNELS=1 or no compiler): the swapped "
                    "modules run the plain math")
    seen = []

    def spy(*args, **kwargs):
        y = rk.encoder_stack(*args, **kwargs)
        seen.append(y is not None)
        return y

    monkeypatch.setattr(encoder_blocks, "encoder_stack", spy)
    return seen


def _modules(model, *args, **kw):
    saved = encoder_blocks.encoder_stack
    encoder_blocks.encoder_stack = lambda *a, **k: None
    try:
        return model(*args, **kw).logits
    finally:
        encoder_blocks.encoder_stack = saved


@pytest.mark.parametrize("llm_int8", [False, True])
@pytest.mark.parametrize("shape,hidden,heads", [((1, 16), 64, 4), ((2, 7), 48, 3), ((3, 5), 128, 2)])
def test_int8_encoder_in_one_call_equals_the_modules(llm_int8, shape, hidden, heads, calls, monkeypatch):
    """Every variant (and AMX-INT8 tiles on and off): padding, several sequences, the [CLS]-only
    last layer, widths with vector tails and with 64-wide tile steps."""
    model = _int8_bert(hidden=hidden, heads=heads, inter=2 * hidden)
    set_llm_int8(model, llm_int8)
    ids = torch.randint(1, 120, shape)
    mask = torch.ones_like(ids)
    if shape[0] > 1:
        mask[1, shape[1] - 2:] = 0
    with torch.inference_mode():
        for lib, on in WAYS:
            lib.int8_tiles(on)
            monkeypatch.setattr(build, "_lib", lib)
            encoder_blocks._PLANS.clear()
            calls.clear()
            fused = model(ids, attention_mask=mask).logits
            assert calls == [True], lib.variant_name()
            plain = _modules(model, ids, attention_mask=mask)
            # the hidden states' scale is ~1 (LayerNorm); the logits a small head over them
            assert (fused - plain).abs().max().item() <= 1e-5, (lib.variant_name(), on)
    for lib in LIBS:
        lib.int8_tiles(1)


def test_int8_encoder_with_outlier_columns(calls, monkeypatch):
    """A LayerNorm that puts one hidden feature at 8 (as real BERTs have a few large features):
    LLM.int8()'s outlier columns inside the one C call, every variant."""
    model = _int8_bert(hidden=64, heads=4, inter=128)
    set_llm_int8(model, True)
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            layer.attention.output.LayerNorm.bias[5] = 8.0
            layer.output.LayerNorm.bias[17] = -9.0
    ids = torch.randint(1, 120, (1, 16))
    with torch.inference_mode():
        for lib, on in WAYS:
            lib.int8_tiles(on)
            monkeypatch.setattr(build, "_lib", lib)
            encoder_blocks._PLANS.clear()
            calls.clear()
            fused = model(ids).logits
            assert calls == [True]
            assert (fused - _modules(model, ids)).abs().max().item() <= 1e-5, (lib.variant_name(), on)
    for lib in LIBS:
        lib.int8_tiles(1)


def test_int8_encoder_follows_the_mode_and_replaced_scales(calls):
    model = _int8_bert()
    ids = torch.randint(1, 120, (1, 9))
    with torch.inference_mode():
        for mode in (False, True, False):
            set_llm_int8(model, mode)
            fused = model(ids).logits
            assert calls[-1] is True and (fused - _modules(model, ids)).abs().max() <= 1e-5
    layer = model.bert.encoder.layer[1].intermediate.dense
    layer.SCB = layer.SCB * 2   # a new tensor: the plan notices, the modules agree
    with torch.inference_mode():
        fused = model(ids).logits
        assert calls[-1] is True and (fused - _modules(model, ids)).abs().max() <= 1e-5


def test_mixed_int8_and_float_layers_run_the_modules(calls):
    model = _int8_bert()
    enc = model.bert.encoder.layer[0].attention.self
    q = enc.query
    enc.query = nn.Linear(q.in_features, q.out_features)
    accelerate(model.eval())
    with torch.inference_mode():
        model(torch.randint(1, 120, (1, 5)))
    assert not any(calls)


@pytest.mark.parametrize("kwargs", [{"load_in_8bit": True}, {"load_in_4bit": True}])
def test_quantized_model_loaded_under_inference_mode_runs(kwargs, tmp_path):
    """Tensors made under inference_mode keep no version counter: the swapped layers' caches
    must not ask for one (they raised 'Inference tensors do not track version counter')."""
    from pretrained import AutoModelForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, num_labels=3)
    BertForSequenceClassification(cfg).save_pretrained(tmp_path)
    ids = torch.randint(1, 120, (2, 7))
    with torch.inference_mode():
        inside = AutoModelForSequenceClassification.from_pretrained(tmp_path, **kwargs).eval()
        got = inside(ids).logits
    outside = AutoModelForSequenceClassification.from_pretrained(tmp_path, **kwargs).eval()
    with torch.inference_mode():
        assert torch.equal(got, outside(ids).logits)


@pytest.mark.parametrize("outliers", [False, True])
def test_bfloat16_inputs(outliers):
    """bfloat16 activations: the float32 kernel's result on the same (exact) values rounded once
    to bfloat16; the plain math in bfloat16 equal without outliers, and within bfloat16's rounding
    of the parts with them (it rounds before adding the outlier columns' bfloat16 product)."""
    gen = torch.Generator().manual_seed(3)
    m = Linear8bit.from_float(torch.randn(48, 128, generator=gen), torch.randn(48, generator=gen)).to(torch.bfloat16)
    for rows in (1, 5, 16):
        x = torch.randn(rows, 128, generator=gen).clamp(-5, 5).to(torch.bfloat16)
        if outliers:
            x[0, 7], x[rows - 1, 100] = 11.0, -8.0
        want = llm_int8_linear(x, m.weight, m.SCB, m.bias, 6.0)
        scale = (x.float().abs() @ m.dequantize().abs().t() + m.bias.float().abs())
        for lib, on in WAYS:
            lib.int8_tiles(on)
            y = llm_int8_matmul(x, m.weight, m.SCB, m.bias, 6.0, lib=lib)
            f32 = llm_int8_matmul(x.float(), m.weight, m.SCB, m.bias, 6.0, lib=lib)
            assert y.dtype == torch.bfloat16 and torch.equal(y, f32.to(torch.bfloat16))
            if outliers:
                assert ((y.float() - want.float()).abs() <= 2 ** -7 * scale).all(), (lib.variant_name(), on, rows)
            else:
                assert torch.equal(y, want), (lib.variant_name(), on, rows)
    for lib in LIBS:
        lib.int8_tiles(1)


@pytest.mark.parametrize("llm_int8", [False, True])
def test_thread_count_does_not_change_the_int8_encoder(llm_int8, calls):
    """Each output is summed by one thread in one order: 1 and 2 threads give the same bits."""
    model = _int8_bert(hidden=128, heads=4, inter=256)
    set_llm_int8(model, llm_int8)
    ids = torch.randint(1, 120, (1, 12))
    threads = torch.get_num_threads()
    try:
        with torch.inference_mode():
            torch.set_num_threads(1)
            one = model(ids).logits
            torch.set_num_threads(2)
            two = model(ids).logits
    finally:
        torch.set_num_threads(threads)
    assert calls == [True, True] and torch.equal(one, two)
