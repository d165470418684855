"""The C products on bitsandbytes-layout weights (pretrained/backends/bnb_kernel.c, bnb_linear.py)
on every instruction-set variant this CPU runs, and the swapped quantized linears that call them
(pretrained/backends/quantized.py): against the float64 product of a weight dequantized here,
independently (nibbles unpacked by hand, absmax decompressed from the dynamic map by hand)."""

from __future__ import annotations

import pytest
import torch

from pretrained.backends import accelerate, build
from pretrained.backends.bnb_linear import int8_matmul, nf4_matmul
from pretrained.backends.quantized import CpuLinear4bit, CpuLinear8bit
from pretrained.quantization import Linear4bit, Linear8bit

ROWS = (1, 2, 3, 8, 16)


def _libs() -> list:
    libs = []
    for name in build.runnable():
        try:
            libs.append(build.load_variant(name))
        except build.KernelsUnavailable:
            pass
    return libs


LIBS = _libs()
needs_kernels = pytest.mark.skipif(not LIBS, reason="no C kernels on this machine")


def dequant_here(m: Linear4bit) -> torch.Tensor:
    """The (out, in) float64 weight: byte j holds flattened values 2j (high nibble) and 2j + 1;
    absmax from its uint8 codes of the dynamic map times the nested maximum plus the offset."""
    n = m.in_features * m.out_features
    b = m.weight.reshape(-1).to(torch.int64)
    codes = torch.empty(2 * b.numel(), dtype=torch.int64)
    codes[0::2], codes[1::2] = b // 16, b % 16
    if m.nested_offset is None:
        absmax = m.absmax.double()
    else:
        idx = torch.arange(m.absmax.numel()) // 256
        absmax = (m.nested_quant_map.double()[m.absmax.long()] * m.nested_absmax.double()[idx]
                  + m.nested_offset)
    values = m.quant_map.double()[codes[:n]] * absmax[torch.arange(n) // m.blocksize]
    return values.view(m.out_features, m.in_features)


def check(y: torch.Tensor, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> None:
    """y against x @ w^T + b in float64: float32 sums within 2e-6 of sum |x| |w| (+ |b|); a
    bfloat16 output also within its rounding (2^-8 of the value)."""
    x64, w64 = x.double().reshape(-1, x.shape[-1]), w.double()
    want = x64 @ w64.T + (0 if b is None else b.double())
    scale = x64.abs() @ w64.abs().T + (0 if b is None else b.double().abs())
    tol = 2e-6 * scale + (2.0 ** -8 * want.abs() if y.dtype == torch.bfloat16 else 0)
    got = y.double().reshape(want.shape)
    assert bool(((got - want).abs() <= tol + 1e-30).all()), float((got - want).abs().max())


# (out, in, blocksize): in not a multiple of 64 (blocks straddle rows), odd out sizes,
# blocksize 32 and 128, and SmolLM2's shapes
SHAPES = [(7, 96, 64), (33, 160, 32), (5, 128, 128), (45, 576, 64), (13, 1536, 64)]


@needs_kernels
@pytest.mark.parametrize("qt", ["nf4", "fp4"])
@pytest.mark.parametrize("dq", [False, True])
def test_4bit_kernel_equals_the_dequantized_product(qt, dq):
    torch.manual_seed(0)
    for out, k, bs in SHAPES:
        m = Linear4bit.from_float(torch.randn(out, k), torch.randn(out), quant_type=qt, blocksize=bs,
                                  double_quant=dq)
        w = dequant_here(m)
        absmax = m.block_absmax()
        for lib in LIBS:
            for rows in ROWS:
                for dtype in (torch.float32, torch.bfloat16):
                    x = torch.randn(rows, k).to(dtype)
                    y = nf4_matmul(x, m.weight, absmax, bs, m.quant_map, out, m.bias, lib=lib)
                    assert y is not None and y.dtype == dtype and y.shape == (rows, out)
                    check(y, x, w, m.bias)


@needs_kernels
def test_4bit_kernel_rounds_weights_to_bfloat16_when_asked():
    # (bfloat16 inputs then take the vdpbf16ps rows where the variant has them; 224 = 3 x 64 + 32)
    torch.manual_seed(1)
    for k in (192, 224):
        m = Linear4bit.from_float(torch.randn(9, k), torch.randn(9), double_quant=True)
        w = dequant_here(m).float().to(torch.bfloat16)   # (the float32 product, then bfloat16)
        for lib in LIBS:
            for rows in ROWS:
                for dtype in (torch.float32, torch.bfloat16):
                    x = torch.randn(rows, k).to(dtype)
                    y = nf4_matmul(x, m.weight, m.block_absmax(), 64, m.quant_map, 9, m.bias, round_bf16=True,
                                   lib=lib)
                    check(y, x, w, m.bias)
                    exact = nf4_matmul(x, m.weight, m.block_absmax(), 64, m.quant_map, 9, m.bias, lib=lib)
                    assert dtype == torch.bfloat16 or not torch.equal(y, exact)


@needs_kernels
def test_4bit_kernel_declines_what_it_cannot_take():
    m = Linear4bit.from_float(torch.randn(4, 80), None)   # 80: not a multiple of 32
    assert nf4_matmul(torch.randn(2, 80), m.weight, m.absmax, 64, m.quant_map, 4) is None
    m = Linear4bit.from_float(torch.randn(4, 64), None)
    assert nf4_matmul(torch.randn(17, 64), m.weight, m.absmax, 64, m.quant_map, 4) is None
    assert nf4_matmul(torch.randn(2, 64, dtype=torch.float16), m.weight, m.absmax, 64, m.quant_map, 4) is None


@needs_kernels
@pytest.mark.parametrize("shape", [(7, 100), (33, 576), (5, 1536), (3, 20)])
def test_int8_kernel_equals_the_int8_product(shape):
    torch.manual_seed(2)
    out, k = shape
    m = Linear8bit.from_float(torch.randn(out, k), torch.randn(out), llm_int8=False)   # weight-only
    scales = m.SCB / 127.0
    w = m.weight.double() * scales.double().unsqueeze(1)
    for lib in LIBS:
        for rows in ROWS:
            for dtype in (torch.float32, torch.bfloat16):
                x = torch.randn(rows, k).to(dtype)
                y = int8_matmul(x, m.weight, scales, m.bias, lib=lib)
                assert y is not None and y.dtype == dtype
                check(y, x, w, m.bias)


# --- the swapped modules ------------------------------------------------------------------------
@pytest.fixture
def calls(monkeypatch):
    """How often the swapped modules reached each kernel (and got a result)."""
    from pretrained.backends import build

    if not build.available():
        pytest.skip("the C kernels are off here (PRETRAINED_NO_KERNELS=1 or no compiler): the swapped "
                    "modules run the plain math")
    from pretrained.backends import quantized

    seen = {"nf4": 0, "int8": 0}

    def spy(name, fn):
        def wrapped(*a, **kw):
            y = fn(*a, **kw)
            seen[name] += y is not None
            return y
        return wrapped

    monkeypatch.setattr(quantized, "nf4_matmul", spy("nf4", nf4_matmul))
    monkeypatch.setattr(quantized._Prepared, "run", spy("nf4", quantized._Prepared.run))   # (prepared calls)
    monkeypatch.setattr(quantized, "int8_matmul", spy("int8", int8_matmul))
    return seen


@needs_kernels
@pytest.mark.parametrize("qt", ["nf4", "fp4"])
@pytest.mark.parametrize("dq", [False, True])
@torch.no_grad()
def test_swapped_4bit_module_in_float32_and_bfloat16(qt, dq, calls):
    torch.manual_seed(3)
    lin = torch.nn.Linear(96, 11)
    m = Linear4bit.from_float(lin.weight, lin.bias, quant_type=qt, double_quant=dq)
    w = dequant_here(m)
    accelerate(torch.nn.Sequential(m))
    assert type(m) is CpuLinear4bit
    for rows in ROWS:
        x = torch.randn(2, rows // 2, 96) if rows % 2 == 0 else torch.randn(rows, 96)
        check(m(x), x, w, m.bias)
    # a bfloat16 model: weights and bias rounded to bfloat16 as the plain math rounds them
    mb = Linear4bit.from_float(lin.weight.to(torch.bfloat16), lin.bias.to(torch.bfloat16), quant_type=qt,
                               double_quant=dq, compute_dtype=torch.bfloat16)
    wb = dequant_here(mb).float().to(torch.bfloat16)
    accelerate(torch.nn.Sequential(mb))
    for rows in ROWS:
        x = torch.randn(rows, 96, dtype=torch.bfloat16)
        y = mb(x)
        assert y.dtype == torch.bfloat16
        check(y, x, wb, mb.bias)
        plain_y = Linear4bit.forward(mb, x)
        assert (y.float() - plain_y.float()).abs().max() <= 2.0 ** -7 * plain_y.float().abs().max()
    assert calls["nf4"] == 2 * len(ROWS)


@needs_kernels
@torch.no_grad()
def test_swapped_4bit_module_follows_changed_statistics(calls):
    torch.manual_seed(4)
    m = Linear4bit.from_float(torch.randn(6, 64), None, double_quant=True)
    accelerate(torch.nn.Sequential(m))
    x = torch.randn(1, 64)
    before = m(x)
    m.nested_absmax.mul_(2.0)   # in place: the cached float32 absmax must be renewed
    check(m(x), x, dequant_here(m), None)
    assert (m(x) - 2 * before).abs().max() > 1e-3   # (the offset is not doubled)
    fresh = Linear4bit.from_float(torch.randn(6, 64), None, double_quant=True)
    m.weight.copy_(fresh.weight)   # new weights written into the same tensors
    m.absmax.copy_(fresh.absmax)
    m.nested_absmax.copy_(fresh.nested_absmax)
    m.nested_offset = fresh.nested_offset
    check(m(x), x, dequant_here(fresh), None)
    other = Linear4bit.from_float(torch.randn(6, 64), torch.randn(6))
    m.weight, m.absmax, m.bias = other.weight, other.absmax, other.bias   # replaced tensors
    m.nested_absmax = m.nested_quant_map = m.nested_offset = None
    check(m(x), x, dequant_here(other), other.bias)
    m.bias.add_(1.0)
    check(m(x), x, dequant_here(other), other.bias)
    assert calls["nf4"] == 6


@needs_kernels
def test_swapped_4bit_module_keeps_autograd_and_other_cases_on_the_plain_math(calls):
    torch.manual_seed(5)
    m = Linear4bit.from_float(torch.randn(6, 80), torch.randn(6))   # 80: the kernel declines
    accelerate(torch.nn.Sequential(m))
    x = torch.randn(3, 80)
    check(m(x), x, dequant_here(m), m.bias)
    m = Linear4bit.from_float(torch.randn(6, 64), torch.randn(6))
    accelerate(torch.nn.Sequential(m))
    x = torch.randn(3, 64, requires_grad=True)
    y = m(x)
    assert y.grad_fn is not None
    y.sum().backward()
    assert torch.allclose(x.grad, dequant_here(m).sum(0).float().expand(3, 64), atol=1e-5)
    big = torch.randn(20, 64)   # above 16 rows: the dequantized weight and a dense product
    check(m(big), big, dequant_here(m), m.bias)
    assert calls["nf4"] == 0
    trained = Linear4bit.from_float(torch.randn(6, 64), torch.randn(6, requires_grad=True))
    accelerate(torch.nn.Sequential(trained))
    trained(torch.randn(2, 64)).sum().backward()   # a trainable bias: autograd records it
    assert trained.bias.grad is not None and calls["nf4"] == 0
    with torch.no_grad():
        check(trained(x), x, dequant_here(trained), trained.bias)
    assert calls["nf4"] == 1


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@torch.no_grad()
def test_swapped_int8_module(dtype, calls):
    torch.manual_seed(6)
    lin = torch.nn.Linear(100, 9)
    m = Linear8bit.from_float(lin.weight, lin.bias, llm_int8=False).to(dtype)   # weight-only
    w = m.weight.double() * (m.SCB.double() / 127.0).unsqueeze(1)
    accelerate(torch.nn.Sequential(m))
    assert type(m) is CpuLinear8bit
    for rows in ROWS:
        x = torch.randn(rows, 100).to(dtype)
        y = m(x)
        assert y.dtype == dtype
        check(y, x, w, m.bias)
    m.SCB.mul_(0.5)   # the cached scales follow
    x = torch.randn(4, 100).to(dtype)
    check(m(x), x, w * 0.5, m.bias)
    # (bfloat16 takes torch's op where it can: in % 8 == 0; in 100 crashed it)
    assert calls["int8"] == len(ROWS) + 1
    m64 = Linear8bit.from_float(torch.randn(9, 64), None, llm_int8=False).to(dtype)
    accelerate(torch.nn.Sequential(m64))
    m64(torch.randn(3, 64).to(dtype))
    assert calls["int8"] == len(ROWS) + 1 + (dtype == torch.float32)


@needs_kernels
def test_compiled_graph_keeps_the_kernel_op():
    torch.manual_seed(7)
    m4 = Linear4bit.from_float(torch.randn(12, 64), torch.randn(12), double_quant=True)
    m8 = Linear8bit.from_float(torch.randn(5, 12), torch.randn(5), llm_int8=False)   # weight-only: the op
    model = torch.nn.Sequential(m4, m8)
    accelerate(model)
    graphs = []

    def backend(gm, inputs):   # records the traced graph, runs it as it is
        graphs.append(gm)
        return gm.forward

    x = torch.randn(3, 64)
    with torch.no_grad():
        want = model(x)
        got = torch.compile(model, backend=backend, fullgraph=True)(x)
    ops = [n.target for g in graphs for n in g.graph.nodes if n.op == "call_function"]
    assert ops.count(torch.ops.pretrained.bnb_linear.default) == 2
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()
