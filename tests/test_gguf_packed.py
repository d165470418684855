"""GGUF blocks kept packed: the C block kernels against the dequantized products, the packed
modules and their loading (no dequantize, no copy), whole models against the dequantized model.

Expected values come from the numpy dequantizers (:mod:`pretrained.gguf.dequant`, equal bit for
bit to the reference's ``gguf.quants`` in tests/test_gguf.py) and float64 products, never from the
kernels under test. The int8 way is checked against the exact integer dot products of the
activations it quantized (recomputed here in numpy from the stated rule: d = max|x| / 127,
q = round-half-even(x / d)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pretrained import AutoModelForCausalLM
from pretrained.backends import accelerate, build, plain
from pretrained.backends.gguf_linear import (CpuGGUFLinear, gguf_dequantize, gguf_matmul,
                                             quantize_activations, set_gguf_activations,
                                             tiled_linear)
from pretrained.errors import InvalidInputError, UnsupportedOptionError
from pretrained.gguf import dequant
from pretrained.gguf.dequant import GGML_Q4_1, GGML_Q8_0, GGML_TYPES, dequantize, type_name
from pretrained.layers.gguf import PACKED_TYPES, GGUFEmbedding, GGUFLinear, row_bytes

TINY = Path(__file__).parent / "fixtures" / "models" / "gguf-tiny"
VARIANTS = build.runnable()
needs_kernels = pytest.mark.skipif(not build.available(), reason="no C kernels on this machine")
_F16_AT = {8: [0], 2: [0], 6: [0], 3: [0, 2], 7: [0, 2], 12: [0, 2], 13: [0, 2], 14: [208]}


def random_blocks(ggml_type: int, rows: int, k: int, seed: int = 0) -> torch.Tensor:
    """Random bytes as blocks of ``ggml_type`` with small positive f16 scales (random bytes there
    would be huge or NaN): every code, nibble, fifth bit and 6-bit scale is exercised."""
    rng = np.random.default_rng(seed)
    _, block, size = GGML_TYPES[ggml_type]
    b = rng.integers(0, 256, size=(rows * k // block, size), dtype=np.uint8)
    for i, at in enumerate(_F16_AT[ggml_type]):
        lo, hi = (-0.05, 0.05) if i == 1 and ggml_type in (3, 7) else (0.001, 0.01)
        b[:, at:at + 2] = rng.uniform(lo, hi, len(b)).astype(np.float16).reshape(-1, 1).view(np.uint8)
    return torch.from_numpy(b.reshape(rows, -1))


def _k_for(t: int) -> int:
    return 512 if GGML_TYPES[t][1] == 256 else 320


def _libs():
    return [build.load_variant(v) for v in VARIANTS] if build.available() else []


# --- the kernels ---------------------------------------------------------------------------------
@needs_kernels
def test_activations_quantize_by_the_stated_rule():
    x = torch.randn(3, 320) * torch.linspace(0.1, 10, 320)
    x[1, :32] = 0.0   # an all-zero block: scale 0, codes 0
    for lib in _libs():
        q, d, ds, s16 = quantize_activations(x, lib=lib)
        blocks = x.numpy().reshape(3, -1, 32)
        d_ref = np.abs(blocks).max(-1) / np.float32(127)
        inv = np.where(d_ref != 0, np.float32(1) / np.where(d_ref == 0, 1, d_ref), 0).astype(np.float32)
        q_ref = np.rint(blocks * inv[..., None]).astype(np.int8)
        assert np.array_equal(q.numpy().reshape(3, -1, 32), q_ref)
        assert np.array_equal(d.numpy(), d_ref)
        assert np.array_equal(s16.numpy(), q_ref.reshape(3, -1, 16).sum(-1).astype(np.int16))
        assert np.allclose(ds.numpy(), d_ref * q_ref.sum(-1), rtol=1e-6)


@needs_kernels
@pytest.mark.parametrize("ggml_type", PACKED_TYPES, ids=type_name)
@pytest.mark.parametrize("rows", [1, 3, 5, 8, 16])
def test_int8_kernel_is_the_exact_integer_dot_product(ggml_type, rows):
    n, k = 40, _k_for(ggml_type)
    blocks = random_blocks(ggml_type, n, k)
    w = dequantize(blocks.reshape(-1), ggml_type, (n, k)).double()
    x = torch.randn(rows, k)
    for lib in _libs():
        q, d, _, _ = quantize_activations(x, lib=lib)
        xq = (q.double().view(rows, -1, 32) * d.double().unsqueeze(-1)).view(rows, k)
        expected, scale = xq @ w.T, xq.abs() @ w.abs().T
        got = gguf_matmul(x, blocks, ggml_type, n, lib=lib, int8=True)
        # int32 block sums are exact; only the float32 per-block scalings round
        assert ((got.double() - expected).abs() <= 2e-6 * scale + 1e-30).all(), lib.variant_name()
        # and the activations' rounding is all that separates it from the float product
        exact = x.double() @ w.T
        assert (got.double() - exact).norm() / exact.norm() < 0.02


@needs_kernels
@pytest.mark.parametrize("ggml_type", [GGML_Q4_1, GGML_Q8_0], ids=type_name)
def test_int8_kernel_is_exact_on_real_shapes_with_outlier_channels(ggml_type):
    """SmolLM2's shapes (576 inputs: 18 blocks, an even count; 1536: 48) and its activations'
    kind of outlier channel (one value ~90x the mean |x|, as measured at its v_proj inputs): the
    integer sums stay exact there too, so the int8 way's error is the activations' rounding
    alone (issue 14: the changed chat answer is not a kernel bug)."""
    for k in (576, 1536):
        blocks = random_blocks(ggml_type, 64, k, seed=3)
        w = dequantize(blocks.reshape(-1), ggml_type, (64, k)).double()
        x = torch.randn(3, k)
        x[:, 37] = torch.tensor([90.0, -95.0, 60.0])   # one block dominated by one channel
        for lib in _libs():
            q, d, _, _ = quantize_activations(x, lib=lib)
            xq = (q.double().view(3, -1, 32) * d.double().unsqueeze(-1)).view(3, k)
            expected, scale = xq @ w.T, xq.abs() @ w.abs().T
            got = gguf_matmul(x, blocks, ggml_type, 64, lib=lib, int8=True)
            assert ((got.double() - expected).abs() <= 2e-6 * scale + 1e-30).all(), lib.variant_name()


@needs_kernels
@pytest.mark.parametrize("ggml_type", PACKED_TYPES, ids=type_name)
@pytest.mark.parametrize("rows", [1, 3, 4, 6, 16])
def test_float_kernel_is_the_dequantized_product(ggml_type, rows):
    # codes to floats in registers (blocks of 32 taken in pairs): an odd block count too (11 blocks of
    # 32, 3 super-blocks of 256)
    for k in (_k_for(ggml_type), 352) if GGML_TYPES[ggml_type][1] == 32 else (_k_for(ggml_type), 768):
        n = 37
        blocks = random_blocks(ggml_type, n, k, seed=1)
        w = dequantize(blocks.reshape(-1), ggml_type, (n, k)).double()
        x = torch.randn(rows, k)
        bias = torch.randn(n)
        expected, scale = x.double() @ w.T + bias.double(), x.double().abs() @ w.abs().T
        for lib in _libs():
            got = gguf_matmul(x, blocks, ggml_type, n, bias, lib=lib)
            assert ((got.double() - expected).abs() <= 1e-6 * scale + 1e-6).all(), lib.variant_name()
            tiled = tiled_linear(x, blocks, ggml_type, n, bias, lib=lib)
            assert ((tiled.double() - expected).abs() <= 1e-5 * scale + 1e-5).all()


@needs_kernels
@pytest.mark.parametrize("int8", [False, True], ids=["float", "int8"])
@pytest.mark.parametrize("rows", [1, 3, 5, 16])
def test_one_call_for_several_layers_equals_each_layer_alone(rows, int8):
    """gguf_linear_n (q/k/v, gate/up in one call): mixed block types (a Q4_K_M file mixes Q4_K
    and Q6_K), biases, a row order; every layer's columns equal its own call's bit for bit (the
    same arithmetic per output) and, in float, the dequantized product; blocks of 32 also at an
    odd block count."""
    from pretrained.backends.gguf_linear import _prepare, _run

    sets = [(512, [dequant.GGML_Q4_K, dequant.GGML_Q6_K, GGML_Q4_1, dequant.GGML_Q5_K]),
            (352, [GGML_Q8_0, dequant.GGML_Q5_0, GGML_Q4_1])]   # 11 blocks of 32
    rng = np.random.default_rng(8)
    for k, types in sets:
        layers = []
        for i, t in enumerate(types):
            n = (40, 24, 33, 17)[i]
            lin = GGUFLinear.from_blocks(random_blocks(t, n, k, seed=10 + i), t, k,
                                         bias=torch.randn(n) if i != 1 else None)
            if i == 0:
                lin.out_index = torch.from_numpy(rng.permutation(n).astype(np.int32))
            layers.append(lin)
        x = torch.randn(rows, k)
        for lib in _libs():
            y = _run(_prepare(layers, lib), x, int8)
            assert y.shape == (rows, sum(m.out_features for m in layers))
            for part, m in zip(y.split([m.out_features for m in layers], -1), layers):
                alone = _run(_prepare([m], lib), x, int8)
                assert torch.equal(part, alone), lib.variant_name()
                if not int8:
                    w = m.dequantize().double()
                    b = 0 if m.bias is None else m.bias.double()
                    expected, scale = x.double() @ w.T + b, x.double().abs() @ w.abs().T
                    assert ((part.double() - expected).abs() <= 1e-6 * scale + 1e-6).all()


class _Attention(torch.nn.Module):
    """Three projections of one input, as a model file calls them."""

    def __init__(self, q, k, v):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj = q, k, v

    def forward(self, x):
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)


@needs_kernels
def test_packed_siblings_on_one_input_run_as_one_call_and_step_aside_otherwise():
    t, k = dequant.GGML_Q4_0, 96
    lins = [GGUFLinear.from_blocks(random_blocks(t, n, k, seed=20 + n), t, k, bias=torch.randn(n))
            for n in (64, 32, 32)]
    attn = _Attention(*lins)
    x = torch.randn(1, 2, k)
    with torch.no_grad():
        expected = [F.linear(x, m.dequantize(), m.bias) for m in lins]
        accelerate(attn)
        alone = attn(x)
        for _ in range(3):
            got = attn(x)
        assert all("_group" in m.__dict__ for m in lins)   # watched, then grouped
        for g, a, e in zip(got, alone, expected):
            assert torch.equal(g, a)
            torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)
        other = torch.randn(1, 2, k)   # a sibling on another input computes alone
        attn.q_proj(x)
        torch.testing.assert_close(attn.k_proj(other), F.linear(other, lins[1].dequantize(), lins[1].bias),
                                   rtol=1e-5, atol=1e-5)
        y16 = attn(x.to(torch.bfloat16))
        assert all(y.dtype == torch.bfloat16 for y in y16)
    xg = x.clone().requires_grad_()
    sum(y.sum() for y in attn(xg)).backward()   # autograd: plain math, member by member
    assert xg.grad is not None
    assert plain(attn) == 3 and not any("_group" in m.__dict__ for m in lins)


@needs_kernels
def test_prefill_tiles_cover_every_row_across_tiles_and_buffer_sizes():
    """tiled_linear dequantizes at most TILE_FLOATS values at a time into a buffer it keeps: a
    layer of several tiles (the last one short), then a smaller and a wider one reusing it."""
    from pretrained.backends.gguf_linear import TILE_FLOATS

    for k, n in ((32, TILE_FLOATS // 32 + 1000), (64, 50), (352, 70)):
        blocks = random_blocks(GGML_Q8_0, n, k, seed=k)
        w = dequantize(blocks.reshape(-1), GGML_Q8_0, (n, k)).double()
        x = torch.randn(20, k)
        bias = torch.randn(n)
        got = tiled_linear(x, blocks, GGML_Q8_0, n, bias)
        expected, scale = x.double() @ w.T + bias.double(), x.double().abs() @ w.abs().T
        assert got.shape == (20, n) and ((got.double() - expected).abs() <= 1e-5 * scale + 1e-5).all()


@needs_kernels
@pytest.mark.parametrize("ggml_type", PACKED_TYPES, ids=type_name)
def test_c_dequantizer_equals_numpy(ggml_type):
    k = _k_for(ggml_type)
    blocks = random_blocks(ggml_type, 9, k, seed=2)
    expected = dequantize(blocks.reshape(-1), ggml_type, (9, k))
    for lib in _libs():
        got = gguf_dequantize(blocks, ggml_type, k, lib=lib)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


# --- the modules --------------------------------------------------------------------------------
@pytest.mark.parametrize("ggml_type", PACKED_TYPES, ids=type_name)
def test_plain_module_is_the_dequantized_linear_and_keeps_the_blocks(ggml_type):
    k = _k_for(ggml_type)
    blocks = random_blocks(ggml_type, 24, k, seed=3)
    lin = GGUFLinear.from_blocks(blocks, ggml_type, k, bias=torch.randn(24))
    assert lin.weight.data_ptr() == blocks.data_ptr() and not lin.weight.requires_grad
    assert lin.weight.shape == (24, row_bytes(ggml_type, k))
    w = dequantize(blocks.reshape(-1), ggml_type, (24, k))
    x = torch.randn(2, 5, k, requires_grad=True)
    y = lin(x)
    assert torch.equal(y, F.linear(x, w, lin.bias))
    y.sum().backward()   # autograd through the input (LoRA-style training of the rest)
    assert torch.allclose(x.grad, w.sum(0).expand_as(x), atol=1e-5)


@needs_kernels
def test_backend_swap_rows_order_bias_dtypes_and_steps_aside():
    t, k, n = dequant.GGML_Q4_1, 64, 32
    blocks = random_blocks(t, n, k, seed=4)
    lin = GGUFLinear.from_blocks(blocks, t, k, bias=torch.randn(n))
    lin.out_index = torch.from_numpy(np.random.default_rng(0).permutation(n).astype(np.int32))
    model = torch.nn.Sequential(lin)
    x = torch.randn(3, k)
    with torch.no_grad():
        expected = model(x)   # plain: dequantize, put rows in order, F.linear
        assert accelerate(model) == 1 and type(model[0]) is CpuGGUFLinear
        for rows in (x, torch.randn(40, k)):   # the kernel and the tiles
            ref = F.linear(rows, lin.dequantize(), lin.bias)
            torch.testing.assert_close(model(rows), ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
        y16 = model(x.to(torch.bfloat16))
        assert y16.dtype == torch.bfloat16
    xg = x.clone().requires_grad_()
    model(xg).sum().backward()   # steps aside while autograd records through the input
    assert xg.grad is not None
    assert set_gguf_activations(model, "int8") == 1 and model[0].int8_activations
    with torch.no_grad():
        assert (model(x) - expected).abs().max() < 0.05 * expected.abs().max()
    with pytest.raises(InvalidInputError):
        set_gguf_activations(model, "int4")
    assert plain(model) == 1 and type(model[0]) is GGUFLinear


@needs_kernels
def test_prepared_call_follows_replaced_weights_biases_and_copies():
    """The decode path builds its C call once per layer; replacing the weight, the bias or the
    row order (or casting the bias) is noticed, and copies and pickles leave it behind."""
    import copy
    import pickle

    t, k, n = dequant.GGML_Q4_0, 96, 40   # 3 blocks: an odd count
    lin = GGUFLinear.from_blocks(random_blocks(t, n, k, seed=6), t, k, bias=torch.randn(n))
    model = torch.nn.Sequential(lin)
    accelerate(model)
    x = torch.randn(2, k)

    def expected() -> torch.Tensor:
        w = lin.dequantize().double()
        b = None if lin.bias is None else lin.bias.double()
        return F.linear(x.double(), w, b).float()

    with torch.no_grad():
        torch.testing.assert_close(model(x), expected(), rtol=1e-5, atol=1e-5)
        assert "_gguf_call" in lin.__dict__
        x3 = torch.randn(3, 2, k)   # rows that are not contiguous: the shape kept
        got = model(x3.transpose(0, 1))
        assert got.shape == (2, 3, n)
        torch.testing.assert_close(got, model(x3.transpose(0, 1).contiguous()), rtol=0, atol=0)
        got = model(x3[..., ::2].repeat_interleave(2, -1))   # (a fresh contiguous tensor)
        assert got.shape == (3, 2, n)
        wide = torch.randn(2, 2 * k)[:, :k]   # rows k apart in a wider tensor
        torch.testing.assert_close(model(wide), model(wide.contiguous()), rtol=0, atol=0)
        lin.weight = torch.nn.Parameter(random_blocks(t, n, k, seed=7), requires_grad=False)
        torch.testing.assert_close(model(x), expected(), rtol=1e-5, atol=1e-5)
        lin.bias = torch.nn.Parameter(torch.randn(n))
        torch.testing.assert_close(model(x), expected(), rtol=1e-5, atol=1e-5)
        lin.out_index = torch.arange(n - 1, -1, -1, dtype=torch.int32)
        torch.testing.assert_close(model(x), expected(), rtol=1e-5, atol=1e-5)
        lin.bias = None
        torch.testing.assert_close(model(x), expected(), rtol=1e-5, atol=1e-5)
        model.to(torch.bfloat16)   # (no float parameter left: the blocks stay uint8)
        for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            assert "_gguf_call" not in other[0].__dict__
            torch.testing.assert_close(other(x), expected(), rtol=1e-5, atol=1e-5)
        assert plain(model) == 1 and "_gguf_call" not in lin.__dict__


def test_embedding_dequantizes_only_its_rows_and_follows_casts():
    t = dequant.GGML_Q8_0
    blocks = random_blocks(t, 50, 64, seed=5)
    emb = GGUFEmbedding(50, 64, t, device="meta")
    emb.weight = torch.nn.Parameter(blocks, requires_grad=False)
    table = dequantize(blocks.reshape(-1), t, (50, 64))
    ids = torch.tensor([[3, 49, 0], [7, 7, 1]])
    assert torch.equal(emb(ids), table[ids])
    emb.to(torch.bfloat16)
    assert emb(ids).dtype == torch.bfloat16 and emb.weight.dtype == torch.uint8


def test_blocks_on_another_device_are_a_named_error():
    lin = GGUFLinear.from_blocks(random_blocks(8, 4, 32), 8, 32)
    lin.weight = torch.nn.Parameter(lin.weight.to("meta"), requires_grad=False)
    with pytest.raises(UnsupportedOptionError, match="dequantize=True"):
        lin(torch.randn(1, 32, device="meta"))


# --- whole models from GGUF files -----------------------------------------------------------------
def _prompt(vocab: int) -> torch.Tensor:
    return torch.tensor([[1, 5, 9, 2, 7, 11, 3, 4, 8, 6, 10, 12]]) % vocab


def test_every_block_type_file_loads_packed_without_dequantizing(monkeypatch):
    """The tiny llama of tests/test_gguf.py (every quant type): packed at load, its blocks
    views of the mapped file, no dequantizer called while loading."""
    calls = []
    for t, fn in list(dequant._DEQUANT.items()):
        monkeypatch.setitem(dequant._DEQUANT, t, lambda b, fn=fn: calls.append(1) or fn(b))
    model = AutoModelForCausalLM.from_pretrained(TINY, gguf_file="llama-bpe.gguf")
    assert calls == []
    from pretrained.gguf import load_gguf

    f = load_gguf(TINY / "llama-bpe.gguf")
    lo, hi = f._buf.ctypes.data, f._buf.ctypes.data + f._buf.nbytes
    packed = [m for m in model.modules() if isinstance(m, (GGUFLinear, GGUFEmbedding))]
    kinds = {type_name(m.ggml_type) for m in packed}
    assert {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"} & kinds == kinds
    assert len(kinds) >= 5
    for m in packed:
        assert lo <= m.weight.data_ptr() < hi   # in the mapping: not a copy


@pytest.mark.parametrize("mode", ["float", "int8"])
def test_packed_model_logits_against_the_dequantized_model(mode):
    from pretrained.backends import build

    if mode == "int8" and not build.available():
        with pytest.raises(UnsupportedOptionError, match="C kernels"):   # never a quiet float
            set_gguf_activations(AutoModelForCausalLM.from_pretrained(TINY, gguf_file="llama-bpe.gguf"), mode)
        return
    packed = AutoModelForCausalLM.from_pretrained(TINY, gguf_file="llama-bpe.gguf")
    ref = AutoModelForCausalLM.from_pretrained(TINY, gguf_file="llama-bpe.gguf", dequantize=True)
    assert not any(isinstance(m, GGUFLinear) for m in ref.modules())
    set_gguf_activations(packed, mode)
    ids = _prompt(packed.config.vocab_size)
    with torch.no_grad():
        got, expected = packed(ids).logits, ref(ids).logits
        long_ids = torch.randint(0, packed.config.vocab_size, (1, 40))   # > 16 rows: the tiles
        got_long, expected_long = packed(long_ids).logits, ref(long_ids).logits
    rel = ((got - expected).abs().max() / expected.abs().max()).item()
    top1 = (got.argmax(-1) == expected.argmax(-1)).float().mean().item()
    print(f"{mode}: max relative error {rel:.2e}, top-1 agreement {top1:.3f}")
    if mode == "float" or not build.available():
        assert rel < 1e-5 and top1 == 1.0
    else:
        assert rel < 0.15 and top1 >= 0.9   # random tiny weights: 7.7e-2, top-1 1.0
    torch.testing.assert_close(got_long, expected_long, rtol=1e-4, atol=1e-4)


def test_packed_model_generates_as_the_dequantized_one_and_saves_as_floats(tmp_path):
    packed = AutoModelForCausalLM.from_pretrained(TINY, gguf_file="llama-bpe.gguf")
    ref = AutoModelForCausalLM.from_pretrained(TINY, gguf_file="llama-bpe.gguf", dequantize=True)
    ids = _prompt(packed.config.vocab_size)
    kw = {"max_new_tokens": 8, "do_sample": False}
    assert torch.equal(packed.generate(ids, **kw), ref.generate(ids, **kw))
    packed.save_pretrained(tmp_path / "float")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "float")
    assert not any(isinstance(m, GGUFLinear) for m in again.modules())
    for (name, a), (_, b) in zip(again.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b), name


@needs_kernels
def test_torch_compile_keeps_the_packed_layers_in_the_graph():
    """Under torch.compile a packed layer is the pretrained::gguf_linear custom op (the kernels
    inside the compiled graph; a ctypes call or the fallback's numpy would break the graph at
    every layer): the graphs hold it, no break in the backend, the same logits."""
    torch._dynamo.reset()
    packed = AutoModelForCausalLM.from_pretrained(TINY, gguf_file="llama-bpe.gguf")
    ids = _prompt(packed.config.vocab_size)
    with torch.no_grad():
        want = packed(ids).logits
        seen = torch._dynamo.explain(packed)(ids)
        ops = {str(n.target) for g in seen.graphs for n in g.graph.nodes if n.op == "call_function"}
        assert any("pretrained.gguf_linear" in op for op in ops), ops
        where = [str(r.user_stack) for r in seen.break_reasons]
        assert not any("backends" in w for w in where), where
        got = torch.compile(packed)(ids).logits
        lin = packed.model.layers[0].self_attn.q_proj   # the op called as it is: any rows' layout
        x = torch.randn(3, 5, lin.in_features).transpose(0, 1)
        args = (lin.weight, lin.bias, lin.out_index, lin.ggml_type, lin.out_features, False)
        expected = F.linear(x, lin.dequantize(), lin.bias)
        for inp in (x, x.contiguous(), torch.randn(40, lin.in_features)):
            out = torch.ops.pretrained.gguf_linear(inp, *args)
            torch.testing.assert_close(out, F.linear(inp, lin.dequantize(), lin.bias), rtol=1e-5, atol=1e-5)
        assert torch.ops.pretrained.gguf_linear(x.bfloat16(), *args).dtype == torch.bfloat16
        assert expected.shape == (5, 3, lin.out_features)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_lora_on_packed_layers_is_refused_by_name_and_prefix_tuning_runs():
    from pretrained.peft import LoraConfig, PrefixTuningConfig, get_peft_model

    packed = AutoModelForCausalLM.from_pretrained(TINY, gguf_file="llama-bpe.gguf")
    with pytest.raises(InvalidInputError, match="dequantize=True"):
        get_peft_model(packed, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    ref = AutoModelForCausalLM.from_pretrained(TINY, gguf_file="llama-bpe.gguf", dequantize=True)
    models = []
    for base in (packed, ref):
        torch.manual_seed(0)
        models.append(get_peft_model(base, PrefixTuningConfig(num_virtual_tokens=3)).eval())
    ids = _prompt(packed.config.vocab_size)
    with torch.no_grad():   # the prefix joins the packed layers' attention as the float ones'
        got, expected = (m(input_ids=ids).logits for m in models)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_dequantize_needs_a_gguf_file_and_packing_needs_the_cpu():
    with pytest.raises(InvalidInputError, match="gguf_file"):
        AutoModelForCausalLM.from_pretrained(TINY.parent / "llama-gqa", dequantize=True)
    from pretrained.gguf import load_gguf
    from pretrained.layers.gguf import keep_packed

    ckpt = load_gguf(TINY / "llama-bpe.gguf").checkpoint()
    with pytest.raises(UnsupportedOptionError, match="dequantize=True"):   # (no CUDA needed)
        keep_packed(torch.nn.Linear(2, 2), ckpt, "model", torch.device("cuda"))
    with pytest.raises(UnsupportedOptionError, match="dequantize=True"):
        keep_packed(torch.nn.Linear(2, 2), ckpt, "model", "cpu", quantizing=object())


def test_pipeline_and_chat_run_on_the_packed_blocks():
    from pretrained import pipeline
    from pretrained.cli import _chat_model

    gen = pipeline("text-generation", model=str(TINY / "llama-bpe.gguf"))
    assert any(isinstance(m, GGUFLinear) for m in gen.model.modules())
    out = gen("Hello", max_new_tokens=3, do_sample=False)
    assert isinstance(out[0]["generated_text"], str)
    _, model = _chat_model(str(TINY / "llama-bpe.gguf"), "float32")
    assert any(isinstance(m, GGUFLinear) for m in model.modules())


def test_decode_benchmark_logits_check_on_the_tiny_file(tmp_path):
    """benchmarks/bench_gguf_decode.py --check (issue 14: top-1 agreement, relative error and
    perplexity of the packed variants against the dequantized model) runs and reports the
    float32-activation variant equal to the dequantized model."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "check.json"
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_gguf_decode.py"), "--check",
                           "--gguf", str(TINY / "llama-bpe.gguf"), "--tokens", "40", "--chunk", "8",
                           "--threads", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert r["tokens"] == 40 and "top-1 agreement" in proc.stdout
    exact = r["packed float32 activations"]
    assert exact["top1_agreement"] == 1.0 and exact["max_rel_error"] < 1e-5
    ppl = r["perplexity"]
    assert abs(ppl["packed float32 activations"] / ppl["dequantized float32"] - 1) < 1e-5
    assert 1 < ppl["dequantized float32"] < float("inf")   # a real, finite perplexity
    from pretrained.backends import build

    if build.available():
        assert 0 < r["packed int8 activations"]["max_rel_error"] < 0.5
    else:   # PRETRAINED_NO_KERNELS=1: no int8 way to compare
        assert "packed int8 activations" not in r
