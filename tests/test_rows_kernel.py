"""The C kernels for linear layers on up to 16 rows (pretrained/backends/rows_kernel.c): results
against F.linear over shapes with every tail, where they are (not) used, and the fallback when
they cannot be built."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from pretrained.backends import build, packed, set_weight_packing
from pretrained.backends import linear as fast_linear
from pretrained.backends import rows as rk

needs_kernel = pytest.mark.skipif(not build.available(),
                                  reason="no AVX-512 or no C compiler on this machine")
needs_bf16 = pytest.mark.skipif(not build.bf16_ready(),
                                reason="no bfloat16 kernels (AVX512-BF16) on this machine")

# Output features: below one block of 4, block + tail, the AMX tile multiple; input features:
# under one vector, vector tails, over one k-chunk of 384 with and without a tail.
F32_SHAPES = list(itertools.product([1, 3, 4, 6, 17, 64], [1, 7, 16, 37, 384, 400, 800]))


@needs_kernel
@pytest.mark.parametrize("rows", [1, 2, 5, 6, 7, 13, 16])
@pytest.mark.parametrize("bias", [False, True])
def test_float32_equals_f_linear(rows, bias):
    torch.manual_seed(rows)
    for n, k in F32_SHAPES:
        x = torch.randn(rows, k)
        w = torch.randn(n, k)
        b = torch.randn(n) if bias else None
        y = rk.rows_linear(x, w, b)
        assert y is not None and y.shape == (rows, n) and y.dtype == torch.float32
        torch.testing.assert_close(y, F.linear(x, w, b), atol=2e-5 * k ** 0.5, rtol=1e-5)


@needs_kernel
def test_float32_batched_and_strided_inputs():
    torch.manual_seed(0)
    w, b = torch.randn(24, 50), torch.randn(24)
    x = torch.randn(2, 3, 100)[..., ::2]   # 6 rows, every other column
    y = rk.rows_linear(x, w, b)
    assert y.shape == (2, 3, 24)
    torch.testing.assert_close(y, F.linear(x, w, b), atol=1e-5, rtol=1e-5)
    rows, w2 = torch.randn(8, 64)[::2], torch.randn(24, 64)   # 4 rows, a row stride of 128
    torch.testing.assert_close(rk.rows_linear(rows, w2, None), F.linear(rows, w2),
                               atol=1e-5, rtol=1e-5)


@needs_bf16
@pytest.mark.parametrize("rows", [1, 3, 8, 16])
def test_bfloat16_equals_f_linear(rows):
    """AMX tiles accumulate as oneDNN's bf16 matmul does: equal to F.linear (allow 1% of entries
    an ulp apart, should another oneDNN sum differently); out features past the last tile of 16
    (10, 1001) take a vector dot product, within an ulp. vdpbf16ps (no AMX) sums in another
    order: within an ulp too (tests/test_kernel_variants.py checks each variant)."""
    torch.manual_seed(rows)
    for n, k in [(16, 32), (48, 64), (768, 768), (3072, 768), (768, 3072), (10, 32), (1001, 64)]:
        x = torch.randn(rows, k, dtype=torch.bfloat16)
        w = (torch.randn(n, k) * 0.05).to(torch.bfloat16)
        b = torch.randn(n, dtype=torch.bfloat16)
        y = rk.rows_linear(x, w, b)
        want = F.linear(x, w, b)
        assert y is not None and y.dtype == torch.bfloat16
        assert (y == want).float().mean().item() >= 0.99
        # an ulp, or where the sum cancels to far below its terms, what a float32 sum order moves
        terms = x.float().abs() @ w.float().abs().T + b.float().abs()
        torch.testing.assert_close(y.float(), want.float(), atol=2 ** -20 * terms.max().item(),
                                   rtol=2 ** -7)


@needs_kernel
def test_not_used_where_it_does_not_apply():
    w = torch.randn(32, 64)
    assert rk.rows_linear(torch.randn(17, 64), w, None) is None       # over 16 rows
    assert rk.rows_linear(torch.randn(4, 64).double(), w.double(), None) is None
    assert rk.rows_linear(torch.randn(4, 32), torch.randn(64, 32).t(), None) is None  # strided weight
    wg = torch.randn(32, 64, requires_grad=True)
    assert rk.rows_linear(torch.randn(4, 64), wg, None) is None       # autograd records
    with torch.no_grad():
        assert rk.rows_linear(torch.randn(4, 64), wg, None) is not None
    wb = torch.randn(32, 48, dtype=torch.bfloat16)        # bfloat16 where the variant has none
    assert (rk.rows_linear(torch.randn(4, 48, dtype=torch.bfloat16), wb, None) is None) \
        == (not build.bf16_ready())


@needs_kernel
def test_linear_layers_route_up_to_16_rows(monkeypatch):
    calls = []
    real = fast_linear.rows_linear
    monkeypatch.setattr(fast_linear, "rows_linear", lambda *a: calls.append(a[0].shape) or real(*a))
    lin = fast_linear.CpuLinear(64, 32)
    with torch.no_grad():
        y16 = lin(torch.randn(2, 8, 64))
        lin(torch.randn(17, 64))
    assert calls == [(2, 8, 64)] and y16.shape == (2, 8, 32)
    out = lin(torch.randn(4, 64))          # autograd on: F.linear, gradients flow
    out.sum().backward()
    assert lin.weight.grad is not None


@needs_kernel
def test_results_do_not_depend_on_the_thread_count():
    torch.manual_seed(0)
    x, w, b = torch.randn(16, 800), torch.randn(100, 800), torch.randn(100)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = rk.rows_linear(x, w, b)
        torch.set_num_threads(2)
        two = rk.rows_linear(x, w, b)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


@pytest.mark.parametrize("env", [{"CC": "/bin/false"}, {"PRETRAINED_NO_KERNELS": "1"}])
def test_falls_back_to_f_linear_when_no_kernel_can_be_built(env, monkeypatch, tmp_path):
    for key in ("PRETRAINED_CACHE", "PRETRAINED_NO_KERNELS", "PRETRAINED_KERNELS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(build, "PACKAGED", tmp_path / "not-installed")   # none built at install
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(build, "_lib", None)
    monkeypatch.setattr(build, "_bf16", False)
    assert not build.available()
    x, w = torch.randn(4, 64), torch.randn(32, 64)
    assert rk.rows_linear(x, w, None) is None
    lin = fast_linear.CpuLinear(64, 32)
    with torch.no_grad():
        assert torch.equal(lin(x), F.linear(x, lin.weight, lin.bias))
    assert not list(tmp_path.rglob("*.so"))
    why = build.describe()
    assert why.startswith("off: ") and ("PRETRAINED_NO_KERNELS" in why if "PRETRAINED_NO_KERNELS" in env
                                        else "failed" in why)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_several_weights_in_one_call_equal_their_concatenation(dtype):
    if dtype == torch.bfloat16 and not build.bf16_ready():
        pytest.skip("no bfloat16 kernels on this machine")
    torch.manual_seed(0)
    ws = [torch.randn(n, 256).to(dtype) for n in (256, 64, 64, 192)]   # GQA-like q, k, v and more
    bs = [torch.randn(256).to(dtype), None, torch.randn(64).to(dtype), None]
    for rows in (1, 7, 16):
        x = torch.randn(2, rows // 2 or 1, 256).to(dtype) if rows > 1 else torch.randn(1, 256).to(dtype)
        y = rk.rows_linear_many(x, ws, bs)
        singles = [rk.rows_linear(x, w, b) for w, b in zip(ws, bs)]
        assert y is not None and y.shape[-1] == 576
        assert torch.equal(y, torch.cat(singles, -1))            # same kernel, same sums
        want = torch.cat([F.linear(x, w, b) for w, b in zip(ws, bs)], -1)
        torch.testing.assert_close(y.float(), want.float(), atol=1e-4, rtol=2 ** -7)
    assert rk.rows_linear_many(torch.randn(17, 256).to(dtype), ws, bs) is None


@needs_kernel
def test_opt_in_packing_steps_aside_for_the_rows_kernel(monkeypatch):
    """With packing on, up to 16 rows still take the rows kernel (faster, no copy built); more
    rows take the packed weights."""
    if not packed.packing_available():
        pytest.skip("oneDNN weight packing is not available in this torch build")
    monkeypatch.setattr(packed, "PACKED_MIN_WEIGHT", 0)
    lin = fast_linear.CpuLinear(64, 32)
    set_weight_packing(lin, True)
    with torch.no_grad():
        small = lin(torch.randn(16, 64))
        assert "_packed" not in lin.__dict__
        lin(torch.randn(17, 64))
        assert "_packed" in lin.__dict__
    assert small.shape == (16, 32)
